"""CIFAR-10 and CIFAR-100, read from the official "python version" pickles.

Expected under the data root: ``cifar-10-batches-py/data_batch_1..5, test_batch`` and
``cifar-100-python/train, test`` (what the official archives extract to). The reader does not use
torchvision's dataset classes, whose md5 checks tiny test files cannot pass; torchvision supplies
the download (URL, archive name, md5).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10
from torchvision.datasets import CIFAR100 as TorchvisionCIFAR100

from .base import DatasetMissingError, DatasetSpec, ImageTensorSet, Split
from .fetch import require_files


ARRAY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}
"""What a CIFAR batch pickle may name: numpy's array reconstruction (its ``data``); the rest is
lists, strings and numbers."""


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain data only: a batch file that names any
    other callable (which could run code) is refused before anything of it runs."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ARRAY_GLOBALS:
            raise DatasetMissingError(f"refused {self.path}: it asks to unpickle {module}.{name}, which could run code (CIFAR's batches hold only arrays and lists); replace it with the file from the official archive")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    """One CIFAR batch pickle (written by Python 2), read as data only."""
    with open(path, "rb") as f:
        unpickler = _ArraysOnly(f, encoding="latin1")
        unpickler.path = path
        return unpickler.load()


def read_batches(folder: Path, files: list[str], label_key: str) -> ImageTensorSet:
    """Concatenate pickled batches: ``data`` rows of 3072 bytes (R, G, B planes of 32x32, row-major)."""
    images, labels = [], []
    for name in files:
        batch = read_batch(folder / name)
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return ImageTensorSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def _loader(name: str, source: type, label_key: str) -> Callable[[Split, Path, bool], ImageTensorSet]:
    """The ``load`` of one CIFAR variant; ``source`` is torchvision's class, read for its file
    names and download attributes only."""
    train_files = [f for f, _md5 in source.train_list]
    test_files = [f for f, _md5 in source.test_list]

    def load(split: Split, root: Path, download: bool) -> ImageTensorSet:
        """``pretrain`` and ``train``: the 50k training images; ``test``: the 10k test images."""
        folder = Path(root) / source.base_folder
        require_files(name, folder, train_files + test_files, source.url, source.filename, source.tgz_md5, Path(root), download)
        return read_batches(folder, test_files if split == "test" else train_files, label_key)

    return load


_SIZES = {"pretrain": 50_000, "train": 50_000, "test": 10_000}

CIFAR10 = DatasetSpec(
    name="cifar10",
    description="CIFAR-10: 10 classes, 32 px (torchvision download)",
    num_classes=10,
    image_size=32,
    # Per-channel mean/std over all pixels of the 50k training images (the commonly quoted values).
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    load=_loader("cifar10", TorchvisionCIFAR10, "labels"),
    split_sizes=_SIZES,
    transfer_target="cifar100",
    location="cifar-10-batches-py",
)

CIFAR100 = DatasetSpec(
    name="cifar100",
    description="CIFAR-100: 100 fine classes, 32 px (torchvision download)",
    num_classes=100,
    image_size=32,
    mean=(0.5071, 0.4865, 0.4409),  # per-channel statistics of the 50k training images, as for CIFAR-10
    std=(0.2673, 0.2564, 0.2762),
    load=_loader("cifar100", TorchvisionCIFAR100, "fine_labels"),
    split_sizes=_SIZES,
    transfer_target="cifar10",
    location="cifar-100-python",
)
