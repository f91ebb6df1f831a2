"""Tiny datasets written in each real dataset's on-disk format, with label-dependent content so
that a loader that mixes up images and labels, or axes, is caught.

``write_fake_cifar10/cifar100/stl10`` return what they wrote (``{split}_images`` uint8
(N, 3, H, W) as a loader should return them, ``{split}_labels`` 0-based); ImageNet images are
solid colours given by :func:`imagenet_colour`.
"""

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


def write_fake_cifar(root: Path, classes: int, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """CIFAR-10 (``classes=10``: 5 training batches and ``test_batch``) or CIFAR-100
    (``classes=100``: ``train`` and ``test`` with fine and coarse labels) pickles under ``root``."""
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
        data = {
            "batch_label": f"fake {name}",
            "data": images[split][idx].reshape(len(idx), 3 * 32 * 32),
            key: labels[split][idx].tolist(),
            "filenames": [f"fake_{name}_{i}.png" for i in range(len(idx))],
        }
        if classes == 100:
            data["coarse_labels"] = (labels[split][idx] // 5).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump(data, f)
    return {"train_images": images["train"], "train_labels": labels["train"], "test_images": images["test"], "test_labels": labels["test"]}


def write_fake_cifar10(root: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    return write_fake_cifar(root, 10, n_train, n_test)


def write_fake_cifar100(root: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    return write_fake_cifar(root, 100, n_train, n_test)


def write_fake_stl10(root: Path, n_train: int, n_test: int, n_unlabeled: int) -> dict[str, np.ndarray]:
    """STL-10 binaries under ``root/stl10_binary``: images column-major (axes 2 and 3 swapped),
    labels bytes 1..10."""
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


def imagenet_colour(class_index: int, image_index: int) -> tuple[int, int, int]:
    """The RGB colour of fake ImageNet image ``image_index`` of the ``class_index``-th class written."""
    return (class_index * 37) % 256, (class_index * 91) % 256, (image_index * 50) % 256


def write_fake_imagenet(root: Path, classes: list[str], n_per_class: int, side: int = 40) -> None:
    """``root/imagenet/{train,val}/<wnid>/<wnid>_<i>.JPEG``, image i of ``classes[c]`` a solid
    :func:`imagenet_colour` ``(c, i)`` of ``side + i`` x ``side`` pixels."""
    for split in ("train", "val"):
        for c, wnid in enumerate(classes):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n_per_class):
                Image.new("RGB", (side + i, side), imagenet_colour(c, i)).save(folder / f"{wnid}_{i}.JPEG")


def write_fake_imagenet100(root: Path, n_per_class: int, classes: list[str] | None = None) -> list[str]:
    """:func:`write_fake_imagenet` for ``classes`` (default: the shipped ImageNet-100 list, in its
    order); returns the classes written."""
    if classes is None:
        from hardneg_bench.data.imagenet100 import class_list

        classes = list(class_list())
    write_fake_imagenet(root, classes, n_per_class)
    return classes
