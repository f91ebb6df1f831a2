"""ImageNet-100: the 100-class ImageNet subset of the CMC paper, read from the user's ImageNet.

Expected under the data root: ``imagenet/train/<wnid>/*.JPEG`` and ``imagenet/val/<wnid>/*.JPEG``
(validation images sorted into class folders, like train). The class list ships with the package
(``imagenet100_classes.txt``, the list published with the CMC code); a label is the index of its
wnid in that file, in the file's order (not sorted). Other ImageNet classes in the folders are
ignored. Images are listed class by class in sorted wnid order, files sorted within a class.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from .base import DatasetMissingError, DatasetSpec, ImageFolderSet, Split

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
    folder = Path(root) / "imagenet" / ("val" if split == "test" else "train")
    if not folder.is_dir():
        raise DatasetMissingError(f"imagenet100 not found: {folder} does not exist; {HOW_TO_GET}")
    classes = class_list()
    missing = [wnid for wnid in classes if not (folder / wnid).is_dir()]
    if missing:
        raise DatasetMissingError(
            f"imagenet100: {len(missing)} of its 100 class folders are missing in {folder} "
            f"(first: {', '.join(missing[:3])}); expected {folder}/{LAYOUT}"
        )
    try:
        samples = make_dataset(str(folder), {wnid: i for i, wnid in enumerate(classes)}, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:  # a class folder without images
        raise DatasetMissingError(f"imagenet100: {str(err).splitlines()[0]} in {folder}") from None
    return ImageFolderSet(tuple(Path(p) for p, _ in samples), torch.tensor([label for _, label in samples], dtype=torch.int64))


IMAGENET100 = DatasetSpec(
    name="imagenet100",
    description="ImageNet-100 (CMC class list) from your ImageNet folder, 224 px",
    num_classes=100,
    image_size=224,
    mean=(0.485, 0.456, 0.406),  # ImageNet-1k training statistics (torchvision's reference models)
    std=(0.229, 0.224, 0.225),
    load=load,
    # 50 validation images per class; the training split is not fixed (ImageNet-1k has 732 to 1,300
    # images per class): it is counted from the folder when loaded (reproduce --dry-run does so)
    split_sizes={"test": 5_000},
    folder=True,
)
