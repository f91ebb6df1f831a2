"""More Meta-Dataset domains, read from the files as their authors release them.

CUB-200-2011, FGVCx Fungi 2018, QuickDraw, VGG Flowers and MSCOCO object crops, in the style of
:mod:`.meta_domains`: every split is held in memory as a uint8 (N, 3, 84, 84)
:class:`ImageTensorSet` (RGB, short side resized to ``SIDE``, centre crop: :func:`.to_side`; grey
QuickDraw drawings become 3 equal channels), ImageNet mean and std, ``pretrain`` is the ``train``
split, every listing is sorted, and a missing or partial folder is one :class:`DatasetMissingError`
line naming the dataset, the path and how to get it. Splits, labels and crops follow the Meta-Dataset
loaders of the Ring authors' group ("their code": alextamkin/viewmaker@d9a7d4b
src/datasets/meta_datasets/*.py; the Ring code, mhw32/contrastive-ring-public@fb3e1c2, has none,
see :mod:`.meta_domains`); their code has no QuickDraw. None of these is downloaded: their archives
sit behind registration pages or are too large to fetch unasked (VGG Flowers is the exception:
torchvision's ``Flowers102`` downloads it, with ``--download``).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .base import DatasetMissingError, ImageTensorSet, Split
from .meta_domains import SIDE, _tensor_set, class_split, domain_spec, ensure, split_by_class, to_side


def require(name: str, required: list[Path], how: str, root: Path) -> None:
    """One line naming the first missing path of ``required`` and ``how`` to get it (no download)."""
    missing = next((p for p in required if not p.exists()), None)
    if missing is not None:
        raise DatasetMissingError(f"{name} not found: {missing} is missing; it cannot be downloaded automatically: {how} so that {required[0]} exists (or pass --data-root to the folder holding {required[0].relative_to(root).parts[0]}/)")


def _workers() -> int:
    return min(8, os.cpu_count() or 1)


# --- CUB-200-2011 --------------------------------------------------------------------------------

CUB_URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
CUB_CLASSES = 200


def _table(name: str, path: Path) -> dict[int, str]:
    """``<id> <value>`` lines as {id: value}; a malformed line is one error line."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(" ", 1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetMissingError(f"{name}: {path} line {n} is not '<id> <value>'; extract the archive again")
        out[int(parts[0])] = parts[1].strip()
    return out


def load_cub(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/CUB_200_2011/images.txt`` (``<id> <class folder>/<file>.jpg``),
    ``image_class_labels.txt`` (``<id> <class 1..200>``), ``train_test_split.txt``
    (``<id> <1 train, 0 test>``), ``classes.txt`` and ``images/<class folder>/<file>.jpg``: the
    official split (5,994 train, 5,794 test); labels are the class numbers minus 1: their
    cu_birds.py:55-101 (images listed by id, as their ``images.txt`` order)."""
    root = Path(root)
    folder = root / "CUB_200_2011"
    files = ["images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "images"]
    require("cub", [folder / f for f in files], f"get CUB_200_2011.tgz from the Caltech data page {CUB_URL} and extract it under the data root", root)
    classes = _table("cub", folder / "classes.txt")
    if len(classes) != CUB_CLASSES:
        raise DatasetMissingError(f"cub: {folder / 'classes.txt'} lists {len(classes)} classes, not {CUB_CLASSES}; extract CUB_200_2011.tgz again")
    paths, labels, is_train = (_table("cub", folder / f) for f in files[:3])
    want = "0" if split == "test" else "1"
    samples = []
    for image_id in sorted(paths):
        if image_id not in labels or image_id not in is_train:
            raise DatasetMissingError(f"cub: image {image_id} of {folder / 'images.txt'} has no line in image_class_labels.txt or train_test_split.txt; extract CUB_200_2011.tgz again")
        label = int(labels[image_id]) - 1
        if not 0 <= label < CUB_CLASSES:
            raise DatasetMissingError(f"cub: {folder / 'image_class_labels.txt'} gives image {image_id} class {label + 1}, not 1..{CUB_CLASSES}; extract CUB_200_2011.tgz again")
        if is_train[image_id] == want:
            samples.append((folder / "images" / paths[image_id], label))
    return _tensor_set("cub", samples)


# 11,788 images (Wah et al., 2011): train_test_split.txt marks 5,994 train, 5,794 test
CUB_SPEC = domain_spec("cub", "CUB-200-2011 birds (Meta-Dataset domain): 200 species, official train / test, stored at 84 px", CUB_CLASSES, load_cub, "CUB_200_2011", train=5_994, test=5_794)


# --- FGVCx Fungi 2018 ----------------------------------------------------------------------------

FUNGI_URL = "https://github.com/visipedia/fgvcx_fungi_comp"
FUNGI_CLASSES = 1_394


def load_fungi(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/fungi/train.json`` (train, pretrain) or ``val.json`` (test: the released labelled
    split), COCO-like: ``images`` [{id, file_name}], ``annotations`` [{image_id, category_id}],
    ``categories`` [{id, ...}]; ``file_name`` is relative to ``root/fungi`` (``images/<species>/...``).
    Labels are the indices of the sorted category ids of ``train.json`` (1,394 species). Their
    fungi.py:56-81 reads the same two files (train / test) and takes the raw ``category_id`` as
    the label with ``NUM_CLASSES = 1394`` (l.19, 72, 81), which presupposes ids 0..1393: there the
    sorted index is the id itself; images here are ordered by id, theirs in ``images`` order."""
    root = Path(root)
    folder = root / "fungi"
    annotations = folder / ("val.json" if split == "test" else "train.json")
    how = f"get train_val_annotations.tgz and fungi_train_val.tgz ({FUNGI_URL}) and extract both into fungi/"
    require("fungi", [folder / "train.json", annotations, folder / "images"], how, root)

    def read(path: Path) -> dict:
        try:
            data = json.loads(path.read_text())
            _ = data["images"], data["annotations"], data["categories"]
            return data
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetMissingError(f"fungi: {path} is not COCO-like JSON with images, annotations and categories ({type(err).__name__}); extract train_val_annotations.tgz again") from None

    categories = sorted(int(c["id"]) for c in read(folder / "train.json")["categories"])
    if len(categories) != FUNGI_CLASSES:
        raise DatasetMissingError(f"fungi: {folder / 'train.json'} lists {len(categories)} categories, not {FUNGI_CLASSES}; extract train_val_annotations.tgz again")
    index = {c: i for i, c in enumerate(categories)}
    data = read(annotations)
    files = {int(im["id"]): im["file_name"] for im in data["images"]}
    samples = []
    for ann in sorted(data["annotations"], key=lambda a: int(a["image_id"])):
        image_id, category = int(ann["image_id"]), int(ann["category_id"])
        if image_id not in files or category not in index:
            raise DatasetMissingError(f"fungi: {annotations} annotates image {image_id} with category {category}, which is not among its images or the categories of train.json; extract train_val_annotations.tgz again")
        samples.append((folder / files[image_id], index[category]))
    return _tensor_set("fungi", samples)


# the FGVCx 2018 competition's released labelled images: 85,578 train, 4,182 val
FUNGI_SPEC = domain_spec("fungi", "FGVCx Fungi 2018 (Meta-Dataset domain): 1,394 species, train.json / val.json, stored at 84 px", FUNGI_CLASSES, load_fungi, "fungi", train=85_578, test=4_182)


# --- QuickDraw -----------------------------------------------------------------------------------

QUICKDRAW_URL = "https://console.cloud.google.com/storage/browser/quickdraw_dataset/full/numpy_bitmap"
QUICKDRAW_CLASSES = 345
QUICKDRAW_PER_CLASS = 500  # departs: memory (their code has no QuickDraw; Meta-Dataset keeps every drawing)
"""QuickDraw's numpy bitmaps hold 100k+ drawings of each of 345 classes (about 50 million);
Meta-Dataset keeps them all, but at 84 px in memory (21 KB an image) that is far too big: only the
first ``QUICKDRAW_PER_CLASS`` rows of each file are read (memory-mapped, so the rest is never
loaded), 172,500 drawings in all. departs: the Ring authors' code has no QuickDraw loader, so no
cap of theirs to follow; the split is their rule (:func:`.class_split`: 400 + 100 a class,
138,000 / 34,500 images, 2.9 / 0.7 GB)."""


def load_quickdraw(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/quickdraw/<class name>.npy``, each an (n, 784) uint8 array of 28 x 28 grey drawings
    (white strokes on black, as released); labels are the indices of the sorted file names; each
    class's first ``QUICKDRAW_PER_CLASS`` rows split by :func:`.class_split`, classes in label order."""
    root = Path(root)
    folder = root / "quickdraw"
    how = f"download the 345 <class>.npy files of Google's numpy_bitmap release ({QUICKDRAW_URL}, e.g. gsutil -m cp gs://quickdraw_dataset/full/numpy_bitmap/*.npy) into quickdraw/"
    require("quickdraw", [folder], how, root)
    files = sorted(folder.glob("*.npy"), key=lambda p: p.name)
    if len(files) != QUICKDRAW_CLASSES:
        raise DatasetMissingError(f"quickdraw: {folder} holds {len(files)} .npy files, not {QUICKDRAW_CLASSES}; {how}")
    arrays = []
    for path in files:
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DatasetMissingError(f"quickdraw: {path} cannot be read as a .npy array ({type(err).__name__}); download it again") from None
        if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != 28 * 28 or len(array) == 0:
            raise DatasetMissingError(f"quickdraw: {path} holds a {array.dtype} {tuple(array.shape)} array, not (n, 784) uint8 drawings; download it again")
        arrays.append(array)
    picks = class_split([min(len(a), QUICKDRAW_PER_CLASS) for a in arrays], split)
    drawings = np.concatenate([np.asarray(a[rows]).reshape(-1, 28, 28) for a, rows in zip(arrays, picks)])
    labels = np.repeat(np.arange(len(arrays)), [len(rows) for rows in picks])
    out = np.empty((len(drawings), SIDE, SIDE, 3), dtype=np.uint8)

    def resize(i: int) -> None:
        out[i] = to_side(Image.fromarray(drawings[i], "L"))

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        list(pool.map(resize, range(len(drawings))))
    return ImageTensorSet(torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels).to(torch.int64))


# 345 classes x QUICKDRAW_PER_CLASS drawings: int(0.8 * 500) = 400 train, 100 test a class
QUICKDRAW_SPEC = domain_spec("quickdraw", f"QuickDraw (Meta-Dataset domain): 345 classes, first {QUICKDRAW_PER_CLASS} drawings of each split 80/20 (seed 42), stored at 84 px", QUICKDRAW_CLASSES, load_quickdraw, "quickdraw", train=138_000, test=34_500)


# --- VGG Flowers ---------------------------------------------------------------------------------

FLOWERS_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
FLOWERS_CLASSES = 102


def load_flowers102(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/flowers-102/jpg/image_XXXXX.jpg`` and ``imagelabels.mat`` (``labels``: class 1..102
    of each image), the files torchvision's ``Flowers102`` reads, split as their vgg_flower.py:58-93:
    every image, grouped by class in the order the classes first appear in ``labels`` (image
    numbers ascending within a class), split by :func:`.class_split`; labels are the class
    numbers minus 1. The official ``setid.mat`` split (train + val 2,040 / test 6,149) is not used,
    as in their code. Reading the .mat file needs scipy."""
    from torchvision.datasets import Flowers102

    root = Path(root)
    folder = root / "flowers-102"
    required = [folder / "jpg", folder / "imagelabels.mat"]
    ensure("flowers102", required, lambda: Flowers102(str(root), download=True), FLOWERS_URL + "102flowers.tgz and imagelabels.mat", root, download)
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetMissingError("flowers102: reading imagelabels.mat needs scipy, which is not installed: pip install scipy") from None
    try:
        labels = loadmat(str(folder / "imagelabels.mat"))["labels"].reshape(-1).astype(int)
    except Exception as err:  # scipy raises ValueError, KeyError, OSError or its own MatReadError
        raise DatasetMissingError(f"flowers102: {folder / 'imagelabels.mat'} cannot be read ({type(err).__name__}); download it again") from None
    if not all(1 <= y <= FLOWERS_CLASSES for y in labels.tolist()):
        raise DatasetMissingError(f"flowers102: {folder / 'imagelabels.mat'} has a label outside 1..{FLOWERS_CLASSES}; download it again")
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for number, y in enumerate(labels.tolist(), 1):
        by_class.setdefault(y, []).append((folder / "jpg" / f"image_{number:05d}.jpg", y - 1))
    return _tensor_set("flowers102", split_by_class(list(by_class.values()), split))


# 8,189 images (Nilsback & Zisserman, 2008), int(0.8 n) of each class's for train: counted at load
FLOWERS_SPEC = domain_spec("flowers102", "VGG Flowers (Meta-Dataset domain): 102 classes, all 8,189 images split 80/20 per class (seed 42), stored at 84 px (needs scipy)", FLOWERS_CLASSES, load_flowers102, "flowers-102")


# --- MSCOCO object crops -------------------------------------------------------------------------

MSCOCO_URL = "https://cocodataset.org/#download"
MSCOCO_CLASSES = 80
MSCOCO_BOX_SCALE = 1.2
"""Their ``BOX_SCALE_RATIO`` (viewmaker src/datasets/meta_datasets/mscoco.py:50): each box grown
about its centre by this factor before cropping (:func:`coco_crop_box`)."""
MSCOCO_PER_CLASS = 1_000  # departs: memory (their mscoco.py keeps every box)
"""At most this many crops a class per split, the first in the annotation file's order. departs:
their code crops every annotation (mscoco.py:82-96: no cap, no size filter, crowd boxes kept;
its ``FILTER_SIZE = 32``, l.22, is the model's input side, not a box filter), but train2017 has
about 850,000 boxes (260,000 of them people), far too many at 84 px in memory; with the cap a split
holds at most 80,000 crops (1.7 GB)."""


def coco_crop_box(bbox: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """PIL crop box (left, upper, right, lower) of a COCO ``[x, y, w, h]`` box in a
    ``width`` x ``height`` image, as their mscoco.py:109-128: the box scaled by
    ``MSCOCO_BOX_SCALE`` about its centre, COCO's half-integer corners turned into whole pixels
    (``round`` is Python's, halves to even), clipped to the image."""
    x, y, w, h = (float(v) for v in bbox)
    x = x - 0.5 * w * (MSCOCO_BOX_SCALE - 1.0)
    y = y - 0.5 * h * (MSCOCO_BOX_SCALE - 1.0)
    w, h = w * MSCOCO_BOX_SCALE, h * MSCOCO_BOX_SCALE
    return max(int(round(x - 0.5)), 0), max(int(round(y - 0.5)), 0), min(int(round(x + w - 0.5)) + 1, width), min(int(round(y + h - 0.5)) + 1, height)


def load_mscoco(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """Object crops of COCO 2017 as their mscoco.py: ``root/coco/annotations/instances_{train,
    val}2017.json`` and the images ``root/coco/{train,val}2017/<file_name>`` (their path
    ``'%012d.jpg' % image_id``, l.88, is that name); train and pretrain are the crops of train2017,
    test those of val2017 (l.65-68); labels are the categories' positions in the file's
    ``categories`` list (l.77-78), crops in annotation-file order, cut by :func:`coco_crop_box`.
    departs: at most ``MSCOCO_PER_CLASS`` crops a class."""
    root = Path(root)
    folder = root / "coco"  # the folder the detection datasets read too (detection/datasets.py)
    part = "val2017" if split == "test" else "train2017"
    annotations = folder / "annotations" / f"instances_{part}.json"
    how = f"get {part}.zip and annotations_trainval2017.zip from {MSCOCO_URL} and extract both into coco/"
    require("mscoco", [annotations, folder / part], how, root)
    try:
        data = json.loads(annotations.read_text())
        categories = [int(c["id"]) for c in data["categories"]]
        images = {int(im["id"]): im["file_name"] for im in data["images"]}
        boxes = [(int(a["image_id"]), int(a["category_id"]), [float(v) for v in a["bbox"]]) for a in data["annotations"]]
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetMissingError(f"mscoco: {annotations} is not COCO instances JSON ({type(err).__name__}); extract annotations_trainval2017.zip again") from None
    if len(categories) != MSCOCO_CLASSES:
        raise DatasetMissingError(f"mscoco: {annotations} lists {len(categories)} categories, not {MSCOCO_CLASSES}; extract annotations_trainval2017.zip again")
    index = {c: i for i, c in enumerate(categories)}
    kept: list[tuple[int, list[float], int]] = []
    counts = [0] * MSCOCO_CLASSES
    for image_id, category, bbox in boxes:
        if category not in index or image_id not in images:
            raise DatasetMissingError(f"mscoco: {annotations} annotates image {image_id} with category {category}, which it does not list; extract annotations_trainval2017.zip again")
        if counts[index[category]] < MSCOCO_PER_CLASS:
            counts[index[category]] += 1
            kept.append((image_id, bbox, index[category]))
    if not kept:
        raise DatasetMissingError(f"mscoco: {annotations} has no box; extract annotations_trainval2017.zip again")
    by_image: dict[int, list[int]] = {}
    for k, (image_id, _, _) in enumerate(kept):
        by_image.setdefault(image_id, []).append(k)
    out = np.empty((len(kept), SIDE, SIDE, 3), dtype=np.uint8)

    def crop(image_id: int) -> None:
        path = folder / part / images[image_id]
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except FileNotFoundError:
            raise DatasetMissingError(f"mscoco: {path} is missing (listed in {annotations.name}); the folder is incomplete: extract {part}.zip again") from None
        except Exception as err:
            raise DatasetMissingError(f"mscoco: {path} cannot be read as an image ({type(err).__name__}); extract {part}.zip again") from None
        for k in by_image[image_id]:
            box = coco_crop_box(kept[k][1], rgb.width, rgb.height)
            if box[2] <= box[0] or box[3] <= box[1]:  # their ValueError('crops are not valid.'), l.132-133
                raise DatasetMissingError(f"mscoco: a box of image {image_id} in {annotations.name} lies outside the image; extract annotations_trainval2017.zip again")
            out[k] = to_side(rgb.crop(box))

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        list(pool.map(crop, by_image))
    labels = torch.tensor([label for _, _, label in kept], dtype=torch.int64)
    return ImageTensorSet(torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), labels)


# sizes depend on the cap: counted at load
MSCOCO_SPEC = domain_spec("mscoco", f"MSCOCO object crops (Meta-Dataset domain): 80 categories, train2017 / val2017 boxes grown {MSCOCO_BOX_SCALE}x, at most {MSCOCO_PER_CLASS:,} a class, stored at 84 px", MSCOCO_CLASSES, load_mscoco, "coco")

RELEASED_DOMAINS = (CUB_SPEC, FUNGI_SPEC, QUICKDRAW_SPEC, FLOWERS_SPEC, MSCOCO_SPEC)
