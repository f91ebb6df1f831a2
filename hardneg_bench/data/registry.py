"""The dataset registry: real datasets read from a data root, built-in ones generated on the fly."""

from __future__ import annotations

from ..config import ConfigError
from .base import DatasetSpec
from .cifar import CIFAR10, CIFAR100
from .imagenet import IMAGENET
from .imagenet100 import IMAGENET100
from .meta_domains import META_DOMAINS
from .meta_domains_released import RELEASED_DOMAINS
from .shapes import SHAPES, SHAPES_NOVEL
from .stl10 import STL10

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (SHAPES, SHAPES_NOVEL, CIFAR10, CIFAR100, STL10, IMAGENET100, IMAGENET, *META_DOMAINS, *RELEASED_DOMAINS)}

def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    return DATASETS[name]
