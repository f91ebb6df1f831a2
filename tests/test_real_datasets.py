"""The real loaders on tiny files written in each dataset's real on-disk format."""


import numpy as np
import pytest
import torch

from fake_datasets import write_fake_cifar, write_fake_imagenet, write_fake_stl10
from hardneg_bench.data.base import DatasetMissingError
from hardneg_bench.data.cifar import CIFAR10, CIFAR100
from hardneg_bench.data.imagenet100 import IMAGENET100, class_list
from hardneg_bench.data.registry import DATASETS
from hardneg_bench.data.stl10 import STL10


@pytest.mark.parametrize("spec,classes", [(CIFAR10, 10), (CIFAR100, 100)])
def test_cifar_round_trip(tmp_path, spec, classes):
    written = write_fake_cifar(tmp_path, classes, n_train=23, n_test=7)
    for split, key in (("pretrain", "train"), ("train", "train"), ("test", "test")):
        data = spec.load(split, tmp_path, False)
        assert data.images.dtype == torch.uint8 and data.images.shape == (len(written[f"{key}_labels"]), 3, 32, 32)
        assert np.array_equal(data.images.numpy(), written[f"{key}_images"])
        assert np.array_equal(data.labels.numpy(), written[f"{key}_labels"])
        assert np.array_equal(data.images[:, 0, 0, 0].numpy(), data.labels.numpy())


def test_stl10_layout_and_splits(tmp_path):
    written = write_fake_stl10(tmp_path, n_train=6, n_test=4, n_unlabeled=5)
    train = STL10.load("train", tmp_path, False)
    assert train.images.shape == (6, 3, 96, 96)
    assert np.array_equal(train.images.numpy(), written["train_images"])  # the column-major swap is undone
    assert np.array_equal(train.labels.numpy(), written["train_labels"])  # labels 1..10 become 0..9
    test = STL10.load("test", tmp_path, False)
    assert np.array_equal(test.images.numpy(), written["test_images"])
    pretrain = STL10.load("pretrain", tmp_path, False)
    assert pretrain.images.shape[0] == 11
    assert np.array_equal(pretrain.images[6:].numpy(), written["unlabeled_images"])
    assert pretrain.labels[:6].tolist() == written["train_labels"].tolist() and pretrain.labels[6:].tolist() == [-1] * 5


def test_imagenet100_follows_the_class_list(tmp_path):
    classes = list(class_list())
    assert len(classes) == 100 and len(set(classes)) == 100 and all(c.startswith("n") for c in classes)
    write_fake_imagenet(tmp_path, classes + ["n99999999"], n_per_class=2)
    train = IMAGENET100.load("train", tmp_path, False)
    assert len(train) == 200  # the extra class is ignored
    for path, label in zip(train.paths, train.labels.tolist()):
        assert path.parent.name == classes[label]
    image = train.image(0)
    assert image.mode == "RGB" and image.size[1] == 40
    assert len(IMAGENET100.load("test", tmp_path, False)) == 200


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "imagenet100"])
def test_missing_dataset_is_one_line_naming_the_folder(tmp_path, name):
    with pytest.raises(DatasetMissingError) as err:
        DATASETS[name].load("train", tmp_path, False)
    message = str(err.value)
    assert "\n" not in message and name in message and str(tmp_path) in message


def test_offline_download_failure_is_one_line(tmp_path, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("hardneg_bench.data.fetch.download_and_extract_archive", offline)
    with pytest.raises(DatasetMissingError) as err:
        CIFAR10.load("train", tmp_path, True)
    message = str(err.value)
    assert "\n" not in message and "download failed" in message and "cifar-10-python.tar.gz" in message


def test_partial_cifar_names_the_missing_file(tmp_path):
    write_fake_cifar(tmp_path, 10, n_train=10, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetMissingError, match="data_batch_3"):
        CIFAR10.load("test", tmp_path, False)


def test_imagenet_missing_classes_are_named(tmp_path):
    classes = list(class_list())
    write_fake_imagenet(tmp_path, classes[:97], n_per_class=1)
    with pytest.raises(DatasetMissingError) as err:
        IMAGENET100.load("train", tmp_path, False)
    assert "3 of its 100 class folders are missing" in str(err.value) and classes[97] in str(err.value)
