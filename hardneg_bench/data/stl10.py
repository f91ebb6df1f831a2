"""STL-10, read from the official binary files.

Expected under the data root: ``stl10_binary/{train,test}_{X,y}.bin`` and ``unlabeled_X.bin``
(what ``stl10_binary.tar.gz`` extracts to). Each image is 3 x 96 x 96 bytes, each channel stored
column-major, so the two spatial axes are swapped on reading; labels are bytes 1..10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import STL10 as TorchvisionSTL10

from .base import DatasetMissingError, DatasetSpec, ImageTensorSet, Split
from .fetch import require_files

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
ALL_FILES = [name for name, _md5 in TorchvisionSTL10.train_list + TorchvisionSTL10.test_list]


def _image_count(path: Path) -> int:
    size = path.stat().st_size
    if size % IMAGE_BYTES:
        raise DatasetMissingError(f"stl10: {path} is truncated ({size} bytes, not a multiple of {IMAGE_BYTES}); delete it and download again")
    return size // IMAGE_BYTES


def read_images(paths: list[Path]) -> torch.Tensor:
    """uint8 (N, 3, 96, 96) from one or more ``*_X.bin`` files, read straight into one buffer
    (no second copy: the 2.7 GB unlabelled file is read once). The result is a transposed view."""
    counts = [_image_count(p) for p in paths]
    buffer = np.empty((sum(counts), 3, SIDE, SIDE), dtype=np.uint8)
    start = 0
    for path, count in zip(paths, counts):
        with open(path, "rb") as f:
            read = f.readinto(memoryview(buffer[start : start + count]).cast("B"))
        if read != count * IMAGE_BYTES:
            raise DatasetMissingError(f"stl10: {path} changed while being read ({read} of {count * IMAGE_BYTES} bytes)")
        start += count
    return torch.from_numpy(buffer).transpose(2, 3)  # stored column-major: (C, W, H) -> (C, H, W)


def read_labels(labels_path: Path, images_path: Path) -> torch.Tensor:
    """int64 labels 0..9 from a ``*_y.bin`` file of bytes 1..10, one per image of ``images_path``."""
    labels = torch.from_numpy(np.fromfile(labels_path, dtype=np.uint8).astype(np.int64) - 1)
    images = _image_count(images_path)
    if len(labels) != images:
        raise DatasetMissingError(f"stl10: {labels_path} has {len(labels)} labels for {images} images in {images_path.name}; delete both and download again")
    return labels


def load(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``pretrain``: the 5k labelled training images then the 100k unlabelled ones (label -1);
    ``train``: the 5k labelled training images; ``test``: the 8k test images."""
    folder = Path(root) / TorchvisionSTL10.base_folder
    require_files("stl10", folder, ALL_FILES, TorchvisionSTL10.url, TorchvisionSTL10.filename, TorchvisionSTL10.tgz_md5, Path(root), download)
    stem = "test" if split == "test" else "train"
    labels = read_labels(folder / f"{stem}_y.bin", folder / f"{stem}_X.bin")
    if split != "pretrain":
        return ImageTensorSet(read_images([folder / f"{stem}_X.bin"]), labels)
    unlabeled = folder / "unlabeled_X.bin"
    no_labels = torch.full((_image_count(unlabeled),), -1, dtype=torch.int64)
    return ImageTensorSet(read_images([folder / "train_X.bin", unlabeled]), torch.cat([labels, no_labels]))


STL10 = DatasetSpec(
    name="stl10",
    description="STL-10: 10 classes, 96 px; pretrain on train+unlabeled (torchvision download)",
    num_classes=10,
    image_size=SIDE,
    # ImageNet-1k training statistics (torchvision's reference models): STL-10 images come from
    # ImageNet, and this is the usual choice in the contrastive-learning literature.
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    load=load,
    split_sizes={"pretrain": 105_000, "train": 5_000, "test": 8_000},
    transfer_target="cifar10",
    location="stl10_binary",
)
