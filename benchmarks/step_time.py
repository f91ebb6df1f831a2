"""Training-step time of each hard-negative method over its base framework's, same batch and model.

Times the whole step as the training loop runs it (loss, the hardness diagnostics unless
``--no-diagnostics``, backward, optimizer step, queue/bank/key-encoder updates) on one fixed
pre-augmented batch, so augmentation cost is left out; every method uses its recipe for the
dataset (``resolve_config``), with the backbone and batch given here.

    PYTHONPATH=. python benchmarks/step_time.py --dataset shapes --backbone tiny --batch 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.optim import build_optimizer
from hardneg_bench.engine.pretrain import build_method
from hardneg_bench.methods import Batch
from hardneg_bench.recipes import resolve_config

PAIRS = [("hcl", "simclr"), ("sscl", "simclr"), ("mochi", "moco-v2"), ("ring", "moco-v2"), ("ir-ring", "ir"), ("cmc-ring", "cmc")]


def step_seconds(method: str, dataset: str, backbone: str, batch_size: int, size: int, steps: int, device: torch.device, diagnostics: bool) -> float:
    cfg = resolve_config(method, dataset, flags={"model": {"backbone": backbone}, "pretrain": {"batch_size": batch_size, "diagnostics": diagnostics}})
    spec = get_dataset(dataset)
    torch.manual_seed(0)
    model = build_method(cfg, spec, dataset_size=max(size, batch_size)).to(device).train()
    model.on_epoch_start(10**6)  # past any warm-up: the method's full objective
    optimizer = build_optimizer(model, cfg.pretrain.optimizer)
    image_size = cfg.pretrain.augment.crop_size or spec.image_size
    views = torch.randn(2, batch_size, 3, image_size, image_size, device=device)
    labels = torch.randint(0, spec.num_classes, (batch_size,), device=device)
    batch = Batch(views[0], views[1], torch.randperm(max(size, batch_size), device=device)[:batch_size], labels)
    times = []
    for i in range(steps + 3):
        started = time.perf_counter()
        loss = model.loss(batch)
        if cfg.pretrain.diagnostics:
            model.hardness(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.after_optimizer_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:  # warm-up steps
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--bank-size", type=int, default=5000, help="memory-bank entries (the dataset's training images)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-diagnostics", action="store_true", help="leave out the hardness diagnostics")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    measured: dict[str, float] = {}
    for method in dict.fromkeys(m for pair in PAIRS for m in pair):
        measured[method] = step_seconds(method, args.dataset, args.backbone, args.batch, args.bank_size, args.steps, device, not args.no_diagnostics)
    print(f"{args.dataset}, {args.backbone}, batch {args.batch}, {device.type}, median of {args.steps} steps, diagnostics {'off' if args.no_diagnostics else 'on'}")
    print("| method | base | step (ms) | base step (ms) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for method, base in PAIRS:
        print(f"| {method} | {base} | {1000 * measured[method]:.1f} | {1000 * measured[base]:.1f} | {measured[method] / measured[base]:.3f} |")


if __name__ == "__main__":
    main()
