"""More Meta-Dataset domains, read from the files as their authors release them.

CUB-200-2011, FGVCx Fungi 2018, QuickDraw, VGG Flowers and MSCOCO object crops, in the style of
:mod:`.meta_domains`: every split is held in memory as a uint8 (N, 3, 84, 84)
:class:`ImageTensorSet` (RGB, resized to ``SIDE`` x ``SIDE`` with bilinear filtering, aspect ratio
not kept; grey QuickDraw drawings become 3 equal channels), ImageNet mean and std, ``pretrain`` is
the ``train`` split, every listing is sorted, and a missing or partial folder is one
:class:`DatasetMissingError` line naming the dataset, the path and how to get it. None of these is
downloaded: their archives sit behind registration pages or are too large to fetch unasked
(VGG Flowers is the exception: torchvision's ``Flowers102`` downloads it, with ``--download``).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import DatasetMissingError, ImageTensorSet, Split
from .meta_domains import SIDE, _tensor_set, domain_spec, ensure


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
    official split (5,994 train, 5,794 test); labels are the class numbers minus 1."""
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
CUB_SPEC = domain_spec("cub", "CUB-200-2011 birds (Meta-Dataset domain): 200 species, official train / test, stored at 84 px", CUB_CLASSES, load_cub, train=5_994, test=5_794)


# --- FGVCx Fungi 2018 ----------------------------------------------------------------------------

FUNGI_URL = "https://github.com/visipedia/fgvcx_fungi_comp"
FUNGI_CLASSES = 1_394


def load_fungi(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/fungi/train.json`` (train, pretrain) or ``val.json`` (test: the released labelled
    split), COCO-like: ``images`` [{id, file_name}], ``annotations`` [{image_id, category_id}],
    ``categories`` [{id, ...}]; ``file_name`` is relative to ``root/fungi`` (``images/<species>/...``).
    Labels are the indices of the sorted category ids of ``train.json`` (1,394 species)."""
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
FUNGI_SPEC = domain_spec("fungi", "FGVCx Fungi 2018 (Meta-Dataset domain): 1,394 species, train.json / val.json, stored at 84 px", FUNGI_CLASSES, load_fungi, train=85_578, test=4_182)


# --- QuickDraw -----------------------------------------------------------------------------------

QUICKDRAW_URL = "https://console.cloud.google.com/storage/browser/quickdraw_dataset/full/numpy_bitmap"
QUICKDRAW_CLASSES = 345
QUICKDRAW_SEED = 0
QUICKDRAW_TEST_FRACTION = 0.25
QUICKDRAW_PER_CLASS = 500
"""QuickDraw's numpy bitmaps hold 100k+ drawings of each of 345 classes (about 50 million);
Meta-Dataset keeps them all, but at 84 px in memory (21 KB an image) that is far too big: only the
first ``QUICKDRAW_PER_CLASS`` rows of each file are read (memory-mapped, so the rest is never
loaded), 172,500 drawings in all. Of each class's drawings, ``round(0.25 * n)`` chosen by a
generator seeded ``QUICKDRAW_SEED + class index`` are test images, the rest train images
(stratified, as Omniglot's split): 375 + 125 a class, 129,375 / 43,125 images (2.7 / 0.9 GB)."""


def quickdraw_split(n: int, label: int, split: Split) -> np.ndarray:
    """Sorted row indices of ``split`` among a class's first ``n`` drawings."""
    order = np.random.default_rng(QUICKDRAW_SEED + label).permutation(n)
    n_test = int(round(QUICKDRAW_TEST_FRACTION * n))
    return np.sort(order[:n_test] if split == "test" else order[n_test:])


def load_quickdraw(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/quickdraw/<class name>.npy``, each an (n, 784) uint8 array of 28 x 28 grey drawings
    (white strokes on black, as released); labels are the indices of the sorted file names."""
    root = Path(root)
    folder = root / "quickdraw"
    how = f"download the 345 <class>.npy files of Google's numpy_bitmap release ({QUICKDRAW_URL}, e.g. gsutil -m cp gs://quickdraw_dataset/full/numpy_bitmap/*.npy) into quickdraw/"
    require("quickdraw", [folder], how, root)
    files = sorted(folder.glob("*.npy"), key=lambda p: p.name)
    if len(files) != QUICKDRAW_CLASSES:
        raise DatasetMissingError(f"quickdraw: {folder} holds {len(files)} .npy files, not {QUICKDRAW_CLASSES}; {how}")
    grey, labels = [], []
    for label, path in enumerate(files):
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DatasetMissingError(f"quickdraw: {path} cannot be read as a .npy array ({type(err).__name__}); download it again") from None
        if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != 28 * 28 or len(array) == 0:
            raise DatasetMissingError(f"quickdraw: {path} holds a {array.dtype} {tuple(array.shape)} array, not (n, 784) uint8 drawings; download it again")
        n = min(len(array), QUICKDRAW_PER_CLASS)
        rows = quickdraw_split(n, label, split)
        grey.append(np.asarray(array[:n][rows]).reshape(-1, 28, 28))
        labels += [label] * len(rows)
    drawings = np.concatenate(grey)
    out = np.empty((len(drawings), SIDE, SIDE), dtype=np.uint8)

    def resize(i: int) -> None:
        out[i] = np.asarray(Image.fromarray(drawings[i], "L").resize((SIDE, SIDE), Image.BILINEAR))

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        list(pool.map(resize, range(len(drawings))))
    images = torch.from_numpy(out).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return ImageTensorSet(images, torch.tensor(labels, dtype=torch.int64))


# 345 classes x QUICKDRAW_PER_CLASS drawings, split by QUICKDRAW_TEST_FRACTION
QUICKDRAW_SPEC = domain_spec("quickdraw", f"QuickDraw (Meta-Dataset domain): 345 classes, first {QUICKDRAW_PER_CLASS} drawings of each, seeded stratified split ({QUICKDRAW_TEST_FRACTION:.0%} test, seed {QUICKDRAW_SEED}), stored at 84 px", QUICKDRAW_CLASSES, load_quickdraw, train=129_375, test=43_125)


# --- VGG Flowers ---------------------------------------------------------------------------------

FLOWERS_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
FLOWERS_CLASSES = 102


def load_flowers102(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/flowers-102/jpg/image_XXXXX.jpg``, ``imagelabels.mat`` (``labels``: class 1..102 of
    each image) and ``setid.mat`` (``trnid``, ``valid``, ``tstid``: 1-based image numbers), the
    files torchvision's ``Flowers102`` reads: train + val (2,040) for train and pretrain, test
    (6,149); labels are the class numbers minus 1. Reading the .mat files needs scipy."""
    from torchvision.datasets import Flowers102

    root = Path(root)
    folder = root / "flowers-102"
    required = [folder / "jpg", folder / "imagelabels.mat", folder / "setid.mat"]
    ensure("flowers102", required, lambda: Flowers102(str(root), download=True), FLOWERS_URL + "102flowers.tgz, imagelabels.mat and setid.mat", root, download)
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetMissingError("flowers102: reading imagelabels.mat and setid.mat needs scipy, which is not installed: pip install scipy") from None
    try:
        labels = loadmat(str(folder / "imagelabels.mat"))["labels"].reshape(-1).astype(int)
        sets = loadmat(str(folder / "setid.mat"))
        ids = np.concatenate([sets["tstid"].reshape(-1)] if split == "test" else [sets["trnid"].reshape(-1), sets["valid"].reshape(-1)]).astype(int)
    except Exception as err:  # scipy raises ValueError, KeyError, OSError or its own MatReadError
        raise DatasetMissingError(f"flowers102: {folder} holds imagelabels.mat / setid.mat that cannot be read ({type(err).__name__}); download them again") from None
    samples = []
    for image_id in sorted(ids.tolist()):
        if not 1 <= image_id <= len(labels) or not 1 <= labels[image_id - 1] <= FLOWERS_CLASSES:
            raise DatasetMissingError(f"flowers102: setid.mat names image {image_id}, which has no label 1..{FLOWERS_CLASSES} in imagelabels.mat; download them again")
        samples.append((folder / "jpg" / f"image_{image_id:05d}.jpg", int(labels[image_id - 1]) - 1))
    return _tensor_set("flowers102", samples)


# 8,189 images (Nilsback & Zisserman, 2008): 10 train + 10 val a class, 6,149 test
FLOWERS_SPEC = domain_spec("flowers102", "VGG Flowers (Meta-Dataset domain): 102 classes, train+val / test, stored at 84 px (needs scipy)", FLOWERS_CLASSES, load_flowers102, train=2_040, test=6_149)


# --- MSCOCO object crops -------------------------------------------------------------------------

MSCOCO_URL = "https://cocodataset.org/#download"
MSCOCO_CLASSES = 80
MSCOCO_BOX_SCALE = 1.2
"""Each box is grown about its centre by this factor before cropping, then clipped to the image:
Meta-Dataset's ``box_scale_ratio`` as remembered, UNVERIFIED (its converter's source was not
read here); the Ring authors' own MSCOCO crops (their Meta-Dataset loaders, ``FILTER_SIZE = 32``)
are to be compared before the Ring transfer table is run."""
MSCOCO_MIN_SIDE = 16
"""Boxes narrower or shorter than this (in pixels, before scaling) are skipped: smaller crops are
mostly blur at 84 px. Crowd annotations (``iscrowd``) are skipped too."""
MSCOCO_PER_CLASS = 1_000
"""At most this many crops a class per split (the first by annotation id): train2017 has about
850,000 boxes (260,000 of them people), far too many at 84 px in memory; with the cap a split holds
at most 80,000 crops (1.7 GB)."""


def load_mscoco(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """Object crops of COCO 2017: ``root/mscoco/annotations/instances_{train,val}2017.json`` and
    the images ``root/mscoco/{train,val}2017/<file_name>``; train and pretrain are the crops of
    train2017, test those of val2017. Labels are the indices of the sorted category ids (80)."""
    root = Path(root)
    folder = root / "mscoco"
    part = "val2017" if split == "test" else "train2017"
    annotations = folder / "annotations" / f"instances_{part}.json"
    how = f"get {part}.zip and annotations_trainval2017.zip from {MSCOCO_URL} and extract both into mscoco/"
    require("mscoco", [annotations, folder / part], how, root)
    try:
        data = json.loads(annotations.read_text())
        categories = sorted(int(c["id"]) for c in data["categories"])
        images = {int(im["id"]): (im["file_name"], int(im["width"]), int(im["height"])) for im in data["images"]}
        boxes = data["annotations"]
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetMissingError(f"mscoco: {annotations} is not COCO instances JSON ({type(err).__name__}); extract annotations_trainval2017.zip again") from None
    if len(categories) != MSCOCO_CLASSES:
        raise DatasetMissingError(f"mscoco: {annotations} lists {len(categories)} categories, not {MSCOCO_CLASSES}; extract annotations_trainval2017.zip again")
    index = {c: i for i, c in enumerate(categories)}
    kept: dict[int, list[tuple[tuple[float, float, float, float], int]]] = {}
    counts = [0] * MSCOCO_CLASSES
    for ann in sorted(boxes, key=lambda a: int(a["id"])):
        x, y, w, h = (float(v) for v in ann["bbox"])
        label = index.get(int(ann["category_id"]))
        if ann.get("iscrowd", 0) or w < MSCOCO_MIN_SIDE or h < MSCOCO_MIN_SIDE or label is None or counts[label] >= MSCOCO_PER_CLASS:
            continue
        if int(ann["image_id"]) not in images:
            raise DatasetMissingError(f"mscoco: {annotations} annotates image {ann['image_id']}, which it does not list; extract annotations_trainval2017.zip again")
        counts[label] += 1
        kept.setdefault(int(ann["image_id"]), []).append(((x, y, w, h), label))
    order = sorted(kept)  # images by id, their crops by annotation id
    starts = np.cumsum([0] + [len(kept[i]) for i in order])
    if starts[-1] == 0:
        raise DatasetMissingError(f"mscoco: {annotations} has no box of at least {MSCOCO_MIN_SIDE} px; extract annotations_trainval2017.zip again")
    out = np.empty((int(starts[-1]), SIDE, SIDE, 3), dtype=np.uint8)
    labels = np.empty(int(starts[-1]), dtype=np.int64)

    def crop(k: int) -> None:
        path = folder / part / images[order[k]][0]
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except FileNotFoundError:
            raise DatasetMissingError(f"mscoco: {path} is missing (listed in {annotations.name}); the folder is incomplete: extract {part}.zip again") from None
        except Exception as err:
            raise DatasetMissingError(f"mscoco: {path} cannot be read as an image ({type(err).__name__}); extract {part}.zip again") from None
        for j, ((x, y, w, h), label) in enumerate(kept[order[k]]):
            dx, dy = w * (MSCOCO_BOX_SCALE - 1) / 2, h * (MSCOCO_BOX_SCALE - 1) / 2
            box = (max(0, round(x - dx)), max(0, round(y - dy)), min(rgb.width, round(x + w + dx)), min(rgb.height, round(y + h + dy)))
            out[starts[k] + j] = np.asarray(rgb.crop(box).resize((SIDE, SIDE), Image.BILINEAR))
            labels[starts[k] + j] = label

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        list(pool.map(crop, range(len(order))))
    return ImageTensorSet(torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels))


# sizes depend on the box filter and the cap: counted at load
MSCOCO_SPEC = domain_spec("mscoco", f"MSCOCO object crops (Meta-Dataset domain): 80 categories, train2017 / val2017 boxes of at least {MSCOCO_MIN_SIDE} px, at most {MSCOCO_PER_CLASS:,} a class, stored at 84 px", MSCOCO_CLASSES, load_mscoco)

RELEASED_DOMAINS = (CUB_SPEC, FUNGI_SPEC, QUICKDRAW_SPEC, FLOWERS_SPEC, MSCOCO_SPEC)
