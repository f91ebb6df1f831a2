"""The real loaders on tiny files written in each dataset's real on-disk format."""

import time
import urllib.error

import numpy as np
import pytest
import torch
from fake_datasets import (
    imagenet_colour,
    write_fake_cifar10,
    write_fake_cifar100,
    write_fake_imagenet,
    write_fake_imagenet100,
    write_fake_stl10,
)

from hardneg_bench.data.base import DatasetMissingError
from hardneg_bench.data import imagenet
from hardneg_bench.data.cifar import CIFAR10, CIFAR100
from hardneg_bench.data.imagenet import IMAGENET
from hardneg_bench.data.imagenet100 import IMAGENET100, class_list
from hardneg_bench.data.registry import DATASETS
from hardneg_bench.data.stl10 import STL10

WRITE_AS_IF_DOWNLOADED = {  # each writes a test split of 2 images
    "cifar10": lambda root: write_fake_cifar10(root, 5, 2),
    "cifar100": lambda root: write_fake_cifar100(root, 5, 2),
    "stl10": lambda root: write_fake_stl10(root, 3, 2, 4),
}


@pytest.mark.parametrize("spec,write", [(CIFAR10, write_fake_cifar10), (CIFAR100, write_fake_cifar100)])
def test_cifar_round_trip(tmp_path, spec, write):
    written = write(tmp_path, n_train=23, n_test=7)
    for split, key in (("pretrain", "train"), ("train", "train"), ("test", "test")):
        data = spec.load(split, tmp_path, False)
        assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
        assert data.images.shape == (len(written[f"{key}_labels"]), 3, 32, 32)
        assert np.array_equal(data.images.numpy(), written[f"{key}_images"])
        assert np.array_equal(data.labels.numpy(), written[f"{key}_labels"])
        assert np.array_equal(data.images[:, 0, 0, 0].numpy(), data.labels.numpy())  # image i carries label i


def test_stl10_layout_and_splits(tmp_path):
    written = write_fake_stl10(tmp_path, n_train=6, n_test=4, n_unlabeled=5)
    train = STL10.load("train", tmp_path, False)
    assert train.images.shape == (6, 3, 96, 96) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images.numpy(), written["train_images"])  # the column-major swap is undone
    assert (train.images[:, :, 0, :].float().mean() > train.images[:, :, -1, :].float().mean() + 50).item()  # top row is the bright one
    assert np.array_equal(train.labels.numpy(), written["train_labels"])  # labels 1..10 become 0..9
    assert np.array_equal(train.images[:, 0, 0, 0].numpy(), train.labels.numpy())
    test = STL10.load("test", tmp_path, False)
    assert np.array_equal(test.images.numpy(), written["test_images"])
    assert np.array_equal(test.labels.numpy(), written["test_labels"])
    pretrain = STL10.load("pretrain", tmp_path, False)
    assert pretrain.images.shape == (11, 3, 96, 96)
    assert np.array_equal(pretrain.images[:6].numpy(), written["train_images"])
    assert np.array_equal(pretrain.images[6:].numpy(), written["unlabeled_images"])
    assert pretrain.labels[:6].tolist() == written["train_labels"].tolist() and pretrain.labels[6:].tolist() == [-1] * 5


def test_stl10_truncated_or_mismatched_files_are_named(tmp_path):
    write_fake_stl10(tmp_path, n_train=3, n_test=2, n_unlabeled=2)
    folder = tmp_path / "stl10_binary"
    with open(folder / "unlabeled_X.bin", "r+b") as f:
        f.truncate(96 * 96 * 3 + 100)
    with pytest.raises(DatasetMissingError, match="unlabeled_X.bin is truncated"):
        STL10.load("pretrain", tmp_path, False)
    (folder / "test_y.bin").write_bytes(bytes([1]))
    with pytest.raises(DatasetMissingError, match="test_y.bin has 1 labels for 2 images"):
        STL10.load("test", tmp_path, False)


def test_imagenet100_follows_the_class_list(tmp_path):
    classes = list(class_list())
    assert len(classes) == 100 and len(set(classes)) == 100 and all(c.startswith("n") and len(c) == 9 for c in classes)
    assert classes[:2] == ["n02869837", "n01749939"]  # file order, not sorted
    write_fake_imagenet(tmp_path, classes + ["n99999999"], n_per_class=2)
    for split in ("pretrain", "train", "test"):
        data = IMAGENET100.load(split, tmp_path, False)
        assert len(data) == 200 and data.labels.dtype == torch.int64  # the extra class is ignored
        assert all(path.parent.name == classes[label] for path, label in zip(data.paths, data.labels.tolist()))
        assert data.paths[0].parent.parent.name == ("val" if split == "test" else "train")
    train = IMAGENET100.load("train", tmp_path, False)
    for index in (0, 1, 199):
        image, label = train.image(index), int(train.labels[index])
        image_index = int(train.paths[index].stem.rsplit("_", 1)[1])
        assert image.mode == "RGB" and image.size == (40 + image_index, 40)
        assert np.abs(np.asarray(image, dtype=int)[20, 20] - imagenet_colour(label, image_index)).max() <= 3


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "imagenet100", "imagenet"])
def test_missing_dataset_is_one_line_naming_the_folder(tmp_path, name):
    with pytest.raises(DatasetMissingError) as err:
        DATASETS[name].load("train", tmp_path, False)
    message = str(err.value)
    assert "\n" not in message and name in message and str(tmp_path) in message
    assert ("image-net.org" if name.startswith("imagenet") else "--data-root") in message


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10"])
def test_offline_download_failure_is_one_line(tmp_path, monkeypatch, name):
    calls = []

    def offline(url, root, filename, md5):
        calls.append((url, filename, md5))
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("hardneg_bench.data.fetch.download_and_extract_archive", offline)
    start = time.monotonic()
    with pytest.raises(DatasetMissingError) as err:
        DATASETS[name].load("train", tmp_path, True)
    assert time.monotonic() - start < 5
    (url, filename, md5), = calls
    assert url.endswith(filename) and len(md5) == 32
    message = str(err.value)
    assert "\n" not in message and name in message and "download failed" in message and url in message and str(tmp_path) in message


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10"])
def test_download_fills_the_data_root(tmp_path, monkeypatch, name):
    def extract(url, root, filename, md5):
        WRITE_AS_IF_DOWNLOADED[name](tmp_path)

    monkeypatch.setattr("hardneg_bench.data.fetch.download_and_extract_archive", extract)
    assert len(DATASETS[name].load("test", tmp_path, True)) == 2


@pytest.mark.parametrize("spec", [IMAGENET100, IMAGENET])
def test_imagenet_is_never_downloaded(tmp_path, spec):
    with pytest.raises(DatasetMissingError, match="cannot be downloaded automatically"):
        spec.load("train", tmp_path, True)


def test_partial_cifar_names_the_missing_file(tmp_path):
    write_fake_cifar10(tmp_path, n_train=10, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetMissingError, match="data_batch_3") as err:
        CIFAR10.load("test", tmp_path, False)
    assert "\n" not in str(err.value)


def test_imagenet_missing_classes_are_named(tmp_path):
    classes = list(class_list())
    write_fake_imagenet100(tmp_path, n_per_class=1, classes=classes[:97])
    with pytest.raises(DatasetMissingError) as err:
        IMAGENET100.load("train", tmp_path, False)
    message = str(err.value)
    assert "\n" not in message and "3 of its 100 class folders are missing" in message
    assert all(wnid in message for wnid in classes[97:])


def test_imagenet_flat_val_or_empty_class_is_one_line(tmp_path):
    write_fake_imagenet100(tmp_path, n_per_class=1)
    (tmp_path / "imagenet" / "val" / class_list()[5] / f"{class_list()[5]}_0.JPEG").unlink()
    with pytest.raises(DatasetMissingError, match=class_list()[5]) as err:
        IMAGENET100.load("test", tmp_path, False)
    assert "\n" not in str(err.value)
    flat = tmp_path / "flat"
    (flat / "imagenet" / "val").mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match="100 of its 100 class folders .* val sorted into class folders"):
        IMAGENET100.load("test", flat, False)


def test_specs_describe_the_real_datasets():
    expected = {
        "cifar10": (10, 32, "cifar100", 50_000, 10_000),
        "cifar100": (100, 32, "cifar10", 50_000, 10_000),
        "stl10": (10, 96, "cifar10", 5_000, 8_000),
        "imagenet100": (100, 224, None, None, 5_000),
        "imagenet": (1000, 224, None, 1_281_167, 50_000),
    }
    for name, (classes, size, target, train, test) in expected.items():
        spec = DATASETS[name]
        assert (spec.num_classes, spec.image_size, spec.transfer_target, spec.builtin) == (classes, size, target, False)
        assert spec.split_sizes.get("train") == train and spec.split_sizes["test"] == test
        assert all(0 < m < 1 for m in spec.mean) and all(0 < s < 1 for s in spec.std)
    assert STL10.split_sizes["pretrain"] == 105_000 and CIFAR10.split_sizes["pretrain"] == 50_000 and IMAGENET.split_sizes["pretrain"] == 1_281_167
    assert (IMAGENET.mean, IMAGENET.std, IMAGENET.folder) == (IMAGENET100.mean, IMAGENET100.std, True)


FAKE_WNIDS = ["n03000000", "n01000000", "n04000000", "n02000000"]  # written in this order, not sorted


def test_imagenet_labels_are_the_sorted_wnid_indices(tmp_path, monkeypatch):
    """ImageNet-1K on a 4-class stand-in (the class count check patched to 4): every class
    folder of a split, labelled by its index in sorted order, as ImageFolder labels them."""
    monkeypatch.setattr(imagenet, "NUM_CLASSES", 4)
    write_fake_imagenet(tmp_path, FAKE_WNIDS, n_per_class=2)
    ordered = sorted(FAKE_WNIDS)
    for split in ("pretrain", "train", "test"):
        data = IMAGENET.load(split, tmp_path, False)
        assert data.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and data.labels.dtype == torch.int64
        assert [path.parent.name for path in data.paths] == [wnid for wnid in ordered for _ in range(2)]
        assert {path.parent.parent.name for path in data.paths} == {"val" if split == "test" else "train"}
    train = IMAGENET.load("train", tmp_path, False)
    for index in range(8):
        wnid, image_index = train.paths[index].parent.name, int(train.paths[index].stem.rsplit("_", 1)[1])
        colour = np.asarray(train.image(index), dtype=int)[20, 20]
        assert np.abs(colour - imagenet_colour(FAKE_WNIDS.index(wnid), image_index)).max() <= 3


def test_imagenet_needs_its_1000_classes_in_each_split(tmp_path):
    assert imagenet.NUM_CLASSES == 1000 == IMAGENET.num_classes
    for i in range(999):
        (tmp_path / "imagenet" / "train" / f"n{i:08d}").mkdir(parents=True)
    with pytest.raises(DatasetMissingError) as err:
        IMAGENET.load("train", tmp_path, False)
    message = str(err.value)
    assert "\n" not in message and f"found 999 class folders in {tmp_path / 'imagenet' / 'train'} (its train split), ImageNet-1k has 1000" in message
    assert "image-net.org" in message and f"put or symlink it at {tmp_path / 'imagenet'}" in message


def test_imagenet_missing_split_flat_val_or_empty_class_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(imagenet, "NUM_CLASSES", 4)
    write_fake_imagenet(tmp_path, FAKE_WNIDS, n_per_class=1)
    val = tmp_path / "imagenet" / "val"
    for wnid in FAKE_WNIDS:  # the ILSVRC2012 validation archive, extracted as it comes
        (val / wnid / f"{wnid}_0.JPEG").rename(val / f"ILSVRC2012_val_{wnid}.JPEG")
        (val / wnid).rmdir()
    with pytest.raises(DatasetMissingError) as err:
        IMAGENET.load("test", tmp_path, False)
    assert "\n" not in str(err.value) and f"{val} holds images directly" in str(err.value) and "valprep.sh" in str(err.value)
    for image in val.iterdir():
        image.unlink()
    val.rmdir()
    with pytest.raises(DatasetMissingError, match=f"imagenet not found: {val} does not exist") as err:
        IMAGENET.load("test", tmp_path, False)
    assert "\n" not in str(err.value)
    (tmp_path / "imagenet" / "train" / FAKE_WNIDS[2] / f"{FAKE_WNIDS[2]}_0.JPEG").unlink()
    with pytest.raises(DatasetMissingError, match=FAKE_WNIDS[2]) as err:
        IMAGENET.load("train", tmp_path, False)
    assert "\n" not in str(err.value)
