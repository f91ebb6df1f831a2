"""ImageNet-1K (ILSVRC-2012), read from the user's ImageNet folder.

Expected under the data root: ``imagenet/train/<wnid>/*.JPEG`` and ``imagenet/val/<wnid>/*.JPEG``,
the ImageFolder layout MoCo's and CMC's scripts read (the validation images sorted into class
folders by the standard valprep.sh). A split's classes are its wnid folders, sorted, as
torchvision's ImageFolder orders them: a label is the index of its wnid in that order. A split
must have exactly the 1000 classes. Images are listed class by class, files sorted within a class.
ImageNet-100 (:mod:`.imagenet100`) reads the same folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from .base import DatasetMissingError, DatasetSpec, ImageFolderSet, Split

NUM_CLASSES = 1000
MEAN = (0.485, 0.456, 0.406)  # ImageNet-1k training statistics (torchvision's reference models)
STD = (0.229, 0.224, 0.225)
VALPREP = "https://raw.githubusercontent.com/soumith/imagenetloader.torch/master/valprep.sh"
"""The script that sorts the flat validation folder into class folders (pytorch/examples' imagenet README)."""
LAYOUT = f"train/<wnid>/*.JPEG and val/<wnid>/*.JPEG for each of the {NUM_CLASSES} classes"


def how_to_get(root: Path) -> str:
    """Where ImageNet comes from and where it goes, in words."""
    return f"ImageNet cannot be downloaded automatically: get ImageNet-1k (ILSVRC2012) from image-net.org and put or symlink it at {Path(root) / 'imagenet'}"


def split_folder(root: Path, split: Split) -> Path:
    """``pretrain`` and ``train``: ``imagenet/train``; ``test``: ``imagenet/val``."""
    return Path(root) / "imagenet" / ("val" if split == "test" else "train")


def read_classes(name: str, folder: Path, classes: tuple[str, ...]) -> ImageFolderSet:
    """The images of ``folder/<wnid>/`` for each wnid of ``classes``, labelled by its index there;
    a class folder without images is a one-line :class:`DatasetMissingError`."""
    try:
        samples = make_dataset(str(folder), {wnid: i for i, wnid in enumerate(classes)}, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise DatasetMissingError(f"{name}: {str(err).splitlines()[0]} in {folder}") from None
    return ImageFolderSet(tuple(Path(p) for p, _ in samples), torch.tensor([label for _, label in samples], dtype=torch.int64))


def _class_folders(folder: Path) -> tuple[str, ...]:
    """The wnid folders of a split folder, sorted; a flat folder of images is refused in one line."""
    entries = list(os.scandir(folder))
    if any(entry.is_file() and entry.name.lower().endswith(IMG_EXTENSIONS) for entry in entries):
        raise DatasetMissingError(f"imagenet: {folder} holds images directly (the flat ILSVRC2012 validation layout): sort them into class folders with the standard valprep.sh ({VALPREP}), run inside {folder}")
    return tuple(sorted(entry.name for entry in entries if entry.is_dir()))


def load(split: Split, root: Path, download: bool) -> ImageFolderSet:
    """The split's images, labelled by sorted wnid. ``download`` is ignored: ImageNet has to be
    obtained by hand."""
    folder = split_folder(root, split)
    if not folder.is_dir():
        raise DatasetMissingError(f"imagenet not found: {folder} does not exist; {how_to_get(root)} ({LAYOUT})")
    classes = _class_folders(folder)
    if len(classes) != NUM_CLASSES:
        raise DatasetMissingError(f"imagenet: found {len(classes)} class folders in {folder} (its {folder.name} split), ImageNet-1k has {NUM_CLASSES}; {how_to_get(root)} ({LAYOUT})")
    return read_classes("imagenet", folder, classes)


IMAGENET = DatasetSpec(
    name="imagenet",
    description="ImageNet-1K (ILSVRC-2012) from your ImageNet folder, 224 px",
    num_classes=NUM_CLASSES,
    image_size=224,
    mean=MEAN,
    std=STD,
    load=load,
    # ILSVRC-2012 development kit, readme.txt (ILSVRC2012_devkit_t12, section 3.1): 1,281,167
    # training images (732 to 1,300 per class) and 50,000 validation images (50 per class)
    split_sizes={"pretrain": 1_281_167, "train": 1_281_167, "test": 50_000},
    folder=True,
    location="imagenet",
)
