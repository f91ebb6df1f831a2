"""STL-10, read from the official binary files.

Expected under the data root: ``stl10_binary/{train,test}_{X,y}.bin`` and ``unlabeled_X.bin``.
Each image is 3 x 96 x 96 bytes stored column-major (so the two spatial axes must be swapped);
labels are bytes 1..10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import STL10 as TorchvisionSTL10

from .base import DatasetSpec, ImageTensorSet, Split
from .fetch import require_files

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE


def read_images(paths: list[Path]) -> torch.Tensor:
    """uint8 (N, 3, 96, 96) from one or more ``*_X.bin`` files, read into one buffer."""
    counts = [p.stat().st_size // IMAGE_BYTES for p in paths]
    buffer = np.empty((sum(counts), 3, SIDE, SIDE), dtype=np.uint8)
    start = 0
    for path, count in zip(paths, counts):
        with open(path, "rb") as f:
            f.readinto(memoryview(buffer[start : start + count]).cast("B"))
        start += count
    return torch.from_numpy(buffer).transpose(2, 3)


def read_labels(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1)


def load(split: Split, root: Path, download: bool) -> ImageTensorSet:
    folder = Path(root) / TorchvisionSTL10.base_folder
    files = [f for f, _ in TorchvisionSTL10.train_list + TorchvisionSTL10.test_list]
    require_files("stl10", folder, files, TorchvisionSTL10.url, TorchvisionSTL10.filename, TorchvisionSTL10.tgz_md5, Path(root), download)
    if split == "test":
        return ImageTensorSet(read_images([folder / "test_X.bin"]), read_labels(folder / "test_y.bin"))
    train_labels = read_labels(folder / "train_y.bin")
    if split == "train":
        return ImageTensorSet(read_images([folder / "train_X.bin"]), train_labels)
    images = read_images([folder / "train_X.bin", folder / "unlabeled_X.bin"])
    unlabeled = torch.full((images.shape[0] - len(train_labels),), -1, dtype=torch.int64)
    return ImageTensorSet(images, torch.cat([train_labels, unlabeled]))


STL10 = DatasetSpec(
    name="stl10",
    description="STL-10: 10 classes, 96 px; pretrain on train+unlabeled (torchvision download)",
    num_classes=10,
    image_size=SIDE,
    mean=(0.485, 0.456, 0.406),  # ImageNet statistics: STL-10 images are ImageNet crops
    std=(0.229, 0.224, 0.225),
    load=load,
    split_sizes={"pretrain": 105_000, "train": 5_000, "test": 8_000},
    transfer_target="cifar10",
)
