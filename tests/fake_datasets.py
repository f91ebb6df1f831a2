"""Tiny datasets written in each real dataset's on-disk format, with label-dependent content so
that a loader that mixes up images and labels, or axes, is caught."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def labelled_images(labels: np.ndarray, side: int, seed: int) -> np.ndarray:
    """uint8 (N, 3, side, side): random pixels whose top-left pixel's red value is the label and
    whose first row is brighter than the last (so a transposed image is told apart)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 128, size=(len(labels), 3, side, side), dtype=np.uint8)
    images[:, :, 0, :] += 100
    images[:, 0, 0, 0] = labels
    return images


def _pickle(path: Path, data: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(data, f)


def write_fake_cifar(root: Path, classes: int, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """CIFAR-10 (5 training batches) or CIFAR-100 (one ``train`` file, fine labels) pickles."""
    rng = np.random.default_rng(classes)
    labels = {"train": rng.integers(0, classes, n_train), "test": rng.integers(0, classes, n_test)}
    images = {split: labelled_images(y, 32, i) for i, (split, y) in enumerate(labels.items())}
    if classes == 10:
        folder, key = root / "cifar-10-batches-py", "labels"
        parts = {f"data_batch_{i + 1}": idx for i, idx in enumerate(np.array_split(np.arange(n_train), 5))}
        files = {**{name: ("train", idx) for name, idx in parts.items()}, "test_batch": ("test", np.arange(n_test))}
    else:
        folder, key = root / "cifar-100-python", "fine_labels"
        files = {"train": ("train", np.arange(n_train)), "test": ("test", np.arange(n_test))}
    folder.mkdir(parents=True)
    for name, (split, idx) in files.items():
        data = {"data": images[split][idx].reshape(len(idx), -1), key: labels[split][idx].tolist()}
        if classes == 100:
            data["coarse_labels"] = (labels[split][idx] // 5).tolist()
        _pickle(folder / name, data)
    return {"train_images": images["train"], "train_labels": labels["train"], "test_images": images["test"], "test_labels": labels["test"]}


def write_fake_stl10(root: Path, n_train: int, n_test: int, n_unlabeled: int) -> dict[str, np.ndarray]:
    """STL-10 binaries: images column-major (axes 2 and 3 swapped), labels 1..10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        labels = rng.integers(0, 10, n)
        images = labelled_images(labels, 96, n)
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def write_fake_imagenet(root: Path, classes: list[str], n_per_class: int, side: int = 40) -> None:
    """``imagenet/{train,val}/<wnid>/*.JPEG`` with one colour per class."""
    for split in ("train", "val"):
        for c, wnid in enumerate(classes):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n_per_class):
                colour = ((c * 37) % 256, (c * 91) % 256, (i * 50) % 256)
                Image.new("RGB", (side + i, side), colour).save(folder / f"{wnid}_{i}.JPEG")
