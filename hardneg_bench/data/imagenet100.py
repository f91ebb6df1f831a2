"""ImageNet-100: the 100-class ImageNet subset of the CMC paper, read from the user's ImageNet.

Expected under the data root: ``imagenet/train/<wnid>/*.JPEG`` and ``imagenet/val/<wnid>/*.JPEG``
(validation images sorted into class folders, like train). The class list ships with the package
(``imagenet100_classes.txt``, the list published with the CMC code); a label is the index of its
wnid in that file, in the file's order (not sorted). Other ImageNet classes in the folders are
ignored. Images are listed class by class in sorted wnid order, files sorted within a class.
The folders are ImageNet-1K's (:mod:`.imagenet`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from .base import DatasetMissingError, DatasetSpec, ImageFolderSet, Split
from .imagenet import MEAN, STD, read_classes, split_folder

LAYOUT = "<wnid>/*.JPEG for each of the 100 classes, val sorted into class folders like train"
HOW_TO_GET = f"ImageNet cannot be downloaded automatically: get ImageNet-1k (ILSVRC2012) from image-net.org and put or symlink it there ({LAYOUT})"


@lru_cache(maxsize=1)
def class_list() -> tuple[str, ...]:
    """The 100 wnids of ImageNet-100, in label order."""
    text = (resources.files("hardneg_bench.data") / "imagenet100_classes.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def load(split: Split, root: Path, download: bool) -> ImageFolderSet:
    """``pretrain`` and ``train``: ``imagenet/train``; ``test``: ``imagenet/val``. ``download`` is
    ignored: ImageNet has to be obtained by hand."""
    folder = split_folder(root, split)
    if not folder.is_dir():
        raise DatasetMissingError(f"imagenet100 not found: {folder} does not exist; {HOW_TO_GET}")
    classes = class_list()
    missing = [wnid for wnid in classes if not (folder / wnid).is_dir()]
    if missing:
        raise DatasetMissingError(
            f"imagenet100: {len(missing)} of its 100 class folders are missing in {folder} "
            f"(first: {', '.join(missing[:3])}); expected {folder}/{LAYOUT}"
        )
    return read_classes("imagenet100", folder, classes)


IMAGENET100 = DatasetSpec(
    name="imagenet100",
    description="ImageNet-100 (CMC class list) from your ImageNet folder, 224 px",
    num_classes=100,
    image_size=224,
    mean=MEAN,
    std=STD,
    load=load,
    # 50 validation images per class; the training split is not fixed (ImageNet-1k has 732 to 1,300
    # images per class): it is counted from the folder when loaded (reproduce --dry-run does so)
    split_sizes={"test": 5_000},
    folder=True,
    location="imagenet",
)
