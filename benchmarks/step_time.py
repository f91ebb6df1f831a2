"""Training-step time of each hard-negative method over its base framework's, same batch and model.

Times the whole step (loss, backward, optimizer step, queue/bank/key-encoder updates; with
``--diagnostics`` also the hardness diagnostics, which the loop runs on one step in ten) on one fixed
pre-augmented batch, so augmentation cost is left out; every method uses its recipe for the
dataset (``resolve_config``), with the backbone and batch given here.

    PYTHONPATH=. python benchmarks/step_time.py --dataset shapes --backbone tiny --batch 256

Each pair is timed in alternating rounds (method, base, method, ...) and the medians compared.
The base takes the method's queue or bank-sample size (Ring's K = 65536 against MoCo-v2 at 65536,
not at its own 4096), so the ratio is the cost of the hard-negative part alone.
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

    def __init__(self, method: str, dataset: str, backbone: str, batch_size: int, size: int, device: torch.device, diagnostics: bool, overrides: tuple[str, ...] = ()) -> None:
        cfg = resolve_config(method, dataset, flags={"model": {"backbone": backbone}, "pretrain": {"batch_size": batch_size}}, overrides=list(overrides))
        self.cfg, spec = cfg, get_dataset(dataset)
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


SIZES = ("queue_size", "n_negatives")
"""The method parameters that set how many negatives a step computes with."""


def steppers(method: str, base: str, dataset: str, backbone: str, batch_size: int, bank_size: int, device: torch.device, diagnostics: bool) -> tuple[Stepper, Stepper]:
    """The method with its recipe, and its base with the method's negative counts."""
    mine = Stepper(method, dataset, backbone, batch_size, bank_size, device, diagnostics)
    shared = tuple(f"method_params.{name}={getattr(mine.cfg.method_params, name)}" for name in SIZES if hasattr(mine.cfg.method_params, name))
    return mine, Stepper(base, dataset, backbone, batch_size, bank_size, device, diagnostics, shared)


def step_ratios(dataset: str, backbone: str, batch_size: int, bank_size: int, device: torch.device, rounds: int, steps: int, diagnostics: bool = False, pairs=PAIRS) -> list[dict]:
    """One row per (method, base) pair: median step times in ms, their ratio, the negatives."""
    rows = []
    for method, base in pairs:
        mine, theirs = steppers(method, base, dataset, backbone, batch_size, bank_size, device, diagnostics)
        seconds, base_seconds = compare(mine, theirs, rounds, steps)
        negatives = {name: getattr(mine.cfg.method_params, name) for name in SIZES if hasattr(mine.cfg.method_params, name)}
        rows.append({"method": method, "base": base, "step_ms": 1000 * seconds, "base_step_ms": 1000 * base_seconds, "ratio": seconds / base_seconds, **negatives})
        del mine, theirs
    return rows


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
        (row,) = step_ratios(args.dataset, args.backbone, args.batch, args.bank_size, device, args.rounds, args.steps, args.diagnostics, [(method, base)])
        print(f"| {method} | {base} | {row['step_ms']:.1f} | {row['base_step_ms']:.1f} | {row['ratio']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
