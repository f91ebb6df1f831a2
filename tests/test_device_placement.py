"""Device placement and host reads, caught on the CPU: every method's training step, the batched
augmentation, feature extraction, the fast probe, kNN and ``bench``'s timing path run on an
emulated accelerator (:mod:`device_emulation`: the meta device under a dispatch mode that sees
every operation), and nothing in a step may create a tensor on the host, mix host and device
tensors, read a device value on the host or draw from another device's generator. The last test
shows that the check fails on planted mistakes of each kind."""

from __future__ import annotations

import math
import traceback

import pytest
import torch
import torch.nn.functional as F

from hardneg_bench import bench as bench_module
from hardneg_bench.config import KnnConfig, ProbeConfig
from hardneg_bench.data.base import ImageTensorSet
from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.batches import augmented_batches, on_device, pretraining_batches
from hardneg_bench.evaluations.features import extract_features
from hardneg_bench.evaluations.knn import knn_accuracy
from hardneg_bench.evaluations.linear import fast_linear_probe
from hardneg_bench.engine.pretrain import _EpochTotals
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.engine.trainer import Trainer
from hardneg_bench.methods import METHODS
from hardneg_bench.methods import simclr as simclr_module
from hardneg_bench.recipes import resolve_config

from device_emulation import DEVICE, Finding, describe, emulated_device

RUNTIME = Runtime(DEVICE, num_workers=0, show_progress=False)


def images(count: int, side: int = 32, classes: int = 10, seed: int = 0) -> ImageTensorSet:
    generator = torch.Generator().manual_seed(seed)
    return ImageTensorSet(torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator), torch.randint(0, classes, (count,), generator=generator))


def training_step_findings(watch, method: str, batch_size: int | None = None, overrides: tuple[str, ...] = ()) -> list:
    """Build ``method`` with its CIFAR-10 recipe (backbone, batch, queue, bank of 50,000) on the
    emulated device and run two pretraining steps as the loop runs them (next batch, step with
    the hardness diagnostics, the epoch's device totals); return what the watch found."""
    cfg = resolve_config(method, "cifar10", overrides=list(overrides))
    spec, batch = get_dataset("cifar10"), batch_size or cfg.pretrain.batch_size
    trainer = Trainer.build(cfg, spec, 50_000, steps_per_epoch=3, runtime=RUNTIME)
    model = trainer.model.train()
    model.on_epoch_start(10**6)  # past every warm-up: each method's full objective
    batches = pretraining_batches(on_device(images(3 * batch), DEVICE), cfg.pretrain.augment, spec, batch, DEVICE, 0, 0, model.views)
    first = next(batches)  # the epoch's index batches are copied to the device here, once
    totals = _EpochTotals(DEVICE)

    def tally(b):
        totals.hardness.add(model.hardness(b))

    with watch.watching() as found:
        try:
            for step, b in enumerate([first, next(batches)]):
                totals.add(step, trainer.step(b, tally))
        except (RuntimeError, NotImplementedError) as err:  # a device mismatch, or a shape that depends on the data
            found.append(Finding("error", f"{type(err).__name__}: {err}", "".join(traceback.format_tb(err.__traceback__)[-3:])))
    return found


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_training_step_of_every_method_stays_on_the_device(method, monkeypatch):
    with emulated_device(monkeypatch) as watch:
        found = training_step_findings(watch, method)
    assert found == [], describe(found)


def test_the_step_at_imagenet_size_stays_on_the_device(monkeypatch):
    """ImageNet-100's recipe: 224-px crops of larger images, the 7x7 stem, a 65,536-key queue."""
    cfg = resolve_config("mochi", "imagenet100", overrides=["pretrain.batch_size=8", "model.bn_splits=2"])
    spec = get_dataset("imagenet100")
    with emulated_device(monkeypatch) as watch:
        trainer = Trainer.build(cfg, spec, 1_000, steps_per_epoch=2, runtime=RUNTIME)
        trainer.model.on_epoch_start(10**6)
        batches = pretraining_batches(on_device(images(16, side=256, classes=100), DEVICE), cfg.pretrain.augment, spec, 8, DEVICE, 0, 0, 2)
        first = next(batches)
        with watch.watching() as found:
            trainer.step(first, trainer.model.hardness)
            trainer.step(next(batches))
    assert found == [], describe(found)


def pass_findings(prepare, run, sizes: tuple[int, int], monkeypatch) -> list[list]:
    """What the watch found in ``run(prepare(size), size)`` for each of two batch sizes that give
    one and four steps: work done once per pass is allowed, work per step is not, so both must
    find the same."""
    out = []
    for size in sizes:
        with emulated_device(monkeypatch) as watch:
            inputs = prepare()
            with watch.watching() as found:
                run(inputs, size)
        out.append(found)
    return out


def test_feature_extraction_and_probe_augmentation_do_nothing_per_batch_on_the_host(monkeypatch):
    spec = get_dataset("cifar10")
    cfg = resolve_config("simclr", "cifar10", overrides=["model.backbone=resnet18"])

    def prepare():
        return Trainer.build(cfg, spec, 32, 1, RUNTIME).model.backbone, on_device(images(32), DEVICE)

    def extract(inputs, batch_size: int) -> None:
        encoder, data = inputs
        features, labels = extract_features(encoder, data, spec, ProbeConfig(image_size=40), RUNTIME, batch_size=batch_size)  # resized to 40 px
        assert features.shape == (32, encoder.feature_dim) and features.device == labels.device == DEVICE
        for views, _ in augmented_batches(data, cfg.pretrain.augment, spec, batch_size, DEVICE, 0, 0):
            assert views.device == DEVICE

    one, four = pass_findings(prepare, extract, (32, 8), monkeypatch)
    assert one == four, describe(four)
    # each pass's order of the images, made on the host and copied to the device once
    assert [f.kind for f in one] == ["cpu-tensor", "cpu-tensor", "mixed-devices"] * 2, describe(one)


def test_the_fast_probe_and_knn_read_the_host_once_per_pass(monkeypatch):
    def prepare():
        return (torch.randn(32, 16, device=DEVICE), torch.randint(0, 10, (32,), device=DEVICE)), (torch.randn(8, 16, device=DEVICE), torch.randint(0, 10, (8,), device=DEVICE))

    def probe(inputs, batch_size: int) -> None:
        train, test = inputs
        fast_linear_probe(train, test, 10, ProbeConfig(epochs=3, batch_size=batch_size), seed=0)
        knn_accuracy(train, test, 10, KnnConfig(k=5), chunk=batch_size // 4)

    one, four = pass_findings(prepare, probe, (32, 8), monkeypatch)
    assert one == four, describe(four)
    assert [f.kind for f in one if f.kind == "host-read"] == ["host-read"] * 3, describe(one)  # the probe's train and test accuracy, kNN's count


def test_bench_times_steps_that_do_nothing_per_step_on_the_host(monkeypatch):
    """The whole of ``bench`` runs on the emulated device; what its timed steps and its
    augmentation timing (the figures a GPU run reports) do on the host does not grow with the
    number of steps: it is each epoch's order of the images, made before the first step."""

    def timed_findings(steps: int) -> list:
        found_in_timing: list = []

        def watched(watch, function):
            def call(*args, **kwargs):
                with watch.watching() as found:
                    result = function(*args, **kwargs)
                found_in_timing.extend(found)
                return result

            return call

        cfg = resolve_config("moco-v2", "cifar10", overrides=["pretrain.batch_size=16", "model.bn_splits=2"])
        with emulated_device(monkeypatch) as watch:
            for name in ("time_steps",):  # (the augmentation is timed inside the full pipeline's steps)
                monkeypatch.setattr(bench_module, name, watched(watch, getattr(bench_module, name)))
            figures = bench_module.bench(cfg, get_dataset("cifar10"), RUNTIME, steps=steps, warmup=1, reference=False)
        assert figures["device"] == "meta" and figures["steps"] == steps
        return found_in_timing

    one, three = timed_findings(1), timed_findings(3)
    assert one == three, describe(three)
    assert {f.where.split(":")[0] for f in one} == {"batches.py"}, describe(one)


# -- the check catches what it is for ---------------------------------------------------------


def nt_xent_planted(kind: str):
    """SimCLR's loss with one planted mistake of ``kind``."""

    def loss(z1, z2, temperature):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        n = z1.shape[0]
        logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -math.inf)
        targets = torch.arange(2 * n, device=z.device).roll(n)
        if kind == "arange without device":
            targets = torch.arange(2 * n).roll(n)
        elif kind == "item":
            temperature = temperature * logits.detach().amax().item()
        elif kind == "boolean mask":
            logits = logits[logits.isfinite().all(1)]
        elif kind == "generator of the host":
            logits = logits + 0 * torch.rand(2 * n, 1, generator=torch.Generator().manual_seed(0), device=z.device)
        return F.cross_entropy(logits, targets)

    return loss


@pytest.mark.parametrize("kind,finding", [
    ("arange without device", "cpu-tensor (arange) at test_device_placement.py"),
    ("item", "host-read"),
    ("boolean mask", "error (NotImplementedError: The register_meta function for torch.nonzero()"),
    ("generator of the host", "generator-device (rand)"),
])
def test_the_check_fails_on_a_planted_mistake(kind, finding, monkeypatch):
    monkeypatch.setattr(simclr_module, "nt_xent", nt_xent_planted(kind))
    with emulated_device(monkeypatch) as watch:
        found = describe(training_step_findings(watch, "simclr", batch_size=8, overrides=("model.backbone=resnet18",)))
    assert finding in found


def test_without_a_plant_the_same_loss_passes(monkeypatch):
    monkeypatch.setattr(simclr_module, "nt_xent", nt_xent_planted("none"))
    with emulated_device(monkeypatch) as watch:
        found = training_step_findings(watch, "simclr", batch_size=8, overrides=("model.backbone=resnet18",))
    assert found == [], describe(found)
