"""The Meta-Dataset domains read from their released files (CUB, Fungi, QuickDraw, VGG Flowers,
MSCOCO crops) on tiny files written in exactly that layout: labels, one known colour per class,
split sizes, and a missing or partial folder as one line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hardneg_bench.data import meta_domains_released as released
from hardneg_bench.data.base import DatasetMissingError
from hardneg_bench.data.imagenet import MEAN, STD
from hardneg_bench.data.registry import DATASETS

NAMES = ["cub", "fungi", "quickdraw", "flowers102", "mscoco"]


def colour(label: int) -> tuple[int, int, int]:
    return (label * 37) % 256, (label * 91 + 40) % 256, (label * 53 + 90) % 256


def solid(path, label, size=(30, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(label)).save(path)


def assert_colours(data, tolerance):
    assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 84, 84)
    assert data.labels.dtype == torch.int64 and len(data.labels) == len(data.images)
    for image, label in zip(data.images, data.labels.tolist()):
        assert np.abs(image[:, 42, 42].numpy().astype(int) - colour(label)).max() <= tolerance, label


def test_specs_are_transfer_targets_at_84_px():
    expected = {"cub": (200, 5_994, 5_794), "fungi": (1_394, 85_578, 4_182), "quickdraw": (345, 129_375, 43_125), "flowers102": (102, 2_040, 6_149)}
    for name in NAMES:
        spec = DATASETS[name]
        assert (spec.image_size, spec.transfer_target, spec.builtin, spec.folder, spec.mean, spec.std) == (84, None, False, False, MEAN, STD)
        if name in expected:
            classes, train, test = expected[name]
            assert spec.num_classes == classes and spec.split_sizes == {"pretrain": train, "train": train, "test": test}
    assert DATASETS["mscoco"].num_classes == 80 and DATASETS["mscoco"].split_sizes == {}  # counted at load
    per_class = released.QUICKDRAW_PER_CLASS
    assert 345 * round(per_class * (1 - released.QUICKDRAW_TEST_FRACTION)) == 129_375


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
    """``quickdraw/<class name>.npy``: (n, 784) uint8, class c's drawings all grey 20 * (c + 1)
    except a 28-px row index stamp, so that rows can be told apart."""
    folder = root / "quickdraw"
    folder.mkdir()
    names = sorted(f"{'zyxwv'[c % 5]} class {c}" for c in range(len(counts)))
    for c, (name, n) in enumerate(zip(names, counts)):
        array = np.full((n, 28, 28), 20 * (c + 1), dtype=np.uint8)
        array[:, 0, 0] = np.arange(n)  # the row number, in the corner
        np.save(folder / f"{name}.npy", array.reshape(n, 784))
    return names


def test_quickdraw_capped_seeded_stratified_split(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "QUICKDRAW_CLASSES", 3)
    monkeypatch.setattr(released, "QUICKDRAW_PER_CLASS", 8)
    write_quickdraw(tmp_path, [8, 12, 4])  # class 1 has more than the cap: only its first 8 rows are read
    train, test = DATASETS["quickdraw"].load("train", tmp_path, False), DATASETS["quickdraw"].load("test", tmp_path, False)
    assert train.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 3 and test.labels.tolist() == [0, 0, 1, 1, 2]
    for data in (train, test):  # grey becomes three equal channels, resized to 84
        assert data.images.shape[1:] == (3, 84, 84)
        assert torch.equal(data.images[:, 0], data.images[:, 1]) and torch.equal(data.images[:, 0], data.images[:, 2])
        assert data.images[:, 0, 42, 42].tolist() == [20 * (y + 1) for y in data.labels.tolist()]
    again = DATASETS["quickdraw"].load("test", tmp_path, False)
    assert torch.equal(again.images, test.images)  # fixed by the seed
    for c, n in enumerate([8, 8, 4]):
        tr, te = set(released.quickdraw_split(n, c, "train").tolist()), set(released.quickdraw_split(n, c, "test").tolist())
        assert tr.isdisjoint(te) and tr | te == set(range(n)) and len(te) == round(0.25 * n)
    assert max(released.quickdraw_split(8, 1, "train").tolist() + released.quickdraw_split(8, 1, "test").tolist()) == 7  # rows 8..11 unread


def test_quickdraw_needs_every_class_and_uint8_bitmaps(tmp_path, monkeypatch):
    names = write_quickdraw(tmp_path, [3, 3])
    with pytest.raises(DatasetMissingError, match="quickdraw: .*holds 2 .npy files, not 345") as err:
        DATASETS["quickdraw"].load("train", tmp_path, False)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(released, "QUICKDRAW_CLASSES", 2)
    np.save(tmp_path / "quickdraw" / f"{names[1]}.npy", np.zeros((3, 28, 28), dtype=np.float32))
    with pytest.raises(DatasetMissingError, match=r"holds a float32 \(3, 28, 28\) array, not \(n, 784\) uint8"):
        DATASETS["quickdraw"].load("train", tmp_path, False)


def write_flowers(root, loadmat_module):
    """``flowers-102/jpg/image_XXXXX.jpg``, ``imagelabels.mat`` and ``setid.mat`` (1-based)."""
    folder = root / "flowers-102"
    labels = [(i * 5) % 102 + 1 for i in range(12)]
    for i, y in enumerate(labels, 1):
        solid(folder / "jpg" / f"image_{i:05d}.jpg", y - 1, (50, 40))
    loadmat_module.savemat(str(folder / "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    loadmat_module.savemat(str(folder / "setid.mat"), {"trnid": np.array([[3, 1, 7]]), "valid": np.array([[2, 10]]), "tstid": np.array([[12, 4, 5, 6]])})
    return labels


def test_flowers102_from_the_mat_files(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    labels = write_flowers(tmp_path, scipy_io)
    train, test = DATASETS["flowers102"].load("train", tmp_path, False), DATASETS["flowers102"].load("test", tmp_path, False)
    assert train.labels.tolist() == [labels[i - 1] - 1 for i in (1, 2, 3, 7, 10)]
    assert test.labels.tolist() == [labels[i - 1] - 1 for i in (4, 5, 6, 12)]
    assert_colours(train, 3)
    assert_colours(test, 3)


def test_flowers102_without_scipy_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "flowers-102"
    (folder / "jpg").mkdir(parents=True)
    (folder / "imagelabels.mat").write_bytes(b"")
    (folder / "setid.mat").write_bytes(b"")
    monkeypatch.setitem(__import__("sys").modules, "scipy.io", None)  # import fails as if scipy were absent
    with pytest.raises(DatasetMissingError, match="flowers102: .*needs scipy.*pip install scipy") as err:
        DATASETS["flowers102"].load("train", tmp_path, False)
    assert "\n" not in str(err.value)


BACKGROUND = (255, 255, 255)


def write_mscoco(root, category_ids=(90, 1, 18)):
    """``mscoco/annotations/instances_{train,val}2017.json`` and ``mscoco/{train,val}2017/*.jpg``:
    white images with one solid box per annotation in its class colour; a crowd box and a box
    smaller than the minimum side are written too and must be skipped."""
    folder = root / "mscoco"
    (folder / "annotations").mkdir(parents=True)
    categories = [{"id": c, "name": f"thing {c}", "supercategory": "x"} for c in category_ids]
    index = {c: i for i, c in enumerate(sorted(category_ids))}
    expected = {}
    for part, layout in (("train2017", {7: [(90, (10, 10, 40, 30)), (1, (60, 50, 30, 40)), (18, (0, 60, 8, 8))], 3: [(18, (20, 20, 60, 60))]}),
                         ("val2017", {11: [(1, (5, 5, 50, 50)), (90, (60, 10, 30, 30))]})):
        images, annotations, crops = [], [], []
        ann_id = 1000
        for image_id, boxes in layout.items():
            img = Image.new("RGB", (100, 90), BACKGROUND)
            for cid, (x, y, w, h) in boxes:
                img.paste(colour(index[cid]), (x, y, x + w, y + h))
                ann_id -= 1
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": cid, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
                if min(w, h) >= 16:
                    crops.append((image_id, ann_id, index[cid]))
            annotations.append({"id": 1, "image_id": image_id, "category_id": cid, "bbox": [0, 0, 100, 90], "area": 9000, "iscrowd": 1})
            name = f"{image_id:012d}.jpg"
            img.save(folder / part / name if (folder / part).exists() else ((folder / part).mkdir() or folder / part / name))
            images.append({"id": image_id, "file_name": name, "width": 100, "height": 90})
        (folder / "annotations" / f"instances_{part}.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        expected[part] = [y for *_, y in sorted(crops)]  # by image id, then annotation id
    return expected


def test_mscoco_object_crops(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "MSCOCO_CLASSES", 3)
    expected = write_mscoco(tmp_path)
    train, test = DATASETS["mscoco"].load("train", tmp_path, False), DATASETS["mscoco"].load("test", tmp_path, False)
    assert train.labels.tolist() == expected["train2017"] == [1, 0, 2]  # by image id, then annotation id; the 8-px box and the crowd box are skipped
    assert test.labels.tolist() == expected["val2017"] == [2, 0]
    assert_colours(train, 3)
    assert_colours(test, 3)
    for data in (train, test):  # the box grown by 1.2 shows the white background at its border
        assert (data.images[:, :, 1, 1].int() > 230).all() and (data.images[:, :, 82, 82].int() > 230).all()
    monkeypatch.setattr(released, "MSCOCO_PER_CLASS", 0)
    with pytest.raises(DatasetMissingError, match="mscoco: .*has no box"):
        DATASETS["mscoco"].load("test", tmp_path, False)


def test_mscoco_missing_image_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "MSCOCO_CLASSES", 3)
    write_mscoco(tmp_path)
    (tmp_path / "mscoco" / "val2017" / "000000000011.jpg").unlink()
    with pytest.raises(DatasetMissingError, match="mscoco: .*000000000011.jpg is missing") as err:
        DATASETS["mscoco"].load("test", tmp_path, False)
    assert "\n" not in str(err.value)
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
