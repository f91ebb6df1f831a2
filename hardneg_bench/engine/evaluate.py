"""Evaluation of a frozen encoder: linear probe (fast, or the paper protocol) and weighted kNN.

The stored encoder is always used in eval mode with gradients off, so neither its weights nor its
BatchNorm statistics can change (as in MoCo's linear evaluation). A probe whose source code trains
with the encoder's BatchNorm in training mode (``probe.encoder_batchnorm: train``: HCL's and DCL's
linear.py, the Ring code's TransferSystem) runs on a copy of the encoder, whose statistics that
probe rewrites. The classifier is trained on the training split only; ``report_epoch: best``
reports the best test accuracy over the epochs, as MoCo's and CMC's scripts do.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..config import KnnConfig, ProbeConfig
from ..data.base import DatasetSpec
from .batches import augmented_batches, eval_batches, steps_per_epoch
from .optim import build_optimizer, build_schedule
from .runtime import Runtime, autocast, autocast_dtype, derive_seed

Features = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def extract_features(encoder: nn.Module, data, spec: DatasetSpec, probe: ProbeConfig, runtime: Runtime, batch_size: int = 512) -> Features:
    """Features (float32) and labels of every image of ``data``, in order, with the test
    transform of ``probe`` (:func:`~hardneg_bench.engine.batches.test_geometry`); ``encoder`` is
    put in eval mode."""
    encoder.eval()
    amp = autocast_dtype("auto", runtime.device)
    features, labels = [], []
    for images, y in eval_batches(data, spec, probe, batch_size, runtime.device, runtime.num_workers):
        with autocast(amp, runtime.device):
            features.append(encoder(images).float())
        labels.append(y)
    return torch.cat(features), torch.cat(labels)


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


@torch.no_grad()
def knn_accuracy(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], num_classes: int, cfg: KnnConfig, chunk: int = 1024) -> float:
    """Weighted kNN as the HCL/DCL code monitors it: cosine similarity of L2-normalised features,
    the k most similar training images each vote ``exp(sim / temperature)`` for their class."""
    (x_train, y_train), (x_test, y_test) = train, test
    bank = F.normalize(x_train, dim=1)
    k = min(cfg.k, len(bank))
    correct = torch.zeros((), dtype=torch.long, device=x_test.device)  # counted on the device, read once
    for queries, labels in zip(F.normalize(x_test, dim=1).split(chunk), y_test.split(chunk)):
        similarity, neighbours = (queries @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(queries), num_classes, device=queries.device)
        votes.scatter_add_(1, y_train[neighbours], (similarity / cfg.temperature).exp())
        correct += (votes.argmax(1) == labels).sum()
    return correct.item() / len(y_test) * 100

