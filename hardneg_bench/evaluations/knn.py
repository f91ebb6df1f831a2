"""Weighted k-nearest-neighbour classification on frozen features, as the HCL/DCL code monitors it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..config import KnnConfig, RunConfig, to_dict
from ..data.base import DatasetSpec
from .base import Evaluation, EvaluationStage
from .features import Features, test_transform

if TYPE_CHECKING:
    from ..pipeline import Encoder, Pipeline


@torch.no_grad()
def knn_accuracy(train: Features, test: Features, num_classes: int, cfg: KnnConfig, chunk: int = 1024) -> float:
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


def knn_stage(cfg: RunConfig, encoder_key: str, dataset: str) -> dict:
    """The config of the kNN evaluation: its own settings and the probe's test transform."""
    return {"parent": encoder_key, "dataset": dataset, "knn": to_dict(cfg.knn, keyed=True), **test_transform(cfg)}


def _stages(cfg: RunConfig, encoder_key: str, dataset: str, transfer: bool) -> list[EvaluationStage]:
    return [EvaluationStage("knn", knn_stage(cfg, encoder_key, dataset))]


def _compute(pipeline: "Pipeline", encoder: "Encoder", spec: DatasetSpec, stage: EvaluationStage) -> dict:
    cfg = pipeline.cfg
    head = cfg.knn.feature == "head"
    train, test = (pipeline.features(encoder, spec, split, head) for split in ("train", "test"))
    return {"test_accuracy": knn_accuracy(train, test, spec.num_classes, cfg.knn)}


KNN = Evaluation("knn", "weighted kNN on the frozen features: the train split is the bank, the test split the queries", ("train", "test"), _stages, _compute)
