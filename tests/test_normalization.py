"""model.normalization: the input normalisation a source code uses (HCL/DCL and MoCo's CIFAR demo
normalise every dataset with CIFAR-10's kuangliu statistics, the Ring code with ImageNet's) reaches
every place an image is normalised: pretraining augmentation, probe augmentation, test images."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hardneg_bench.config import ConfigError, config_key
from hardneg_bench.data import registry
from hardneg_bench.data.base import ImageTensorSet
from hardneg_bench.data.normalization import NORMALIZATIONS
from hardneg_bench.engine import batches
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.pipeline import Pipeline, pretrain_stage
from hardneg_bench.recipes import resolve_config
from hardneg_bench.store import RunStore

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
FAST = ["model.backbone=tiny", "pretrain.epochs=1", "pretrain.batch_size=32", "probe.epochs=1", "probe.protocol=paper", "knn.k=5", "pretrain.diagnostics_every=0", "transfer=[]"]


@pytest.fixture()
def tiny_shapes():
    shapes = registry.get_dataset("shapes")

    def load(split, root, download):
        full = shapes.load("train" if split == "pretrain" else split, root, download)
        return ImageTensorSet(full.images[:64], full.labels[:64])

    registry.DATASETS["norm-tiny"] = replace(shapes, name="norm-tiny", load=load, transfer_target=None)
    yield shapes
    del registry.DATASETS["norm-tiny"]


def _normalisations_used(monkeypatch, tmp_path: Path, *overrides: str) -> set[tuple]:
    """Every (mean, std) an image was normalised with during one small run."""
    used = set()
    real_augment, real_normalize = batches.BatchAugment, batches.normalize_batch

    def augment(cfg, mean, std, size):
        used.add((tuple(mean), tuple(std)))
        return real_augment(cfg, mean, std, size)

    def normalize(images, mean, std, *args):
        used.add((tuple(mean), tuple(std)))
        return real_normalize(images, mean, std, *args)

    monkeypatch.setattr(batches, "BatchAugment", augment)
    monkeypatch.setattr(batches, "normalize_batch", normalize)
    Pipeline(resolve_config("simclr", "norm-tiny", overrides=[*FAST, *overrides]), RunStore(tmp_path), CPU, tmp_path / "data", False).run()
    return used


def test_the_run_normalises_every_image_as_model_normalization_says(monkeypatch, tmp_path, tiny_shapes):
    assert _normalisations_used(monkeypatch, tmp_path / "a", "model.normalization=cifar10-kuangliu") == {NORMALIZATIONS["cifar10-kuangliu"]}
    assert _normalisations_used(monkeypatch, tmp_path / "b") == {(tuple(tiny_shapes.mean), tuple(tiny_shapes.std))}


def test_normalization_is_part_of_the_pretraining_key_only_when_set():
    cfg = resolve_config("simclr", "shapes")
    assert "normalization" not in pretrain_stage(cfg)[0]["model"]
    changed = replace(cfg, model=replace(cfg.model, normalization="imagenet"))
    assert config_key(pretrain_stage(changed)[0]) != config_key(pretrain_stage(cfg)[0])
    with pytest.raises(ConfigError, match="model.normalization"):
        resolve_config("simclr", "shapes", overrides=["model.normalization=cifar11"])
