"""The Meta-Dataset domains (DTD, FGVC-Aircraft, GTSRB, Omniglot) on tiny files written in exactly
the layout torchvision's classes read: labels, one known colour per class, split sizes, and a
missing or partial folder as one line. Flowers102 and the other released-layout domains are tested
in test_meta_domains_released.py."""

import csv
import urllib.error

import numpy as np
import pytest
import torch
from inprocess_cli import invoke
from PIL import Image

from hardneg_bench.data import meta_domains
from hardneg_bench.data.base import DatasetMissingError
from hardneg_bench.data.imagenet import MEAN, STD
from hardneg_bench.data.registry import DATASETS

NAMES = ["dtd", "aircraft", "gtsrb", "omniglot"]


def colour(label: int) -> tuple[int, int, int]:
    return (label * 37) % 256, (label * 91 + 40) % 256, (label * 53 + 90) % 256


def solid(path, label, size=(30, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(label)).save(path)


def write_dtd(root, n_train=1, n_test=2):
    """``dtd/dtd/images/<class>/<class>_<i>.jpg`` and ``labels/{train,val,test}1.txt``; classes
    named so that their sorted order is not the order written."""
    folder = root / "dtd" / "dtd"
    names = [f"{'zyxwvutsrqponmlkjihgfedcba'[i % 26]}texture{i:02d}" for i in range(47)]
    lines = {"train": [], "val": [], "test": []}
    for name in names:
        label = sorted(names).index(name)
        for split, n in (("train", n_train), ("val", 1), ("test", n_test)):
            for i in range(n):
                solid(folder / "images" / name / f"{name}_{split}{i}.jpg", label, (30 + i, 20))
                lines[split].append(f"{name}/{name}_{split}{i}.jpg")
    (folder / "labels").mkdir()
    for split, rows in lines.items():
        (folder / "labels" / f"{split}1.txt").write_text("\n".join(rows) + "\n")
        (folder / "labels" / f"{split}2.txt").write_text("")  # other partitions are not read
    return names


def write_aircraft(root):
    """``fgvc-aircraft-2013b/data/variants.txt`` (100 names, label order) and
    ``images_variant_{trainval,test}.txt`` of ``<7-digit id> <variant>``, ``images/<id>.jpg``."""
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    variants = [f"Model {99 - i}-{i}00" for i in range(100)]  # names with spaces, not sorted
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    split_labels = {"trainval": [0, 5, 99, 5, 42], "test": [99, 0, 7]}
    for split, labels in split_labels.items():
        rows = []
        for i, label in enumerate(labels):
            image_id = f"{1_000_000 + 100 * len(split) + i:07d}"
            solid(data / "images" / f"{image_id}.jpg", label, (40, 30))  # photos are wider than tall
            rows.append(f"{image_id} {variants[label]}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
    (data / "images_variant_train.txt").write_text("")  # train / val alone are not read
    return split_labels


def write_gtsrb(root):
    """``gtsrb/GTSRB/Training/000NN/*.ppm`` (43 class folders, each with its ``GT-000NN.csv``)
    and ``gtsrb/GTSRB/Final_Test/Images/*.ppm`` labelled by ``gtsrb/GT-final_test.csv``."""
    base = root / "gtsrb"
    train = []
    for c in range(43):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        for i in range(1 + (c == 3)):
            solid(folder / f"{i:05d}_{c:05d}.ppm", c, (15 + i, 17))
            train.append(c)
        (folder / f"GT-{c:05d}.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n")
    test = [12, 0, 42, 12]
    with open(base / "GT-final_test.csv", "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"])
        for i, c in enumerate(test):
            solid(base / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm", c, (20, 22))
            writer.writerow([f"{i:05d}.ppm", 20, 22, 5, 5, 15, 17, c])
    return train, test


OMNIGLOT_LAYOUT = {  # part -> alphabet -> characters; 5 characters, labels in this (sorted) order
    "images_background": {"Alphabet_A": ["character01", "character02"], "Greek": ["character01"]},
    "images_evaluation": {"Atlantean": ["character01", "character02"]},
}


def write_omniglot(root, drawings=4):
    """``omniglot-py/images_{background,evaluation}/<alphabet>/<character>/<id>_<drawer>.png``,
    grey ("L") strokes: each character a solid grey of 40 * (label + 1)."""
    label = 0
    for part, alphabets in OMNIGLOT_LAYOUT.items():
        for alphabet, characters in alphabets.items():
            for character in characters:
                folder = root / "omniglot-py" / part / alphabet / character
                folder.mkdir(parents=True)
                for d in range(drawings):
                    Image.new("L", (105, 105), 40 * (label + 1)).save(folder / f"{label + 1:04d}_{d + 1:02d}.png")
                label += 1
    return label


def assert_colours(data, tolerance):
    assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 84, 84)
    assert data.labels.dtype == torch.int64 and len(data.labels) == len(data.images)
    for image, label in zip(data.images, data.labels.tolist()):
        assert np.abs(image[:, 42, 42].numpy().astype(int) - colour(label)).max() <= tolerance, label


def test_specs_are_transfer_targets_at_84_px():
    expected = {"dtd": (47, 1_880, 1_880), "aircraft": (100, 6_667, 3_333), "gtsrb": (43, 39_209, 12_630), "omniglot": (1_623, 24_345, 8_115)}
    for name, (classes, train, test) in expected.items():
        spec = DATASETS[name]
        assert (spec.num_classes, spec.image_size, spec.transfer_target, spec.builtin, spec.folder) == (classes, 84, None, False, False)
        assert (spec.mean, spec.std) == (MEAN, STD)
        assert spec.split_sizes == {"pretrain": train, "train": train, "test": test}
    assert meta_domains.OMNIGLOT_TEST_FRACTION * 20 == 5 and isinstance(meta_domains.OMNIGLOT_SEED, int)


def test_dtd_partition_1_with_sorted_class_labels(tmp_path):
    names = write_dtd(tmp_path)
    train, test = DATASETS["dtd"].load("train", tmp_path, False), DATASETS["dtd"].load("test", tmp_path, False)
    assert (len(train), len(test)) == (47, 94)  # train1 and test1 only: val1 is not used
    assert sorted(train.labels.tolist()) == list(range(47))
    assert train.labels[0].item() == sorted(names).index(names[0]) != 0
    assert_colours(train, 3)  # JPEG
    assert_colours(test, 3)
    assert torch.equal(DATASETS["dtd"].load("pretrain", tmp_path, False).labels, train.labels)


def test_aircraft_variants_trainval_and_test(tmp_path):
    labels = write_aircraft(tmp_path)
    for split, key in (("pretrain", "trainval"), ("train", "trainval"), ("test", "test")):
        data = DATASETS["aircraft"].load(split, tmp_path, False)
        assert data.labels.tolist() == labels[key]  # indices in variants.txt order, not sorted
        assert_colours(data, 3)


def test_gtsrb_train_folders_and_test_csv(tmp_path):
    train_labels, test_labels = write_gtsrb(tmp_path)
    train, test = DATASETS["gtsrb"].load("train", tmp_path, False), DATASETS["gtsrb"].load("test", tmp_path, False)
    assert train.labels.tolist() == train_labels and len(train) == 44  # the GT-*.csv files are not images
    assert test.labels.tolist() == test_labels
    assert_colours(train, 0)  # PPM is lossless
    assert_colours(test, 0)


def test_omniglot_seeded_stratified_split_of_both_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(meta_domains, "OMNIGLOT_CLASSES", write_omniglot(tmp_path, drawings=4))
    train, test = DATASETS["omniglot"].load("train", tmp_path, False), DATASETS["omniglot"].load("test", tmp_path, False)
    assert (len(train), len(test)) == (15, 5)  # 1 of each character's 4 drawings is a test image
    assert train.labels.tolist() == [c for c in range(5) for _ in range(3)] and test.labels.tolist() == list(range(5))
    for data in (train, test):  # grey strokes become three equal channels
        assert torch.equal(data.images[:, 0], data.images[:, 1]) and torch.equal(data.images[:, 0], data.images[:, 2])
        assert data.images[:, 0, 42, 42].tolist() == [40 * (y + 1) for y in data.labels.tolist()]
    again = DATASETS["omniglot"].load("test", tmp_path, False)
    assert torch.equal(again.images, test.images)  # the split is fixed by the seed
    rows = lambda d: {tuple(x) for x in d.images[:, 0, 0, :3].tolist()}  # noqa: E731
    assert len(rows(train) | rows(test)) == 5  # solid images: only colours to compare; the index split is checked below
    picked = {split: set(meta_domains.omniglot_split(np.repeat(np.arange(5), 4), split).tolist()) for split in ("train", "test")}
    assert picked["train"].isdisjoint(picked["test"]) and picked["train"] | picked["test"] == set(range(20))
    assert picked["test"] != {0, 4, 8, 12, 16}  # chosen at random per character, not the first drawing


def test_omniglot_needs_both_sets_and_every_character(tmp_path, monkeypatch):
    write_omniglot(tmp_path, drawings=2)
    with pytest.raises(DatasetMissingError, match="holds 5 character folders .* not 1623") as err:
        DATASETS["omniglot"].load("train", tmp_path, False)
    assert "\n" not in str(err.value)
    import shutil

    shutil.rmtree(tmp_path / "omniglot-py" / "images_evaluation")
    with pytest.raises(DatasetMissingError, match="omniglot not found: .*images_evaluation is missing"):
        DATASETS["omniglot"].load("train", tmp_path, False)


@pytest.mark.parametrize("name", NAMES)
def test_missing_domain_is_one_line_naming_the_folder(tmp_path, name):
    with pytest.raises(DatasetMissingError) as err:
        DATASETS[name].load("train", tmp_path / "data", False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name} not found: {tmp_path / 'data'}")
    assert "--download" in message and "--data-root" in message and "https://" in message


def test_partial_folders_name_the_missing_file(tmp_path):
    write_dtd(tmp_path)
    (tmp_path / "dtd" / "dtd" / "images" / "atexture25" / "atexture25_test1.jpg").unlink()
    with pytest.raises(DatasetMissingError, match="dtd: .*atexture25_test1.jpg is missing") as err:
        DATASETS["dtd"].load("test", tmp_path, False)
    assert "\n" not in str(err.value)
    write_gtsrb(tmp_path)
    (tmp_path / "gtsrb" / "GT-final_test.csv").unlink()
    assert len(DATASETS["gtsrb"].load("train", tmp_path, False)) == 44  # the train split is whole
    with pytest.raises(DatasetMissingError, match="gtsrb not found: .*GT-final_test.csv is missing"):
        DATASETS["gtsrb"].load("test", tmp_path, False)
    (tmp_path / "gtsrb" / "GTSRB" / "Training" / "00042" / "00000_00042.ppm").write_bytes(b"P6 broken")
    with pytest.raises(DatasetMissingError, match="00000_00042.ppm cannot be read as an image"):
        DATASETS["gtsrb"].load("train", tmp_path, False)
    write_aircraft(tmp_path)
    (tmp_path / "fgvc-aircraft-2013b" / "data" / "variants.txt").write_text("only one\n")
    with pytest.raises(DatasetMissingError, match="aircraft: .*variants.txt lists 1 variants, not 100"):
        DATASETS["aircraft"].load("test", tmp_path, False)


TORCHVISION_MODULES = {"dtd": "dtd", "aircraft": "fgvc_aircraft", "gtsrb": "gtsrb", "omniglot": "omniglot"}


@pytest.mark.parametrize("name", NAMES)
def test_download_goes_through_torchvision_and_fails_in_one_line(tmp_path, monkeypatch, name):
    urls = []

    def offline(url, *args, **kwargs):
        urls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(f"torchvision.datasets.{TORCHVISION_MODULES[name]}.download_and_extract_archive", offline)
    with pytest.raises(DatasetMissingError) as err:
        DATASETS[name].load("test", tmp_path, True)
    message = str(err.value)
    assert urls and urls[0].startswith("https://") and "\n" not in message
    assert f"{name} not found" in message and "download failed (URLError" in message and str(tmp_path) in message


def test_download_fills_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.gtsrb.download_and_extract_archive", lambda *a, **k: write_gtsrb(tmp_path))
    assert len(DATASETS["gtsrb"].load("test", tmp_path, True)) == 4


def test_list_datasets_shows_the_domains(tmp_path, monkeypatch):
    listed = invoke(monkeypatch, "list", "datasets", runs=tmp_path / "runs").stdout
    for name, sizes in {"dtd": "1,880 / 1,880 / 1,880", "aircraft": "6,667 / 6,667 / 3,333", "gtsrb": "39,209 / 39,209 / 12,630", "omniglot": "24,345 / 24,345 / 8,115"}.items():
        cells = next([c.strip() for c in row.split("│")] for row in listed.splitlines() if row.split("│")[1:2] and row.split("│")[1].strip() == name)
        assert cells[2:5] == [str(DATASETS[name].num_classes), "84", sizes]
