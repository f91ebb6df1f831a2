"""Training-step time of each hard-negative method over its base framework's, same batch and model.

Times the whole step (loss, backward, optimizer step, queue/bank/key-encoder updates; with
``--diagnostics`` also the hardness diagnostics, which the loop runs on one step in ten) on one fixed
pre-augmented batch, so augmentation cost is left out; every method uses its recipe for the
dataset (``resolve_config``), with the backbone and batch given here.

    PYTHONPATH=. python benchmarks/step_time.py --dataset shapes --backbone tiny --batch 256

Each pair is timed in alternating rounds (method, base, method, ...) and the medians compared.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.batches import channels_last
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.engine.trainer import Trainer
from hardneg_bench.methods import Batch
from hardneg_bench.recipes import resolve_config

PAIRS = [("hcl", "simclr"), ("sscl", "simclr"), ("mochi", "moco-v2"), ("ring", "moco-v2"), ("ir-ring", "ir"), ("cmc-ring", "cmc")]


class Stepper:
    """One method with its recipe, on one fixed channels-last batch, ready to time steps."""

    def __init__(self, method: str, dataset: str, backbone: str, batch_size: int, size: int, device: torch.device, diagnostics: bool) -> None:
        cfg = resolve_config(method, dataset, flags={"model": {"backbone": backbone}, "pretrain": {"batch_size": batch_size}})
        spec = get_dataset(dataset)
        torch.manual_seed(0)
        self.trainer = Trainer.build(cfg, spec, max(size, batch_size), steps_per_epoch=1, runtime=Runtime(device))
        self.model = self.trainer.model.train()
        self.model.on_epoch_start(10**6)  # past any warm-up: the method's full objective
        self.diagnostics, self.device = diagnostics, device
        image_size = cfg.pretrain.augment.crop_size or spec.image_size
        views = [channels_last(torch.randn(batch_size, 3, image_size, image_size, device=device)) for _ in range(2)]
        labels = torch.randint(0, spec.num_classes, (batch_size,), device=device)
        self.batch = Batch(views[0], views[1], torch.randperm(max(size, batch_size), device=device)[:batch_size], labels)

    def seconds(self, steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            self.trainer.step(self.batch, self.model.hardness if self.diagnostics else None)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        return times


def compare(method: Stepper, base: Stepper, rounds: int, steps: int) -> tuple[float, float]:
    """Median step times of ``method`` and ``base``, timed in alternating rounds so that a slow
    patch of the machine hits both."""
    method.seconds(3), base.seconds(3)  # warm-up
    mine, theirs = [], []
    for _ in range(rounds):
        mine += method.seconds(steps)
        theirs += base.seconds(steps)
    return statistics.median(mine), statistics.median(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--bank-size", type=int, default=5000, help="memory-bank entries (the dataset's training images)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per pair")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--diagnostics", action="store_true", help="time the hardness diagnostics on every step too")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{args.dataset}, {args.backbone}, batch {args.batch}, {device.type}, median of {args.rounds} x {args.steps} steps alternating with the base, diagnostics {'on every step' if args.diagnostics else 'off'}")
    print("| method | base | step (ms) | base step (ms) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for method, base in PAIRS:
        steppers = [Stepper(m, args.dataset, args.backbone, args.batch, args.bank_size, device, args.diagnostics) for m in (method, base)]
        mine, theirs = compare(*steppers, args.rounds, args.steps)
        print(f"| {method} | {base} | {1000 * mine:.1f} | {1000 * theirs:.1f} | {mine / theirs:.3f} |", flush=True)


if __name__ == "__main__":
    main()
