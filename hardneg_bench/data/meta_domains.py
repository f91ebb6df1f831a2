"""Meta-Dataset domains as transfer targets, read from the folders torchvision's loaders use.

Each domain is read from the files and folders its torchvision class reads (DTD, FGVCAircraft,
GTSRB, Omniglot), without the class itself: Omniglot's class checks the md5 of the downloaded zips
(which tiny test files cannot pass) and lists folders in ``os.listdir`` order (not reproducible
across file systems; here every listing is sorted). torchvision's classes are used to download
(``download``; their URLs), as for CIFAR and STL-10.

Splits, labels and crops follow the Meta-Dataset loaders of the Ring authors' group. The Ring code
itself (mhw32/contrastive-ring-public@fb3e1c2) has none: its README.md:27 says it holds CIFAR-10/100
and STL-10 only, though its ``TransferSystem.create_model`` (src/systems/systems.py:463-465) expects
``meta_*`` datasets with a ``NUM_CLASSES``. Those classes are published in the Viewmaker code of
two of the Ring authors (Tamkin, Wu, Goodman; alextamkin/viewmaker@d9a7d4b
src/datasets/meta_datasets/*.py, below "their code"): DTD train1 + val1 / test1, FGVC-Aircraft
cropped to its bounding boxes, GTSRB (``traffic_sign``) split 80/20 per class by
:func:`class_split`. Their code has no Omniglot: its split is :func:`class_split` too (departs:
their rule applied to a domain they do not load). docs/meta_dataset.md tabulates every rule.

Every image is decoded to RGB (Omniglot's grey strokes become 3 equal channels, as their
``convert(mode='RGB')``), its short side resized to ``SIDE`` (bilinear, antialiased) and its
centre ``SIDE`` x ``SIDE`` kept: their test transform Resize(n) + CenterCrop(n) (viewmaker
src/datasets/datasets.py:64-65, 112-113; the Ring code's src/datasets/datasets.py:141-142 for
32 px). The splits are held in memory as uint8 (N, 3, 84, 84) :class:`ImageTensorSet` (21 KB an
image). departs: their code resizes to 32 px (viewmaker) or, in the Ring code, to the pretraining
input (Resize(256) + CenterCrop(224) with its released configs, datasets.py:161-167; 32, 64 or
96 px with its ``mocov2_*x*_transforms`` flags); 84 px (Meta-Dataset's side) is kept as the stored
side so that every probe side up to 84 is a plain downscale and 224 px stays in memory budget; the
encoder's input size is ``probe.image_size`` (``probe.test_resize`` for Resize(256)-style crops).
Mean and std are ImageNet's, as every transform of the Ring code (datasets.py:68-69, 144-145,
158-159, 165-166); departs from viewmaker, whose per-domain statistics
(src/datasets/data_statistics.py) are listed in docs/meta_dataset.md. ``pretrain`` is the ``train``
split.
"""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from .base import DatasetMissingError, DatasetSpec, ImageTensorSet, Split
from .imagenet import MEAN, STD

SIDE = 84  # departs: their transfer side is 32 px (viewmaker) or the pretraining side (Ring): module docstring
"""The stored side: Meta-Dataset's default image size (84 px; 126 px is its other choice)."""
DOWNLOAD_TIMEOUT_S = 30

SPLIT_SEED = 42
TRAIN_FRACTION = 0.8
"""Their split where a domain's split is not taken from its files (viewmaker
src/datasets/meta_datasets/traffic_sign.py:61-76, vgg_flower.py:59-80): one
``np.random.RandomState(42)`` drawn from class after class, each class's items shuffled and the
first ``int(0.8 * n)`` kept for train, the rest for test (see :func:`class_split`)."""

T = TypeVar("T")


def class_split(counts: Sequence[int], split: Split) -> list[np.ndarray]:
    """For each class in the order given (``counts[k]`` items), the positions of ``split``'s items
    in the order their code lists them: one ``RandomState(SPLIT_SEED)`` shared by the classes in
    turn, ``permutation(n)`` (their ``rs.shuffle(np.arange(n))``), train the first
    ``int(TRAIN_FRACTION * n)``, test the rest."""
    rng = np.random.RandomState(SPLIT_SEED)
    picks = []
    for n in counts:
        order = rng.permutation(n)
        cut = int(TRAIN_FRACTION * n)
        picks.append(order[cut:] if split == "test" else order[:cut])
    return picks


def split_by_class(groups: Sequence[Sequence[T]], split: Split) -> list[T]:
    """The items of ``split`` of each class's list in ``groups`` (classes in order), by :func:`class_split`."""
    return [group[i] for group, picks in zip(groups, class_split([len(g) for g in groups], split)) for i in picks]


def to_side(img: Image.Image) -> np.ndarray:
    """uint8 (SIDE, SIDE, 3): RGB, short side resized to ``SIDE`` (bilinear), centre crop."""
    return np.asarray(TF.center_crop(TF.resize(img.convert("RGB"), SIDE, InterpolationMode.BILINEAR), SIDE))


Box = tuple[int, int, int, int]


def read_images(name: str, paths: list[Path], boxes: list[Box] | None = None) -> torch.Tensor:
    """uint8 (N, 3, SIDE, SIDE) from image files, each first cropped to ``boxes[i]`` (PIL's
    (left, upper, right, lower)) if given; a missing or unreadable file is one line."""
    out = np.empty((len(paths), SIDE, SIDE, 3), dtype=np.uint8)

    def read(i: int) -> None:
        try:
            with Image.open(paths[i]) as img:
                out[i] = to_side(img.convert("RGB").crop(boxes[i]) if boxes else img)
        except FileNotFoundError:
            raise DatasetMissingError(f"{name}: {paths[i]} is missing (listed in its split); the folder is incomplete: extract the archive again") from None
        except Exception as err:  # PIL raises OSError, ValueError or SyntaxError on a damaged file
            raise DatasetMissingError(f"{name}: {paths[i]} cannot be read as an image ({type(err).__name__}); extract the archive again") from None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(read, range(len(paths))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def domain_spec(name: str, description: str, num_classes: int, load, location: str, train: int | None = None, test: int | None = None) -> DatasetSpec:
    """A Meta-Dataset domain's registry entry: stored at ``SIDE`` px with ImageNet statistics,
    pretrained on (when it is) its training split; ``train``/``test``: the split sizes where the
    files fix them (else counted at load)."""
    sizes = {} if train is None else {"pretrain": train, "train": train, "test": test}
    # ImageNet statistics as every Ring transform; departs: viewmaker's per-domain ones (docs/meta_dataset.md)
    return DatasetSpec(name=name, description=description, num_classes=num_classes, image_size=SIDE, mean=MEAN, std=STD, load=load, split_sizes=sizes, location=location)


def _tensor_set(name: str, samples: list[tuple[Path, int]], boxes: list[Box] | None = None) -> ImageTensorSet:
    if not samples:
        raise DatasetMissingError(f"{name}: the split lists no images; extract the archive again")
    paths, labels = zip(*samples)
    return ImageTensorSet(read_images(name, list(paths), boxes), torch.tensor(labels, dtype=torch.int64))


def ensure(name: str, required: list[Path], fetch: Callable[[], None], url: str, root: Path, download: bool) -> None:
    """Make sure every path of ``required`` exists: call ``fetch`` (torchvision's download) when
    one is missing and ``download`` is set; otherwise (or if that fails) one-line
    :class:`DatasetMissingError` naming the dataset, the missing path and how to get it."""

    def first_missing() -> Path | None:
        return next((p for p in required if not p.exists()), None)

    missing = first_missing()
    if missing is None:
        return
    reason = f"{name} not found: {missing} is missing"
    if download:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            fetch()
        except Exception as err:  # offline, refused, corrupt archive: all end in the same advice
            reason += f" and the download failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'})"
        finally:
            socket.setdefaulttimeout(previous)
        missing = first_missing()
        if missing is None:
            return
        reason = reason if "download failed" in reason else f"{name} not found: {missing} is missing after the download"
    raise DatasetMissingError(f"{reason}; run with --download, or download {url} and extract it so that {required[0]} exists (or pass --data-root to the folder holding {required[0].relative_to(root).parts[0]}/)")


# --- DTD ---------------------------------------------------------------------------------------

DTD_URL = "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"


def load_dtd(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/dtd/dtd/labels/{train,val,test}1.txt`` (lines ``<class>/<file>``) and
    ``root/dtd/dtd/images/<class>/<file>``: partition 1, ``train1`` + ``val1`` (pretrain, train)
    and ``test1`` (test), as their dtd.py:56-69 (torchvision's ``DTD`` reads ``train1`` alone);
    labels are the indices of the split's sorted class names (dtd.py:71-87)."""
    from torchvision.datasets import DTD

    root = Path(root)
    folder = root / "dtd" / "dtd"
    lists = [folder / "labels" / f"{stem}1.txt" for stem in (("test",) if split == "test" else ("train", "val"))]
    ensure("dtd", [*lists, folder / "images"], lambda: DTD(str(root), download=True), getattr(DTD, "_URL", DTD_URL), root, download)
    entries = [line.strip().split("/") for path in lists for line in path.read_text().splitlines() if line.strip()]
    classes = {c: i for i, c in enumerate(sorted({c for c, _ in entries}))}
    if len(classes) != DTD_CLASSES:  # labels are indices into the split's own sorted classes
        raise DatasetMissingError(f"dtd: {' + '.join(p.name for p in lists)} list {len(classes)} classes, not {DTD_CLASSES}; extract the archive again")
    return _tensor_set("dtd", [(folder / "images" / c / f, classes[c]) for c, f in entries])


DTD_CLASSES = 47

# 40 images per class in each of train / val / test (Cimpoi et al., CVPR 2014)
DTD_SPEC = domain_spec("dtd", "DTD textures (Meta-Dataset domain): 47 classes, partition 1, train1 + val1 / test1, stored at 84 px", DTD_CLASSES, load_dtd, "dtd/dtd", train=3_760, test=1_880)


# --- FGVC-Aircraft ------------------------------------------------------------------------------

AIRCRAFT_URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"


def _aircraft_lines(path: Path, fields: int) -> list[list[str]]:
    """``<image id> <rest>`` lines split into ``fields`` parts (the rest kept whole if 2)."""
    rows = [line.strip().split(" ", 1) if fields == 2 else line.split() for line in path.read_text().splitlines() if line.strip()]
    if any(len(r) != fields for r in rows):
        raise DatasetMissingError(f"aircraft: {path} has a line without {fields} fields; extract the archive again")
    return rows


def load_aircraft(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/fgvc-aircraft-2013b/data/images_variant_{trainval,test}.txt`` (lines ``<image id>
    <variant>``), ``images_box.txt`` (``<image id> <xmin> <ymin> <xmax> <ymax>``) and
    ``images/<image id>.jpg``, as their aircraft.py: labels are the indices of the split's sorted
    variants (l.77-85; torchvision numbers them in ``variants.txt`` order), images listed class by
    class, ids sorted (l.80-89), each photo cropped to its box (l.93-114, PIL ``crop`` of the four
    numbers as written), which also drops the 20 px copyright banner."""
    from torchvision.datasets import FGVCAircraft

    root = Path(root)
    data = root / "fgvc-aircraft-2013b" / "data"
    labels_file = data / f"images_variant_{'test' if split == 'test' else 'trainval'}.txt"
    ensure("aircraft", [labels_file, data / "images_box.txt", data / "images"], lambda: FGVCAircraft(str(root), download=True), getattr(FGVCAircraft, "_URL", AIRCRAFT_URL), root, download)
    variant_of = dict(_aircraft_lines(labels_file, 2))
    variants = sorted(set(variant_of.values()))
    if len(variants) != AIRCRAFT_CLASSES:
        raise DatasetMissingError(f"aircraft: {labels_file} lists {len(variants)} variants, not {AIRCRAFT_CLASSES}; extract the archive again")
    try:
        box_of = {image_id: (int(a), int(b), int(c), int(d)) for image_id, a, b, c, d in _aircraft_lines(data / "images_box.txt", 5)}
    except ValueError:
        raise DatasetMissingError(f"aircraft: {data / 'images_box.txt'} has a box that is not four integers; extract the archive again") from None
    missing = next((i for i in sorted(variant_of) if i not in box_of), None)
    if missing is not None:
        raise DatasetMissingError(f"aircraft: image {missing} of {labels_file} has no line in {data / 'images_box.txt'}; extract the archive again")
    label = {v: k for k, v in enumerate(variants)}
    ids = sorted(variant_of, key=lambda i: (label[variant_of[i]], i))  # class by class, ids sorted
    return _tensor_set("aircraft", [(data / "images" / f"{i}.jpg", label[variant_of[i]]) for i in ids], [box_of[i] for i in ids])


AIRCRAFT_CLASSES = 100

# 10,000 images in three equal parts (Maji et al., 2013): trainval 6,667, test 3,333
AIRCRAFT_SPEC = domain_spec("aircraft", "FGVC-Aircraft (Meta-Dataset domain): 100 variants, trainval / test, cropped to the bounding boxes, stored at 84 px", AIRCRAFT_CLASSES, load_aircraft, "fgvc-aircraft-2013b", train=6_667, test=3_333)


# --- GTSRB --------------------------------------------------------------------------------------

GTSRB_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"


def load_gtsrb(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/gtsrb/GTSRB/Training/<class 00000..00042>/*.ppm`` (torchvision's ``GTSRB`` train
    layout; their traffic_sign.py:64-66 reads the same images as ``Final_Training/Images``), class
    ``c`` the folder ``f"{c:05d}"``, split by :func:`class_split` over the classes 0..42 in turn
    (traffic_sign.py:61-79): both splits come from the training images; the official test set
    (``Final_Test``) is not read. departs: files are sorted by name before the shuffle (their
    ``glob`` order depends on the file system, so their exact split cannot be rebuilt). Training
    images come in tracks of 30 frames of one sign, so this split puts near-copies in train and
    test, as theirs does."""
    from torchvision.datasets import GTSRB

    root = Path(root)
    folder = root / "gtsrb" / "GTSRB" / "Training"
    ensure("gtsrb", [folder], lambda: GTSRB(str(root), split="train", download=True), GTSRB_URL + "GTSRB-Training_fixed.zip", root, download)
    groups = [sorted((folder / f"{c:05d}").glob("*.ppm")) for c in range(GTSRB_CLASSES)]  # departs: sorted (their glob: file-system order)
    empty = next((c for c, g in enumerate(groups) if not g), None)
    if empty is not None:
        raise DatasetMissingError(f"gtsrb: {folder / f'{empty:05d}'} holds no .ppm image; extract GTSRB-Training_fixed.zip again")
    labelled = [[(path, c) for path in group] for c, group in enumerate(groups)]
    return _tensor_set("gtsrb", split_by_class(labelled, split))


GTSRB_CLASSES = 43

# sizes: int(0.8 n) of each class's training images: counted at load
GTSRB_SPEC = domain_spec("gtsrb", "GTSRB traffic signs (Meta-Dataset domain): 43 classes, the training images split 80/20 per class (seed 42), stored at 84 px", GTSRB_CLASSES, load_gtsrb, "gtsrb/GTSRB/Training")


# --- Omniglot -----------------------------------------------------------------------------------

OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_{background,evaluation}.zip"
OMNIGLOT_CLASSES = 1_623
OMNIGLOT_SETS = ("images_background", "images_evaluation")


def omniglot_characters(root: Path) -> list[list[Path]]:
    """The drawings of each character of ``root/omniglot-py/images_{background,evaluation}/
    <alphabet>/<character>/*.png``, characters numbered over background then evaluation,
    alphabets and characters sorted by name (torchvision's ``Omniglot`` numbers each set
    separately, in listing order)."""
    characters = []
    for part in OMNIGLOT_SETS:
        folder = root / "omniglot-py" / part
        for alphabet in sorted(d for d in folder.iterdir() if d.is_dir()):
            characters += [sorted(c.glob("*.png")) for c in sorted(d for d in alphabet.iterdir() if d.is_dir())]
    return characters


def load_omniglot(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """Both of Omniglot's sets (1,623 characters), split by :func:`class_split` over the characters
    in label order. Their code has no Omniglot loader: departs, their rule for splits applied here
    (Omniglot has no classification split; 16 train and 4 test drawings of each character's 20)."""
    from torchvision.datasets import Omniglot

    root = Path(root)

    def fetch() -> None:
        for background in (True, False):
            Omniglot(str(root), background=background, download=True)

    ensure("omniglot", [root / "omniglot-py" / part for part in OMNIGLOT_SETS], fetch, OMNIGLOT_URL, root, download)
    characters = omniglot_characters(root)
    if len(characters) != OMNIGLOT_CLASSES:
        raise DatasetMissingError(f"omniglot: {root / 'omniglot-py'} holds {len(characters)} character folders (images_*/<alphabet>/<character>/), not {OMNIGLOT_CLASSES}; extract both zips again")
    # departs: their split rule on a domain their code does not load
    return _tensor_set("omniglot", split_by_class([[(p, y) for p in drawings] for y, drawings in enumerate(characters)], split))


# 20 drawings of each of the 1,623 characters (Lake et al., 2015): int(0.8 * 20) = 16 train, 4 test
OMNIGLOT_SPEC = domain_spec("omniglot", "Omniglot (Meta-Dataset domain): 1,623 characters, split 80/20 per character (seed 42), stored at 84 px", OMNIGLOT_CLASSES, load_omniglot, "omniglot-py", train=25_968, test=6_492)

META_DOMAINS = (DTD_SPEC, AIRCRAFT_SPEC, GTSRB_SPEC, OMNIGLOT_SPEC)
