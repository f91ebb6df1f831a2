"""What transferring one encoder to each Meta-Dataset domain costs: extracting the frozen features of
the domain's test split (what the few-shot protocol reads; the linear protocol also reads the train
split) and scoring 600 episodes with each head, at the domain's class count and split size.

No dataset is read: the images are random uint8 images at the domains' stored 84 px and the labels
a balanced draw over the domain's classes, so the figures are the protocol's cost, not accuracies.
Feature extraction is timed on ``--images`` images and scaled to each split (its cost is linear in
the number of images); the episodes are timed on features of the split's real size.

    PYTHONPATH=. python benchmarks/transfer_cost.py --backbone resnet18 --image-size 84
    PYTHONPATH=. python benchmarks/transfer_cost.py --backbone tiny --image-size 84 --rounds 3   # CPU, quick

A split whose size is counted at load (the domain's files decide it) gets its extraction cost per
1,000 images and its episodes timed on 40 images a class. The labels are spread evenly over the
classes, so a domain whose test split has fewer than shots + 15 images per class (Omniglot: 4,
Fungi: 3) gets no episodes, as its real split would not.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hardneg_bench.config import ConfigError, ProbeConfig
from hardneg_bench.data.base import ImageTensorSet
from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.batches import on_device
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.evaluations.features import extract_features
from hardneg_bench.evaluations.fewshot import HEADS, sample_episodes
from hardneg_bench.models.encoder import EncoderSpec, build_encoder

DOMAINS = ("aircraft", "cub", "dtd", "fungi", "flowers102", "gtsrb", "mscoco", "omniglot", "quickdraw")


def timed(fn, rounds: int) -> float:
    """Median wall time of ``rounds`` calls of ``fn`` (after one untimed call)."""
    fn()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--image-size", type=int, default=84, help="the probe's image size (the encoder's input)")
    parser.add_argument("--images", type=int, default=512, help="images the feature extraction is timed on")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    runtime = Runtime(torch.device(args.device))
    torch.manual_seed(0)
    encoder = build_encoder(EncoderSpec(args.backbone, None if args.backbone == "tiny" else args.stem, args.image_size)).to(runtime.device)
    probe = ProbeConfig(image_size=args.image_size)
    side = get_dataset("dtd").image_size
    images = ImageTensorSet(torch.randint(0, 256, (args.images, 3, side, side), dtype=torch.uint8), torch.zeros(args.images, dtype=torch.int64))
    data = on_device(images, runtime.device)
    per_image = timed(lambda: extract_features(encoder, data, get_dataset("dtd"), probe, runtime), args.rounds) / args.images
    dim = extract_features(encoder, data, get_dataset("dtd"), probe, runtime)[0].shape[1]
    print(f"{args.backbone} ({args.stem if args.backbone != 'tiny' else 'no'} stem) at {args.image_size} px on {args.device}: feature extraction {1000 * per_image:.2f} s per 1,000 images ({dim}-d features; median of {args.rounds} rounds of {args.images} images)")
    print()
    print("| domain | classes | test images | feature extraction (s) | 600 episodes 5-way 1-shot: nearest mean / logistic (s) | 5-shot: nearest mean / logistic (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in DOMAINS:
        spec = get_dataset(name)
        size = spec.split_sizes.get("test")
        n = size or 40 * spec.num_classes
        labels = torch.arange(n) % spec.num_classes
        features = torch.randn(n, dim, device=runtime.device)
        cells = []
        for shots in (1, 5):
            try:
                episodes = sample_episodes(labels, 5, shots, 15, args.episodes, seed=0)
            except ConfigError as err:  # too few images per class for shots + 15 queries
                cells.append(f"none: {err}")
                continue
            cells.append(" / ".join(f"{timed(lambda head=head: HEADS[head](features, episodes), args.rounds):.3f}" for head in ("nearest_mean", "logistic")))
        extraction = f"{per_image * n:.1f}" if size else f"{per_image * 1000:.1f} per 1,000"
        print(f"| {name} | {spec.num_classes} | {size if size else f'counted at load (episodes timed on {n:,})'} | {extraction} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
