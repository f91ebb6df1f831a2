"""Evaluation of a frozen encoder: linear probe (fast, or the paper protocol) and weighted kNN.

The encoder is always in eval mode with gradients off, so neither its weights nor its BatchNorm
statistics can change (as in MoCo's linear evaluation). Accuracies are computed on the test split
only; the classifier never sees it while training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import KnnConfig, ProbeConfig
from ..data.base import DatasetSpec
from .batches import augmented_batches, eval_batches
from .optim import build_optimizer, build_schedule
from .runtime import Runtime, autocast, autocast_dtype, derive_seed


@torch.no_grad()
def extract_features(encoder: nn.Module, data, spec: DatasetSpec, image_size: int | None, runtime: Runtime, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled backbone features (float32) and labels of every image of ``data``, in order."""
    encoder.eval()
    amp = autocast_dtype("auto", runtime.device)
    features, labels = [], []
    for images, y in eval_batches(data, spec, image_size, batch_size, runtime.device, runtime.num_workers):
        with autocast(amp, runtime.device):
            features.append(encoder(images).float())
        labels.append(y)
    return torch.cat(features), torch.cat(labels)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item() * 100


def _train_classifier(classifier: nn.Linear, epoch_batches, cfg: ProbeConfig, steps: int) -> None:
    """Fit ``classifier`` with the probe's optimizer and schedule; ``epoch_batches(epoch)`` gives
    one epoch of (features, labels)."""
    optimizer = build_optimizer(classifier, cfg.optimizer)
    schedule = build_schedule(optimizer, cfg.schedule, steps, cfg.epochs)
    classifier.train()
    for epoch in range(cfg.epochs):
        for features, labels in epoch_batches(epoch):
            loss = F.cross_entropy(classifier(features), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


def _new_classifier(in_dim: int, num_classes: int, seed: int, device: torch.device) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_dim, num_classes).to(device)


def fast_linear_probe(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], num_classes: int, cfg: ProbeConfig, seed: int) -> dict:
    """Linear classifier trained on features computed once (no augmentation). The features are
    standardised with the training split's per-dimension mean and std first: an affine map that
    leaves the set of linear classifiers unchanged but lets one optimizer recipe fit encoders
    whose feature scales differ by orders of magnitude (a random-init encoder's are ~1e-2)."""
    (x_train, y_train), (x_test, y_test) = train, test
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    classifier = _new_classifier(x_train.shape[1], num_classes, derive_seed(seed, "probe-init"), x_train.device)
    steps = -(-len(x_train) // cfg.batch_size)

    def epoch_batches(epoch: int):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(derive_seed(seed, "probe", epoch))).to(x_train.device)
        for idx in order.split(cfg.batch_size):
            yield x_train[idx], y_train[idx]

    _train_classifier(classifier, epoch_batches, cfg, steps)
    with torch.no_grad():
        return {"train_accuracy": _accuracy(classifier(x_train), y_train), "test_accuracy": _accuracy(classifier(x_test), y_test)}


def paper_linear_probe(encoder: nn.Module, train_data, test_data, spec: DatasetSpec, cfg: ProbeConfig, pretrain_augment, runtime: Runtime, seed: int) -> dict:
    """The papers' protocol: every epoch, augmented training images go through the frozen encoder
    and the classifier takes one optimizer step per batch; the last epoch's classifier is tested
    (HCL reports the epoch-100 value, not the best)."""
    augment = cfg.augment or pretrain_augment
    encoder.eval()
    amp = autocast_dtype("auto", runtime.device)
    classifier = _new_classifier(encoder.feature_dim, spec.num_classes, derive_seed(seed, "probe-init"), runtime.device)
    steps = -(-len(train_data) // cfg.batch_size)

    def epoch_batches(epoch: int):
        for images, labels in augmented_batches(train_data, augment, spec, cfg.batch_size, runtime.device, derive_seed(seed, "probe", epoch), runtime.num_workers):
            with torch.no_grad(), autocast(amp, runtime.device):
                features = encoder(images).float()
            yield features, labels

    _train_classifier(classifier, epoch_batches, cfg, steps)
    x_test, y_test = extract_features(encoder, test_data, spec, cfg.image_size, runtime)
    with torch.no_grad():
        return {"test_accuracy": _accuracy(classifier(x_test), y_test)}


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

