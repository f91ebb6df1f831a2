"""The Meta-Dataset domains (DTD, FGVC-Aircraft, GTSRB, Omniglot) on tiny files written in exactly
the layout torchvision's classes read, checked against the rules of the Ring authors' group's loaders
written out in meta_reference.py: resize and centre crop, splits, labels, aircraft boxes, and a
missing or partial folder as one line. Flowers102 and the other released-layout domains are tested
in test_meta_domains_released.py."""

import shutil
import urllib.error

import numpy as np
import pytest
import torch
from inprocess_cli import invoke
from meta_reference import assert_colours, colour, solid, their_resize, their_split
from PIL import Image

from hardneg_bench.data import meta_domains
from hardneg_bench.data.base import DatasetMissingError
from hardneg_bench.data.imagenet import MEAN, STD
from hardneg_bench.data.registry import DATASETS

NAMES = ["dtd", "aircraft", "gtsrb", "omniglot"]


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
                solid(folder / "images" / name / f"{name}_{split}{i}.jpg", colour(label), (30 + i, 20))
                lines[split].append(f"{name}/{name}_{split}{i}.jpg")
    (folder / "labels").mkdir()
    for split, rows in lines.items():
        (folder / "labels" / f"{split}1.txt").write_text("\n".join(rows) + "\n")
        (folder / "labels" / f"{split}2.txt").write_text("")  # other partitions are not read
    return names


AIRCRAFT_VARIANTS = ["Model 9-100", "A-300", "Boeing 7", "707-320"]  # written unsorted, with spaces
AIRCRAFT_BOX = (4, 3, 36, 25)  # xmin ymin xmax ymax, as images_box.txt writes them
BANNER = (10, 10, 10)


def write_aircraft(root):
    """``fgvc-aircraft-2013b/data/images_variant_{trainval,test}.txt`` (``<7-digit id> <variant>``),
    ``images_box.txt`` and ``images/<id>.jpg``: photos 40 x 30 in the banner colour with the box
    painted in the class colour of the variant's sorted position. Returns {split: [(id, label)]}."""
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    order = sorted(AIRCRAFT_VARIANTS)
    layout = {"trainval": [2, 0, 3, 1, 0, 2], "test": [3, 1, 0, 2]}  # indices into AIRCRAFT_VARIANTS
    expected, boxes = {}, []
    for split, variants in layout.items():
        rows = []
        for i, v in enumerate(variants):
            image_id = f"{1_000_000 + 100 * len(split) + (7 * i) % len(variants):07d}"  # ids not in line order
            img = Image.new("RGB", (40, 30), BANNER)
            img.paste(colour(order.index(AIRCRAFT_VARIANTS[v])), AIRCRAFT_BOX)
            img.save(data / "images" / f"{image_id}.jpg")
            rows.append(f"{image_id} {AIRCRAFT_VARIANTS[v]}")
            boxes.append(f"{image_id} {' '.join(map(str, AIRCRAFT_BOX))}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
        # their order: class by class (sorted variants), ids sorted within a class
        expected[split] = sorted(((r.split(" ", 1)[0], order.index(r.split(" ", 1)[1])) for r in rows), key=lambda t: (t[1], t[0]))
    (data / "images_box.txt").write_text("\n".join(boxes) + "\n")
    (data / "images_variant_train.txt").write_text("")  # train / val alone are not read
    return expected


def gtsrb_training(root):
    return root / "gtsrb" / "GTSRB" / "Training"


def write_gtsrb(root):
    """``gtsrb/GTSRB/Training/000NN/*.ppm`` (43 class folders, 1 to 5 images each, with its
    ``GT-000NN.csv``); image i of class c is solid (c * 5, i * 40, 200). Returns the groups
    [[(c, i), ...] per class]."""
    groups = []
    for c in range(43):
        folder = gtsrb_training(root) / f"{c:05d}"
        n = 1 + (c * 7) % 5
        for i in range(n):
            solid(folder / f"{i:05d}_{c:05d}.ppm", (c * 5, i * 40, 200), (15 + i, 17))
        (folder / f"GT-{c:05d}.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n")
        groups.append([(c, i) for i in range(n)])
    return groups


OMNIGLOT_LAYOUT = {  # part -> alphabet -> characters; 5 characters, labels in this (sorted) order
    "images_background": {"Alphabet_A": ["character01", "character02"], "Greek": ["character01"]},
    "images_evaluation": {"Atlantean": ["character01", "character02"]},
}


def write_omniglot(root, drawings=5):
    """``omniglot-py/images_{background,evaluation}/<alphabet>/<character>/<id>_<drawer>.png``,
    grey ("L") strokes, every drawing its own solid grey 8 * (k + 1). Returns the groups
    [[(label, grey), ...] per character]."""
    groups, k = [], 0
    for part, alphabets in OMNIGLOT_LAYOUT.items():
        for alphabet, characters in alphabets.items():
            for character in characters:
                folder = root / "omniglot-py" / part / alphabet / character
                folder.mkdir(parents=True)
                label = len(groups)
                groups.append([])
                for d in range(drawings):
                    k += 1
                    Image.new("L", (105, 105), 8 * k).save(folder / f"{label + 1:04d}_{d + 1:02d}.png")
                    groups[-1].append((label, 8 * k))
    return groups


def test_specs_are_transfer_targets_at_84_px():
    per_class_20 = int(0.8 * 20)  # Omniglot: 20 drawings of each character
    expected = {"dtd": (47, 2 * 1_880, 1_880), "aircraft": (100, 6_667, 3_333), "omniglot": (1_623, 1_623 * per_class_20, 1_623 * (20 - per_class_20))}
    for name in NAMES:
        spec = DATASETS[name]
        assert (spec.image_size, spec.transfer_target, spec.builtin, spec.folder, spec.mean, spec.std) == (84, None, False, False, MEAN, STD)
        if name in expected:
            classes, train, test = expected[name]
            assert spec.num_classes == classes and spec.split_sizes == {"pretrain": train, "train": train, "test": test}
    assert DATASETS["gtsrb"].num_classes == 43 and DATASETS["gtsrb"].split_sizes == {}  # int(0.8 n) per class: counted at load


def test_class_split_is_their_seeded_80_20_rule():
    groups = [list(range(n)) for n in (5, 1, 7, 10, 2)]
    for split in ("train", "test"):
        assert meta_domains.split_by_class(groups, split) == their_split(groups, split)
    picks = {s: meta_domains.class_split([10, 10], s) for s in ("train", "test")}
    assert [len(p) for p in picks["train"]] == [8, 8] and [len(p) for p in picks["test"]] == [2, 2]
    assert sorted(np.concatenate([picks["train"][0], picks["test"][0]]).tolist()) == list(range(10))
    assert picks["train"][1].tolist() != picks["train"][0].tolist()  # one generator drawn from class after class


def test_images_keep_their_aspect_ratio_and_the_centre():
    """Short side to 84, centre 84 x 84 (their Resize + CenterCrop), not squashed: the side strips
    of a 2:1 image are cut away."""
    wide = Image.new("RGB", (120, 60), (255, 0, 0))
    wide.paste((0, 200, 0), (30, 0, 90, 60))
    out = meta_domains.to_side(wide)
    assert out.shape == (84, 84, 3) and np.array_equal(out, their_resize(wide))
    assert (np.abs(out[:, 1:83].astype(int) - (0, 200, 0)).max()) <= 1  # the green centre fills the crop
    tall = Image.new("L", (20, 50), 90)
    assert np.array_equal(meta_domains.to_side(tall), their_resize(tall)) and (meta_domains.to_side(tall) == 90).all()


def test_dtd_partition_1_train_plus_val_with_sorted_class_labels(tmp_path):
    names = write_dtd(tmp_path)
    train, test = DATASETS["dtd"].load("train", tmp_path, False), DATASETS["dtd"].load("test", tmp_path, False)
    assert (len(train), len(test)) == (47 + 47, 94)  # train1 + val1 / test1
    assert train.labels.tolist() == [sorted(names).index(n) for n in names] * 2  # train1's lines, then val1's
    assert_colours(train, 3)  # JPEG
    assert_colours(test, 3)
    assert torch.equal(DATASETS["dtd"].load("pretrain", tmp_path, False).labels, train.labels)


def test_aircraft_sorted_variants_cropped_to_their_boxes(tmp_path, monkeypatch):
    monkeypatch.setattr(meta_domains, "AIRCRAFT_CLASSES", len(AIRCRAFT_VARIANTS))
    expected = write_aircraft(tmp_path)
    data_dir = tmp_path / "fgvc-aircraft-2013b" / "data"
    for split, key in (("pretrain", "trainval"), ("train", "trainval"), ("test", "test")):
        data = DATASETS["aircraft"].load(split, tmp_path, False)
        assert data.labels.tolist() == [y for _, y in expected[key]]
        for image, (image_id, _) in zip(data.images, expected[key]):  # the box as PIL crops it, then their resize
            with Image.open(data_dir / "images" / f"{image_id}.jpg") as img:
                out = image.permute(1, 2, 0).numpy()
                assert np.array_equal(out, their_resize(img.convert("RGB").crop(AIRCRAFT_BOX)))
                assert np.abs(out.astype(int) - their_resize(img)).mean() > 5  # the uncropped photo (banner) differs
        assert_colours(data, 3)
    (data_dir / "images_box.txt").write_text("1000800 1 2 3 4\n")
    with pytest.raises(DatasetMissingError, match="aircraft: image 100.* has no line in .*images_box.txt") as err:
        DATASETS["aircraft"].load("test", tmp_path, False)
    assert "\n" not in str(err.value)


def test_gtsrb_training_images_split_80_20_per_class(tmp_path):
    groups = write_gtsrb(tmp_path)
    for split in ("train", "test"):
        data = DATASETS["gtsrb"].load(split, tmp_path, False)  # PPM is lossless: the colours name the files
        got = [(int(r) // 5, int(g) // 40) for r, g in zip(data.images[:, 0, 42, 42].tolist(), data.images[:, 1, 42, 42].tolist())]
        assert got == their_split(groups, split) and data.labels.tolist() == [c for c, _ in got]
    assert len(DATASETS["gtsrb"].load("train", tmp_path, False)) == sum(int(0.8 * len(g)) for g in groups)


def test_omniglot_their_split_of_both_sets(tmp_path, monkeypatch):
    groups = write_omniglot(tmp_path, drawings=5)
    monkeypatch.setattr(meta_domains, "OMNIGLOT_CLASSES", len(groups))
    for split, per_character in (("train", 4), ("test", 1)):
        data = DATASETS["omniglot"].load(split, tmp_path, False)
        assert len(data) == 5 * per_character
        for_images = list(zip(data.labels.tolist(), data.images[:, 0, 42, 42].tolist()))
        assert for_images == their_split(groups, split)
        assert torch.equal(data.images[:, 0], data.images[:, 1]) and torch.equal(data.images[:, 0], data.images[:, 2])  # grey: 3 equal channels


def test_omniglot_needs_both_sets_and_every_character(tmp_path):
    write_omniglot(tmp_path, drawings=2)
    with pytest.raises(DatasetMissingError, match="holds 5 character folders .* not 1623") as err:
        DATASETS["omniglot"].load("train", tmp_path, False)
    assert "\n" not in str(err.value)
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
    (tmp_path / "dtd" / "dtd" / "labels" / "val1.txt").unlink()
    with pytest.raises(DatasetMissingError, match="dtd not found: .*val1.txt is missing"):
        DATASETS["dtd"].load("train", tmp_path, False)
    assert len(DATASETS["dtd"].load("test", tmp_path, False)) == 94  # test1 alone does not need val1
    (tmp_path / "dtd" / "dtd" / "images" / "atexture25" / "atexture25_test1.jpg").unlink()
    with pytest.raises(DatasetMissingError, match="dtd: .*atexture25_test1.jpg is missing") as err:
        DATASETS["dtd"].load("test", tmp_path, False)
    assert "\n" not in str(err.value)
    write_gtsrb(tmp_path)
    shutil.rmtree(gtsrb_training(tmp_path) / "00017")
    with pytest.raises(DatasetMissingError, match="gtsrb: .*00017 holds no .ppm image"):
        DATASETS["gtsrb"].load("test", tmp_path, False)
    (gtsrb_training(tmp_path) / "00017").mkdir()
    (gtsrb_training(tmp_path) / "00017" / "00000_00017.ppm").write_bytes(b"P6 broken")
    with pytest.raises(DatasetMissingError, match="00000_00017.ppm cannot be read as an image"):
        DATASETS["gtsrb"].load("test", tmp_path, False)
    write_aircraft(tmp_path)
    with pytest.raises(DatasetMissingError, match="aircraft: .*images_variant_test.txt lists 4 variants, not 100"):
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
    written = []
    monkeypatch.setattr("torchvision.datasets.gtsrb.download_and_extract_archive", lambda *a, **k: written.append(write_gtsrb(tmp_path)))
    data = DATASETS["gtsrb"].load("test", tmp_path, True)
    assert len(written) == 1 and len(data) == len(their_split(written[0], "test"))


def test_list_datasets_shows_the_domains(tmp_path, monkeypatch):
    listed = invoke(monkeypatch, "list", "datasets", runs=tmp_path / "runs").stdout
    counted = " / ".join(["counted at load"] * 3)
    for name, sizes in {"dtd": "3,760 / 3,760 / 1,880", "aircraft": "6,667 / 6,667 / 3,333", "gtsrb": counted, "omniglot": "25,968 / 25,968 / 6,492"}.items():
        cells = next([c.strip() for c in row.split("│")] for row in listed.splitlines() if row.split("│")[1:2] and row.split("│")[1].strip() == name)
        assert cells[2:5] == [str(DATASETS[name].num_classes), "84", sizes]
