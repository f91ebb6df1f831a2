"""The evaluations a run can name: ``probe`` and ``knn`` on the pretraining dataset always, and any
of them on a transfer target (``transfer: [dtd:fewshot, cifar100]``: a dataset and, after a colon,
the protocol; ``linear`` when none is named)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError
from .base import Evaluation
from .detection import DETECTION
from .fewshot import FEWSHOT
from .knn import KNN
from .linear import LINEAR

EVALUATIONS: dict[str, Evaluation] = {e.name: e for e in (LINEAR, KNN, FEWSHOT, DETECTION)}
DEFAULT_PROTOCOL = LINEAR.name


def get_evaluation(name: str) -> Evaluation:
    if name not in EVALUATIONS:
        raise ConfigError(f"unknown evaluation protocol {name!r} (known: {', '.join(EVALUATIONS)})")
    return EVALUATIONS[name]


@dataclass(frozen=True)
class Target:
    """A transfer target: a dataset of the registry and the protocol that evaluates the encoder there."""

    dataset: str
    protocol: str = DEFAULT_PROTOCOL

    @classmethod
    def parse(cls, text: str) -> "Target":
        """``dtd`` (the linear probe) or ``dtd:fewshot``."""
        dataset, _, protocol = str(text).partition(":")
        if not dataset:
            raise ConfigError(f"config key 'transfer': {text!r} names no dataset (write DATASET or DATASET:PROTOCOL)")
        target = cls(dataset, protocol or DEFAULT_PROTOCOL)
        get_evaluation(target.protocol)
        return target

    @property
    def evaluation(self) -> Evaluation:
        return get_evaluation(self.protocol)
