"""What every dataset of the suite hands to the engine.

A dataset is a :class:`DatasetSpec` in the registry; loading one of its splits gives either an
:class:`ImageTensorSet` (small datasets held in memory as uint8 tensors: CIFAR, STL-10, the
built-in ones) or an :class:`ImageFolderSet` (ImageNet, ImageNet-100: JPEG files decoded on the fly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Union

import torch
from PIL import Image

Split = Literal["pretrain", "train", "test"]
"""``pretrain``: images for self-supervised pretraining (labels may be -1);
``train``: the labelled split a probe is fitted on; ``test``: the labelled split accuracies are
reported on."""

SPLITS: tuple[str, ...] = ("pretrain", "train", "test")


class DatasetMissingError(RuntimeError):
    """A real dataset is not on disk and could not be fetched; the message is one line saying
    which dataset, where it was looked for and how to get it."""


@dataclass(frozen=True)
class ImageTensorSet:
    """A split held in memory: ``images`` uint8 (N, 3, H, W), ``labels`` int64 (N,), -1 where a
    split has no label (STL-10 unlabelled images)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")

    def __len__(self) -> int:
        return self.images.shape[0]

    def image(self, index: int) -> torch.Tensor:
        """The uint8 (3, H, W) image at ``index``."""
        return self.images[index]


@dataclass(frozen=True)
class ImageFolderSet:
    """A split read from image files: ``paths[i]`` has label ``labels[i]``."""

    paths: tuple[Path, ...]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> Image.Image:
        """The RGB PIL image at ``index``."""
        with Image.open(self.paths[index]) as img:
            return img.convert("RGB")


ImageSet = Union[ImageTensorSet, ImageFolderSet]


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of the dataset registry.

    ``load(split, root, download)`` returns the split; real datasets raise
    :class:`DatasetMissingError` when their files are not under ``root`` and cannot be fetched.
    ``image_size`` is the native side length (the default crop size of its augmentations).
    """

    name: str
    description: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    load: Callable[[Split, Path, bool], ImageSet] = field(repr=False, compare=False)
    split_sizes: dict[str, int] = field(default_factory=dict)
    transfer_target: str | None = None
    builtin: bool = False
    """True for the generated datasets that need no files."""
    location: str | None = None
    """Where its files sit under the data root (what ``reproduce --dry-run`` looks for to say
    whether it is there); None for a built-in dataset."""
    folder: bool = False
    """True for image folders of varying image sizes (ImageNet, ImageNet-100): evaluated with
    Resize(image_size / 0.875) + CenterCrop(image_size) unless the probe says otherwise; the
    in-memory sets are square at ``image_size``."""
