"""Shared test set-up: a stand-in for the ``detection`` evaluation until the real one is merged.

The detection paper tables (experiments/tables/moco-voc.yaml, ...) name the transfer protocol
``detection``, which hardneg_bench/evaluations/detection.py registers (branch det-stage). Where the
registry does not have it yet, this registers a stand-in whose stages follow the agreed stage format
(one ``detection`` stage per trial; computing one is not possible), so that those tables resolve
and their reports can be tested on fake ledger records. Once the real evaluation is registered this
does nothing (the integrator deletes it).
"""

from __future__ import annotations

from hardneg_bench.config import ConfigError, RunConfig, to_dict
from hardneg_bench.detection.datasets import DETECTION_DATASETS
from hardneg_bench.evaluations.base import Evaluation, EvaluationStage
from hardneg_bench.evaluations.registry import EVALUATIONS


def _stages(cfg: RunConfig, encoder_key: str, dataset: str, transfer: bool) -> list[EvaluationStage]:
    d = cfg.detection
    return [
        EvaluationStage("detection", {"parent": encoder_key, "dataset": dataset, "seed": cfg.seed, "trial": k, "detection": to_dict(d, keyed=True)}, {"trial": k, "detector": d.arch, "task": d.task})
        for k in range(d.trials)
    ]


def _dataset(cfg: RunConfig, name: str) -> str:
    if name not in DETECTION_DATASETS:
        raise ConfigError(f"unknown detection dataset {name!r} (known: {', '.join(DETECTION_DATASETS)})")
    return name


def _compute(pipeline, encoder, dataset, stage) -> dict:
    raise NotImplementedError("the detection stage is not in this checkout (tests/conftest.py stand-in)")


if "detection" not in EVALUATIONS:
    EVALUATIONS["detection"] = Evaluation("detection", "stand-in for the detection stage (tests/conftest.py)", (), _stages, _compute, _dataset)
