"""Meta-Dataset domains as transfer targets, read from the folders torchvision's loaders use.

Each domain is read from exactly the files and folders its torchvision class reads (DTD,
FGVCAircraft, GTSRB, Omniglot), with the same labels, but without the class itself: Omniglot's
class checks the md5 of the downloaded zips (which tiny test files cannot pass) and lists folders in
``os.listdir`` order (not reproducible across file systems; here every listing is sorted).
torchvision's classes are used to download (``download``; their URLs), as for CIFAR and STL-10.

Every image is decoded to RGB (Omniglot's grey strokes become 3 equal channels) and resized, aspect
ratio not kept, to ``SIDE`` x ``SIDE`` with bilinear filtering, as Meta-Dataset does with its
84 px images; the splits are held in memory as uint8 (N, 3, 84, 84) :class:`ImageTensorSet`
(21 KB an image: GTSRB's 39,209 training images take 0.8 GB, the largest split here). 84 px is
the stored side and the default crop; the encoder's input size for evaluation is
``probe.image_size`` (and ``pretrain.augment.crop_size`` for pretraining), as for every dataset.
Mean and std are ImageNet's (as for STL-10 and ImageNet), the usual choice for transfer targets.
``pretrain`` is the ``train`` split. FGVC-Aircraft keeps the 20 px copyright banner at the bottom
of each photo (torchvision does not crop it; Meta-Dataset crops to the bounding box).
"""

from __future__ import annotations

import csv
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .base import DatasetMissingError, DatasetSpec, ImageTensorSet, Split
from .imagenet import MEAN, STD

SIDE = 84
"""The stored side: Meta-Dataset's default image size (84 px; 126 px is its other choice)."""
DOWNLOAD_TIMEOUT_S = 30

OMNIGLOT_SEED = 0
OMNIGLOT_TEST_FRACTION = 0.25
"""Omniglot has no official classification split: of each character's drawings (20 each, by 20
people), ``round(0.25 * n)`` chosen by a generator seeded ``OMNIGLOT_SEED + class index`` are test
images and the rest train images (stratified: every character in both splits)."""


def read_images(name: str, paths: list[Path]) -> torch.Tensor:
    """uint8 (N, 3, SIDE, SIDE) from image files; a missing or unreadable file is one line."""
    out = np.empty((len(paths), SIDE, SIDE, 3), dtype=np.uint8)

    def read(i: int) -> None:
        try:
            with Image.open(paths[i]) as img:
                out[i] = np.asarray(img.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR))
        except FileNotFoundError:
            raise DatasetMissingError(f"{name}: {paths[i]} is missing (listed in its split); the folder is incomplete: extract the archive again") from None
        except Exception as err:  # PIL raises OSError, ValueError or SyntaxError on a damaged file
            raise DatasetMissingError(f"{name}: {paths[i]} cannot be read as an image ({type(err).__name__}); extract the archive again") from None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(read, range(len(paths))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def domain_spec(name: str, description: str, num_classes: int, load, train: int | None = None, test: int | None = None) -> DatasetSpec:
    """A Meta-Dataset domain's registry entry: stored at ``SIDE`` px with ImageNet statistics,
    pretrained on (when it is) its training split; ``train``/``test``: the split sizes where the
    release fixes them (else counted at load)."""
    sizes = {} if train is None else {"pretrain": train, "train": train, "test": test}
    return DatasetSpec(name=name, description=description, num_classes=num_classes, image_size=SIDE, mean=MEAN, std=STD, load=load, split_sizes=sizes)


def _tensor_set(name: str, samples: list[tuple[Path, int]]) -> ImageTensorSet:
    if not samples:
        raise DatasetMissingError(f"{name}: the split lists no images; extract the archive again")
    paths, labels = zip(*samples)
    return ImageTensorSet(read_images(name, list(paths)), torch.tensor(labels, dtype=torch.int64))


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
    """``root/dtd/dtd/labels/{train,test}1.txt`` (lines ``<class>/<file>``) and
    ``root/dtd/dtd/images/<class>/<file>``: partition 1, ``train1`` (pretrain, train) and
    ``test1`` (test); labels are the sorted class names' indices (torchvision's ``DTD``)."""
    from torchvision.datasets import DTD

    root = Path(root)
    folder = root / "dtd" / "dtd"
    stem = "test" if split == "test" else "train"
    ensure("dtd", [folder / "labels" / f"{stem}1.txt", folder / "images"], lambda: DTD(str(root), download=True), getattr(DTD, "_URL", DTD_URL), root, download)
    entries = [line.strip().split("/") for line in (folder / "labels" / f"{stem}1.txt").read_text().splitlines() if line.strip()]
    classes = {c: i for i, c in enumerate(sorted({c for c, _ in entries}))}
    if len(classes) != DTD_CLASSES:  # labels are indices into the split's own sorted classes
        raise DatasetMissingError(f"dtd: {folder / 'labels' / f'{stem}1.txt'} lists {len(classes)} classes, not {DTD_CLASSES}; extract the archive again")
    return _tensor_set("dtd", [(folder / "images" / c / f, classes[c]) for c, f in entries])


DTD_CLASSES = 47

# 40 images per class in each of train / val / test (Cimpoi et al., CVPR 2014)
DTD_SPEC = domain_spec("dtd", "DTD textures (Meta-Dataset domain): 47 classes, partition 1, stored at 84 px", DTD_CLASSES, load_dtd, train=1_880, test=1_880)


# --- FGVC-Aircraft ------------------------------------------------------------------------------

AIRCRAFT_URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"


def load_aircraft(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """``root/fgvc-aircraft-2013b/data/variants.txt`` (the 100 variants, label order),
    ``images_variant_{trainval,test}.txt`` (lines ``<image id> <variant>``) and
    ``images/<image id>.jpg`` (torchvision's ``FGVCAircraft``, ``annotation_level="variant"``)."""
    from torchvision.datasets import FGVCAircraft

    root = Path(root)
    data = root / "fgvc-aircraft-2013b" / "data"
    stem = "test" if split == "test" else "trainval"
    labels_file = data / f"images_variant_{stem}.txt"
    ensure("aircraft", [data / "variants.txt", labels_file, data / "images"], lambda: FGVCAircraft(str(root), download=True), getattr(FGVCAircraft, "_URL", AIRCRAFT_URL), root, download)
    classes = {c: i for i, c in enumerate(line.strip() for line in (data / "variants.txt").read_text().splitlines() if line.strip())}
    if len(classes) != AIRCRAFT_CLASSES:
        raise DatasetMissingError(f"aircraft: {data / 'variants.txt'} lists {len(classes)} variants, not {AIRCRAFT_CLASSES}; extract the archive again")
    samples = []
    for line in labels_file.read_text().splitlines():
        if not line.strip():
            continue
        image_id, variant = line.strip().split(" ", 1)
        if variant not in classes:
            raise DatasetMissingError(f"aircraft: {labels_file} names variant {variant!r}, which is not in {data / 'variants.txt'}; extract the archive again")
        samples.append((data / "images" / f"{image_id}.jpg", classes[variant]))
    return _tensor_set("aircraft", samples)


AIRCRAFT_CLASSES = 100

# 10,000 images in three equal parts (Maji et al., 2013): trainval 6,667, test 3,333
AIRCRAFT_SPEC = domain_spec("aircraft", "FGVC-Aircraft (Meta-Dataset domain): 100 variants, trainval / test, stored at 84 px", AIRCRAFT_CLASSES, load_aircraft, train=6_667, test=3_333)


# --- GTSRB --------------------------------------------------------------------------------------

GTSRB_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"


def load_gtsrb(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """Train: ``root/gtsrb/GTSRB/Training/<class folder>/*.ppm``, labels the sorted folders'
    indices (folders 00000..00042); test: ``root/gtsrb/GTSRB/Final_Test/Images/<file>`` labelled
    by ``root/gtsrb/GT-final_test.csv`` (``;``-separated, columns ``Filename``, ``ClassId``),
    torchvision's ``GTSRB``."""
    from torchvision.datasets import GTSRB

    root = Path(root)
    base = root / "gtsrb"
    if split == "test":
        folder, required = base / "GTSRB" / "Final_Test" / "Images", [base / "GTSRB" / "Final_Test" / "Images", base / "GT-final_test.csv"]
    else:
        folder = base / "GTSRB" / "Training"
        required = [folder]
    ensure("gtsrb", required, lambda: GTSRB(str(root), split="test" if split == "test" else "train", download=True), GTSRB_URL + ("GTSRB_Final_Test_Images.zip and GTSRB_Final_Test_GT.zip" if split == "test" else "GTSRB-Training_fixed.zip"), root, download)
    if split == "test":
        with open(base / "GT-final_test.csv", newline="") as f:
            samples = [(folder / row["Filename"], int(row["ClassId"])) for row in csv.DictReader(f, delimiter=";", skipinitialspace=True)]
    else:
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if len(classes) != GTSRB_CLASSES:
            raise DatasetMissingError(f"gtsrb: {folder} has {len(classes)} class folders, not {GTSRB_CLASSES}; extract GTSRB-Training_fixed.zip again")
        samples = [(p, i) for i, c in enumerate(classes) for p in sorted((folder / c).glob("*.ppm"))]
    return _tensor_set("gtsrb", samples)


GTSRB_CLASSES = 43

# the GTSRB benchmark's final training and test sets (Stallkamp et al., 2012)
GTSRB_SPEC = domain_spec("gtsrb", "GTSRB traffic signs (Meta-Dataset domain): 43 classes, train / test, stored at 84 px", GTSRB_CLASSES, load_gtsrb, train=39_209, test=12_630)


# --- Omniglot -----------------------------------------------------------------------------------

OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_{background,evaluation}.zip"
OMNIGLOT_CLASSES = 1_623
OMNIGLOT_SETS = ("images_background", "images_evaluation")


def omniglot_samples(root: Path) -> tuple[list[tuple[Path, int]], int]:
    """Every drawing of ``root/omniglot-py/images_{background,evaluation}/<alphabet>/<character>/*.png``;
    a character's label is its index over background then evaluation, alphabets and characters
    sorted by name (torchvision's ``Omniglot`` numbers each set separately, in listing order)."""
    samples: list[tuple[Path, int]] = []
    label = 0
    for part in OMNIGLOT_SETS:
        folder = root / "omniglot-py" / part
        for alphabet in sorted(d for d in folder.iterdir() if d.is_dir()):
            for character in sorted(d for d in alphabet.iterdir() if d.is_dir()):
                samples += [(p, label) for p in sorted(character.glob("*.png"))]
                label += 1
    return samples, label


def omniglot_split(labels: np.ndarray, split: Split) -> np.ndarray:
    """Indices of ``split`` in the stratified, seeded split of :data:`OMNIGLOT_TEST_FRACTION`."""
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = np.random.default_rng(OMNIGLOT_SEED + int(c)).permutation(len(idx))
        n_test = int(round(OMNIGLOT_TEST_FRACTION * len(idx)))
        chosen.append(np.sort(idx[order[:n_test]] if split == "test" else idx[order[n_test:]]))
    return np.concatenate(chosen)


def load_omniglot(split: Split, root: Path, download: bool) -> ImageTensorSet:
    """Both of Omniglot's sets (1,623 characters), split per character by :func:`omniglot_split`."""
    from torchvision.datasets import Omniglot

    root = Path(root)

    def fetch() -> None:
        for background in (True, False):
            Omniglot(str(root), background=background, download=True)

    ensure("omniglot", [root / "omniglot-py" / part for part in OMNIGLOT_SETS], fetch, OMNIGLOT_URL, root, download)
    samples, characters = omniglot_samples(root)
    if characters != OMNIGLOT_CLASSES:
        raise DatasetMissingError(f"omniglot: {root / 'omniglot-py'} holds {characters} character folders (images_*/<alphabet>/<character>/), not {OMNIGLOT_CLASSES}; extract both zips again")
    labels = np.array([y for _, y in samples])
    return _tensor_set("omniglot", [samples[i] for i in omniglot_split(labels, split)])


# 20 drawings of each of the 1,623 characters (Lake et al., 2015): 15 train and 5 test each
OMNIGLOT_SPEC = domain_spec("omniglot", f"Omniglot (Meta-Dataset domain): 1,623 characters, seeded stratified split ({OMNIGLOT_TEST_FRACTION:.0%} test, seed {OMNIGLOT_SEED}), stored at 84 px", OMNIGLOT_CLASSES, load_omniglot, train=24_345, test=8_115)

META_DOMAINS = (DTD_SPEC, AIRCRAFT_SPEC, GTSRB_SPEC, OMNIGLOT_SPEC)
