"""The Meta-Dataset domains read from their released files (CUB, Fungi, QuickDraw, VGG Flowers,
MSCOCO crops) on tiny files written in exactly that layout, checked against the rules of the Ring
authors' group's loaders written out in meta_reference.py: labels, splits, MSCOCO's crop boxes
(hand-computed), and a missing or partial folder as one line."""

import json

import numpy as np
import pytest
import torch
from meta_reference import assert_colours, colour, their_resize, their_split
from meta_reference import solid as solid_rgb
from PIL import Image

from hardneg_bench.data import meta_domains_released as released
from hardneg_bench.data.base import DatasetMissingError
from hardneg_bench.data.imagenet import MEAN, STD
from hardneg_bench.data.registry import DATASETS

NAMES = ["cub", "fungi", "quickdraw", "flowers102", "mscoco"]


def solid(path, label, size=(30, 20)):
    solid_rgb(path, colour(label), size)


def test_specs_are_transfer_targets_at_84_px():
    per_class = released.QUICKDRAW_PER_CLASS  # 500 drawings of each class, int(0.8 * 500) train
    expected = {"cub": (200, 5_994, 5_794), "fungi": (1_394, 85_578, 4_182), "quickdraw": (345, 345 * int(0.8 * per_class), 345 * (per_class - int(0.8 * per_class)))}
    for name in NAMES:
        spec = DATASETS[name]
        assert (spec.image_size, spec.transfer_target, spec.builtin, spec.folder, spec.mean, spec.std) == (84, None, False, False, MEAN, STD)
        if name in expected:
            classes, train, test = expected[name]
            assert spec.num_classes == classes and spec.split_sizes == {"pretrain": train, "train": train, "test": test}
    for name, classes in (("flowers102", 102), ("mscoco", 80)):  # counted at load
        assert DATASETS[name].num_classes == classes and DATASETS[name].split_sizes == {}
    assert per_class == 500


def write_cub(root):
    """``CUB_200_2011/images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``,
    ``classes.txt`` and ``images/<NNN.Name>/<file>.jpg``: 200 classes, ids not in class order."""
    folder = root / "CUB_200_2011"
    classes = [f"{c + 1:03d}.Bird_{c}" for c in range(200)]
    (folder / "images").mkdir(parents=True)
    (folder / "classes.txt").write_text("".join(f"{c + 1} {name}\n" for c, name in enumerate(classes)))
    rows = {"images": [], "labels": [], "split": []}
    train, test = [], []
    image_id = 0
    for c in [199, 0, *range(1, 199)]:
        for is_train in ((1, 0) if c % 50 else (1, 0, 0)):
            image_id += 1
            path = f"{classes[c]}/{classes[c]}_{image_id:04d}.jpg"
            solid(folder / "images" / path, c)
            rows["images"].append(f"{image_id} {path}")
            rows["labels"].append(f"{image_id} {c + 1}")
            rows["split"].append(f"{image_id} {is_train}")
            (train if is_train else test).append(c)
    for key, name in (("images", "images.txt"), ("labels", "image_class_labels.txt"), ("split", "train_test_split.txt")):
        (folder / name).write_text("\n".join(rows[key]) + "\n")
    return train, test


def test_cub_official_split(tmp_path):
    train_labels, test_labels = write_cub(tmp_path)
    train, test = DATASETS["cub"].load("train", tmp_path, False), DATASETS["cub"].load("test", tmp_path, False)
    assert train.labels.tolist() == train_labels and test.labels.tolist() == test_labels  # in image-id order
    assert (len(train), len(test), train.labels[0].item()) == (200, 204, 199)
    assert_colours(train, 3)
    assert_colours(test, 3)
    assert torch.equal(DATASETS["cub"].load("pretrain", tmp_path, False).labels, train.labels)


def write_fungi(root, n_categories=6):
    """``fungi/{train,val}.json`` (COCO-like) and ``fungi/images/<species>/<file>.JPG``; category
    ids not contiguous and listed unsorted."""
    folder = root / "fungi"
    ids = [100 + 7 * c for c in range(n_categories)][::-1]
    categories = [{"id": i, "name": f"Species {i}", "supercategory": "Fungi"} for i in ids]
    expected = {}
    image_id = 5000
    for split, per in (("train", 2), ("val", 1)):
        images, annotations, labels = [], [], []
        for cid in ids:
            label = sorted(ids).index(cid)
            for k in range(per):
                image_id -= 1  # ids descending: the loader orders by image id
                name = f"images/{cid}_Species/FUNGI_{image_id}.JPG"
                solid(folder / name, label, (32, 24))
                images.append({"id": image_id, "file_name": name, "width": 32, "height": 24})
                annotations.append({"id": image_id, "image_id": image_id, "category_id": cid})
                labels.append((image_id, label))
        (folder / f"{split}.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        expected[split] = [y for _, y in sorted(labels)]
    return expected


def test_fungi_train_json_and_val_json(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "FUNGI_CLASSES", 6)
    expected = write_fungi(tmp_path)
    train, test = DATASETS["fungi"].load("train", tmp_path, False), DATASETS["fungi"].load("test", tmp_path, False)
    assert train.labels.tolist() == expected["train"] and test.labels.tolist() == expected["val"]
    assert (len(train), len(test)) == (12, 6) and sorted(test.labels.tolist()) == list(range(6))
    assert_colours(train, 3)
    assert_colours(test, 3)
    (tmp_path / "fungi" / "val.json").write_text("{not json")
    with pytest.raises(DatasetMissingError, match="fungi: .*val.json is not COCO-like JSON") as err:
        DATASETS["fungi"].load("test", tmp_path, False)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(released, "FUNGI_CLASSES", 1_394)
    with pytest.raises(DatasetMissingError, match="lists 6 categories, not 1394"):
        DATASETS["fungi"].load("train", tmp_path, False)


def write_quickdraw(root, counts):
    """``quickdraw/<class name>.npy``: (n, 784) uint8; row r of class c is all grey
    5 + 80 * c + 5 * r, so that rows can be told apart. Returns the groups [[(c, grey), ...]]."""
    folder = root / "quickdraw"
    folder.mkdir()
    names = sorted(f"{'zyxwv'[c % 5]} class {c}" for c in range(len(counts)))
    for c, (name, n) in enumerate(zip(names, counts)):
        np.save(folder / f"{name}.npy", (5 + 80 * c + 5 * np.arange(n, dtype=np.uint8))[:, None].repeat(784, axis=1))
    return [[(c, 5 + 80 * c + 5 * r) for r in range(n)] for c, n in enumerate(counts)]


def test_quickdraw_capped_their_split(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "QUICKDRAW_CLASSES", 3)
    monkeypatch.setattr(released, "QUICKDRAW_PER_CLASS", 8)
    groups = write_quickdraw(tmp_path, [8, 12, 4])  # class 1 has more than the cap: only its first 8 rows are read
    capped = [g[:8] for g in groups]
    for split in ("train", "test"):
        data = DATASETS["quickdraw"].load(split, tmp_path, False)
        assert data.images.shape[1:] == (3, 84, 84)
        assert torch.equal(data.images[:, 0], data.images[:, 1]) and torch.equal(data.images[:, 0], data.images[:, 2])  # grey: 3 equal channels
        assert list(zip(data.labels.tolist(), data.images[:, 0, 42, 42].tolist())) == their_split(capped, split)
    assert len(DATASETS["quickdraw"].load("train", tmp_path, False)) == 6 + 6 + 3  # int(0.8 n) of 8, 8 and 4


def test_quickdraw_needs_every_class_and_uint8_bitmaps(tmp_path, monkeypatch):
    write_quickdraw(tmp_path, [3, 3])
    second = sorted((tmp_path / "quickdraw").glob("*.npy"))[1]
    with pytest.raises(DatasetMissingError, match="quickdraw: .*holds 2 .npy files, not 345") as err:
        DATASETS["quickdraw"].load("train", tmp_path, False)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(released, "QUICKDRAW_CLASSES", 2)
    np.save(second, np.zeros((3, 28, 28), dtype=np.float32))
    with pytest.raises(DatasetMissingError, match=r"holds a float32 \(3, 28, 28\) array, not \(n, 784\) uint8"):
        DATASETS["quickdraw"].load("train", tmp_path, False)


FLOWER_LABELS = [5, 3, 5, 7, 3, 5, 5, 7, 3, 5, 1, 5]  # 1-based; classes first appear as 5, 3, 7, 1


def write_flowers(root, scipy_io):
    """``flowers-102/jpg/image_XXXXX.jpg`` (image n solid (20 n, class colour G, B)) and
    ``imagelabels.mat``; no ``setid.mat``: the split is drawn, as in their code. Returns the
    groups [[(n, label), ...] per class in first-appearance order]."""
    folder = root / "flowers-102"
    groups: dict[int, list] = {}
    for n, y in enumerate(FLOWER_LABELS, 1):
        solid_rgb(folder / "jpg" / f"image_{n:05d}.jpg", (20 * n, *colour(y - 1)[1:]), (50, 40))
        groups.setdefault(y, []).append((n, y - 1))
    scipy_io.savemat(str(folder / "imagelabels.mat"), {"labels": np.array([FLOWER_LABELS], dtype=np.uint8)})
    return list(groups.values())


def test_flowers102_their_split_of_every_image(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    groups = write_flowers(tmp_path, scipy_io)
    for split in ("train", "test"):
        data = DATASETS["flowers102"].load(split, tmp_path, False)
        numbers = [round(r / 20) for r in data.images[:, 0, 42, 42].tolist()]  # JPEG: within a few levels
        assert list(zip(numbers, data.labels.tolist())) == their_split(groups, split)
        assert data.images.shape[1:] == (3, 84, 84)
    assert len(DATASETS["flowers102"].load("train", tmp_path, False)) == int(0.8 * 6) + int(0.8 * 3) + int(0.8 * 2) + int(0.8 * 1)


def test_flowers102_without_scipy_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "flowers-102"
    (folder / "jpg").mkdir(parents=True)
    (folder / "imagelabels.mat").write_bytes(b"")
    monkeypatch.setitem(__import__("sys").modules, "scipy.io", None)  # import fails as if scipy were absent
    with pytest.raises(DatasetMissingError, match="flowers102: .*needs scipy.*pip install scipy") as err:
        DATASETS["flowers102"].load("train", tmp_path, False)
    assert "\n" not in str(err.value)


def test_coco_crop_box_hand_computed():
    """Their mscoco.py:109-128 on three boxes, worked by hand: grow 1.2x about the centre, then
    xmin = round(x - 0.5), xmax = round(x + w - 0.5) + 1 (halves to even), clipped."""
    # x = 10.2 - 3 = 7.2, w = 36: (round(6.7), round(42.7) + 1); y = 20.7 - 1 = 19.7, h = 12: (round(19.2), round(31.2) + 1)
    assert released.coco_crop_box([10.2, 20.7, 30, 10], 200, 100) == (7, 19, 44, 32)
    # x = y = -1, w = h = 12: round(-1.5) = -2 -> 0; round(10.5) = 10 (to even), + 1 = 11
    assert released.coco_crop_box([0, 0, 10, 10], 100, 90) == (0, 0, 11, 11)
    # x = 89, y = 79: round(88.5) = 88, round(78.5) = 78; round(100.5) + 1 = 101 -> 100, round(90.5) + 1 = 91 -> 90
    assert released.coco_crop_box([90, 80, 10, 10], 100, 90) == (88, 78, 100, 90)


COCO_LAYOUT = {  # part -> image id -> [(category id, bbox, iscrowd)], in annotation-file order
    "train2017": {7: [(90, (10.5, 10, 40, 30), 0), (1, (60, 50, 30, 40), 0), (18, (0, 60, 8, 8), 0)], 3: [(18, (20, 20, 60, 60), 0), (90, (0, 0, 100, 90), 1), (90, (3, 4, 5, 6), 0)]},
    "val2017": {11: [(1, (5, 5, 50, 50), 0), (90, (60, 10, 30, 30), 0)]},
}


def write_mscoco(root, category_ids=(90, 1, 18)):
    """``coco/annotations/instances_{train,val}2017.json`` and ``coco/{train,val}2017/*.jpg``:
    a colour gradient per image (so that every crop box shows different pixels); the categories
    listed unsorted; a crowd box and boxes of 8 and 5 px among them. Returns {part: [(file, box, label)]},
    the crops in annotation-file order with their hand-computed boxes' inputs."""
    folder = root / "coco"
    (folder / "annotations").mkdir(parents=True)
    categories = [{"id": c, "name": f"thing {c}", "supercategory": "x"} for c in category_ids]
    expected = {}
    for part, layout in COCO_LAYOUT.items():
        (folder / part).mkdir()
        images, annotations, crops = [], [], []
        ann_id = 1000
        for image_id, boxes in layout.items():
            name = f"{image_id:012d}.jpg"
            yy, xx = np.mgrid[0:90, 0:100]
            Image.fromarray(np.stack([xx * 2, yy * 2, (xx + yy + image_id * 10) % 256], -1).astype(np.uint8)).save(folder / part / name)
            images.append({"id": image_id, "file_name": name, "width": 100, "height": 90})
            for cid, bbox, crowd in boxes:
                ann_id -= 1
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": cid, "bbox": list(bbox), "area": bbox[2] * bbox[3], "iscrowd": crowd})
                crops.append((folder / part / name, bbox, list(category_ids).index(cid)))
        (folder / "annotations" / f"instances_{part}.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        expected[part] = crops
    return expected


def test_mscoco_every_box_cropped_their_way(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "MSCOCO_CLASSES", 3)
    expected = write_mscoco(tmp_path)
    for split, part in (("train", "train2017"), ("test", "val2017")):
        data = DATASETS["mscoco"].load(split, tmp_path, False)
        # every annotation in file order, crowd and tiny boxes too; labels = positions in the categories list
        assert data.labels.tolist() == [label for *_, label in expected[part]]
        for image, (path, (x, y, w, h), _) in zip(data.images, expected[part]):
            with Image.open(path) as img:
                s = 1.2  # their BOX_SCALE_RATIO; box as mscoco.py:109-128 computes it, written out
                bx, by, bw, bh = x - 0.5 * w * (s - 1.0), y - 0.5 * h * (s - 1.0), w * s, h * s
                box = (max(int(round(bx - 0.5)), 0), max(int(round(by - 0.5)), 0), min(int(round(bx + bw - 0.5)) + 1, 100), min(int(round(by + bh - 0.5)) + 1, 90))
                assert np.array_equal(image.permute(1, 2, 0).numpy(), their_resize(img.convert("RGB").crop(box)))
    assert DATASETS["mscoco"].load("train", tmp_path, False).labels.tolist() == [0, 1, 2, 2, 0, 0]


def test_mscoco_cap_keeps_the_first_boxes_of_a_class(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "MSCOCO_CLASSES", 3)
    write_mscoco(tmp_path)
    every = DATASETS["mscoco"].load("train", tmp_path, False)  # labels 0, 1, 2, 2, 0, 0
    monkeypatch.setattr(released, "MSCOCO_PER_CLASS", 2)
    capped = DATASETS["mscoco"].load("train", tmp_path, False)
    assert capped.labels.tolist() == [0, 1, 2, 2, 0]  # the third box of category 90 (label 0) is dropped
    assert torch.equal(capped.images, every.images[:5])


def test_mscoco_bad_boxes_and_files_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "MSCOCO_CLASSES", 3)
    write_mscoco(tmp_path)
    (tmp_path / "coco" / "val2017" / "000000000011.jpg").unlink()
    with pytest.raises(DatasetMissingError, match="mscoco: .*000000000011.jpg is missing") as err:
        DATASETS["mscoco"].load("test", tmp_path, False)
    assert "\n" not in str(err.value)
    annotations = tmp_path / "coco" / "annotations" / "instances_train2017.json"
    data = json.loads(annotations.read_text())
    data["annotations"][0]["bbox"] = [150, 10, 5, 5]  # right of the 100-px image: an empty crop
    annotations.write_text(json.dumps(data))
    with pytest.raises(DatasetMissingError, match="mscoco: a box of image 7 .* lies outside the image"):
        DATASETS["mscoco"].load("train", tmp_path, False)
    annotations.write_text(json.dumps({**data, "annotations": []}))
    with pytest.raises(DatasetMissingError, match="mscoco: .*has no box"):
        DATASETS["mscoco"].load("train", tmp_path, False)
    with pytest.raises(DatasetMissingError, match="lists 3 categories, not 80"):
        monkeypatch.setattr(released, "MSCOCO_CLASSES", 80)
        DATASETS["mscoco"].load("train", tmp_path, False)


@pytest.mark.parametrize("name", NAMES)
def test_missing_domain_is_one_line_naming_the_folder(tmp_path, name):
    with pytest.raises(DatasetMissingError) as err:
        DATASETS[name].load("test", tmp_path / "data", True if name != "flowers102" else False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name} not found: {tmp_path / 'data'}")
    assert "--data-root" in message and "https://" in message
    if name != "flowers102":
        assert "cannot be downloaded automatically" in message


def test_partial_folders_name_the_missing_file(tmp_path):
    write_cub(tmp_path)
    (tmp_path / "CUB_200_2011" / "train_test_split.txt").unlink()
    with pytest.raises(DatasetMissingError, match="cub not found: .*train_test_split.txt is missing") as err:
        DATASETS["cub"].load("train", tmp_path, False)
    assert "\n" not in str(err.value) and "Caltech" in str(err.value)
    write_cub(tmp_path / "again")
    next((tmp_path / "again" / "CUB_200_2011" / "images").glob("200.*/*.jpg")).unlink()
    with pytest.raises(DatasetMissingError, match="cub: .*Bird_199_0001.jpg is missing"):
        DATASETS["cub"].load("train", tmp_path / "again", False)
    write_fungi(tmp_path)
    (tmp_path / "fungi" / "val.json").unlink()
    with pytest.raises(DatasetMissingError, match="fungi not found: .*val.json is missing"):
        DATASETS["fungi"].load("test", tmp_path, False)
