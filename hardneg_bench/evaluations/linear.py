"""The linear probe of a frozen encoder (fast, or the paper protocol): ``probe`` on the pretraining
dataset, ``transfer`` on another.

The stored encoder is always used in eval mode with gradients off, so neither its weights nor its
BatchNorm statistics can change (as in MoCo's linear evaluation). A probe whose source code trains
with the encoder's BatchNorm in training mode (``probe.encoder_batchnorm: train``: HCL's and DCL's
linear.py, the Ring code's TransferSystem) runs on a copy of the encoder, whose statistics that
probe rewrites. The classifier is trained on the training split only; ``report_epoch: best``
reports the best test accuracy over the epochs, as MoCo's and CMC's scripts do.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ProbeConfig, RunConfig, to_dict
from ..data.base import DatasetSpec
from ..engine.batches import augmented_batches, steps_per_epoch
from ..engine.optim import build_optimizer, build_schedule
from ..engine.runtime import Runtime, autocast, autocast_dtype, derive_seed
from .base import Evaluation, EvaluationStage
from .features import Features, extract_features

if TYPE_CHECKING:
    from ..pipeline import Encoder, Pipeline


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item() * 100


def new_classifier(in_dim: int, num_classes: int, cfg: ProbeConfig, seed: int, device: torch.device) -> nn.Linear:
    """The linear classifier, initialised as ``cfg.classifier_init`` says from ``seed``."""
    torch.manual_seed(seed)
    classifier = nn.Linear(in_dim, num_classes)
    if cfg.classifier_init == "normal":  # MoCo main_lincls.py:240-241, CMC LinearModel.py initilize
        nn.init.normal_(classifier.weight, mean=0.0, std=0.01)
        nn.init.zeros_(classifier.bias)
    return classifier.to(device)


def train_classifier(classifier: nn.Linear, epoch_batches: Callable[[int], Iterator[Features]], cfg: ProbeConfig, steps: int, test: Callable[[], float]) -> float:
    """Fit ``classifier`` with the probe's optimizer and schedule (``steps`` per epoch);
    ``epoch_batches(epoch)`` gives one epoch of (features, labels) and ``test()`` the test accuracy
    of the classifier as it stands. Returns the last epoch's test accuracy or, with
    ``report_epoch: best``, the best over the epochs (tested after each)."""
    optimizer = build_optimizer(classifier, cfg.optimizer)
    schedule = build_schedule(optimizer, cfg.schedule, steps, cfg.epochs)
    tested = []
    for epoch in range(cfg.epochs):
        classifier.train()
        for features, labels in epoch_batches(epoch):
            loss = F.cross_entropy(classifier(features), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if cfg.report_epoch == "best" or epoch == cfg.epochs - 1:
            classifier.eval()
            with torch.no_grad():
                tested.append(test())
    return max(tested) if cfg.report_epoch == "best" else tested[-1]


def fast_linear_probe(train: Features, test: Features, num_classes: int, cfg: ProbeConfig, seed: int) -> dict:
    """Linear classifier trained on features computed once (no augmentation). The features are
    standardised with the training split's per-dimension mean and std first: an affine map that
    leaves the set of linear classifiers unchanged but lets one optimizer recipe fit encoders
    whose feature scales differ by orders of magnitude (a random-init encoder's are ~1e-2)."""
    (x_train, y_train), (x_test, y_test) = train, test
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    classifier = new_classifier(x_train.shape[1], num_classes, cfg, derive_seed(seed, "probe-init"), x_train.device)
    usable = len(x_train) // cfg.batch_size * cfg.batch_size if cfg.drop_last else len(x_train)

    def epoch_batches(epoch: int):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(derive_seed(seed, "probe", epoch))).to(x_train.device)
        for idx in order[:usable].split(cfg.batch_size):
            yield x_train[idx], y_train[idx]

    accuracy = train_classifier(classifier, epoch_batches, cfg, steps_per_epoch(len(x_train), cfg.batch_size, cfg.drop_last), lambda: _accuracy(classifier(x_test), y_test))
    with torch.no_grad():
        return {"train_accuracy": _accuracy(classifier(x_train), y_train), "test_accuracy": accuracy}


def paper_linear_probe(encoder: nn.Module, train_data, test_data, spec: DatasetSpec, cfg: ProbeConfig, pretrain_augment, runtime: Runtime, seed: int) -> dict:
    """The papers' protocol: every epoch, augmented training images go through the frozen encoder
    and the classifier takes one optimizer step per batch; the test images are then classified
    from the encoder as the probe left it (with ``encoder_batchnorm: train``, a copy whose
    BatchNorm statistics the training batches rewrote)."""
    augment = cfg.augment or pretrain_augment
    rewrites_statistics = cfg.encoder_batchnorm == "train"
    probe_encoder = copy.deepcopy(encoder) if rewrites_statistics else encoder
    amp = autocast_dtype("auto", runtime.device)
    classifier = new_classifier(encoder.feature_dim, spec.num_classes, cfg, derive_seed(seed, "probe-init"), runtime.device)
    test_features: list[Features] = []

    def epoch_batches(epoch: int):
        probe_encoder.train(rewrites_statistics)
        for images, labels in augmented_batches(train_data, augment, spec, cfg.batch_size, runtime.device, derive_seed(seed, "probe", epoch), runtime.num_workers, cfg.drop_last):
            with torch.no_grad(), autocast(amp, runtime.device):
                features = probe_encoder(images).float()
            yield features, labels

    def test() -> float:
        if rewrites_statistics or not test_features:  # fixed statistics: the test features once
            test_features[:] = [extract_features(probe_encoder, test_data, spec, cfg, runtime)]
        x_test, y_test = test_features[0]
        return _accuracy(classifier(x_test), y_test)

    accuracy = train_classifier(classifier, epoch_batches, cfg, steps_per_epoch(len(train_data), cfg.batch_size, cfg.drop_last), test)
    return {"test_accuracy": accuracy}


def probe_stage(cfg: RunConfig, encoder_key: str, dataset: str) -> dict:
    """The config of the linear probe of the encoder ``encoder_key`` on ``dataset``."""
    augment = (cfg.probe.augment or cfg.pretrain.augment) if cfg.probe.protocol == "paper" else None
    return {"parent": encoder_key, "dataset": dataset, "seed": cfg.seed, "probe": to_dict(replace(cfg.probe, augment=augment), keyed=True)}


def _stages(cfg: RunConfig, encoder_key: str, dataset: str, transfer: bool) -> list[EvaluationStage]:
    return [EvaluationStage("transfer" if transfer else "probe", probe_stage(cfg, encoder_key, dataset), {"protocol": cfg.probe.protocol})]


def _compute(pipeline: "Pipeline", encoder: "Encoder", spec: DatasetSpec, stage: EvaluationStage) -> dict:
    cfg = pipeline.cfg
    if cfg.probe.protocol == "fast":
        return fast_linear_probe(pipeline.features(encoder, spec, "train"), pipeline.features(encoder, spec, "test"), spec.num_classes, cfg.probe, cfg.seed)
    return paper_linear_probe(pipeline.encoder_module(encoder), pipeline.device_data(spec, "train"), pipeline.device_data(spec, "test"), spec, cfg.probe, cfg.pretrain.augment, pipeline.runtime, cfg.seed)


LINEAR = Evaluation("linear", "a linear classifier on the frozen encoder, trained on the train split, tested on the test split", ("train", "test"), _stages, _compute)
