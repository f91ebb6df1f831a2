"""What the Meta-Dataset domain tests compare against: fake images and the Ring authors' group's
rules written out as their code states them (alextamkin/viewmaker@d9a7d4b
src/datasets/meta_datasets/*.py and src/datasets/datasets.py), independently of
hardneg_bench.data.meta_domains."""

import numpy as np
import torch
from PIL import Image
from torchvision import transforms


def colour(label: int) -> tuple[int, int, int]:
    return (label * 37) % 256, (label * 91 + 40) % 256, (label * 53 + 90) % 256


def assert_colours(data, tolerance):
    """A loaded split of 84-px images, each of its label's :func:`colour` at the centre."""
    assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 84, 84)
    assert data.labels.dtype == torch.int64 and len(data.labels) == len(data.images)
    for image, label in zip(data.images, data.labels.tolist()):
        assert np.abs(image[:, 42, 42].numpy().astype(int) - colour(label)).max() <= tolerance, label


def solid(path, rgb, size=(30, 20)):
    """A one-colour RGB image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)


def their_split(groups, split):
    """traffic_sign.py:61-79 / vgg_flower.py:59-86 written out: one RandomState(42) for all
    classes, each class's item list shuffled in turn with ``rs.shuffle`` of its indices, train
    the first ``int(0.8 * n)``, test the rest; classes concatenated in order."""
    rs = np.random.RandomState(42)
    out = []
    for items in groups:
        indexer = np.arange(len(items))
        rs.shuffle(indexer)
        shuffled = [items[i] for i in indexer]
        cut = int(0.8 * len(items))
        out += shuffled[cut:] if split == "test" else shuffled[:cut]
    return out


def their_resize(img: Image.Image, side: int = 84) -> np.ndarray:
    """datasets.py:64-65 (their test transform at ``side``): Resize(side) + CenterCrop(side) of the RGB image."""
    return np.asarray(transforms.Compose([transforms.Resize(side), transforms.CenterCrop(side)])(img.convert("RGB")))
