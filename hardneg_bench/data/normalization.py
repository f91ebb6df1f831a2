"""Named RGB input normalisations, and a dataset spec normalised with one.

An encoder is trained and evaluated on images normalised one way; the official codes do not all
use the dataset's own statistics (``model.normalization`` picks the one a source uses).
"""

from __future__ import annotations

from dataclasses import replace

from .base import DatasetSpec

Statistics = tuple[tuple[float, float, float], tuple[float, float, float]]

NORMALIZATIONS: dict[str, Statistics] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar10-kuangliu": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
"""RGB normalisations by name: (mean, std). ``imagenet``: torchvision's reference models, the Ring
code's transforms (src/datasets/datasets.py), MoCo's and CMC's linear scripts. ``cifar10-kuangliu``
is the CIFAR-10 std that the HCL/DCL code (image/utils.py) and MoCo's CIFAR-10 demo use, on every
dataset (from kuangliu/pytorch-cifar)."""

DATASET = "dataset"
"""``model.normalization`` value: the dataset's own mean and std (its spec's)."""


def normalized(spec: DatasetSpec, name: str) -> DatasetSpec:
    """``spec`` with the mean and std of normalisation ``name`` (``dataset``: unchanged)."""
    if name == DATASET:
        return spec
    mean, std = NORMALIZATIONS[name]
    return replace(spec, mean=mean, std=std)
