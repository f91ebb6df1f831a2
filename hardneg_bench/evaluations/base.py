"""What an evaluation is: the stages it adds to a run for one (encoder, dataset) and how each is
computed. A new protocol is one module defining an :class:`Evaluation` plus its entry in
:mod:`.registry`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..config import RunConfig

if TYPE_CHECKING:  # the pipeline calls evaluations; they only use its services
    from ..pipeline import Encoder, Pipeline


@dataclass(frozen=True)
class EvaluationStage:
    """One stage of an evaluation: the ledger stage it is stored under, its config (whose hash is
    its key; it holds the encoder's key as ``parent``) and what its ledger label adds."""

    stage: str
    config: dict
    label: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """A protocol for evaluating an encoder on one dataset.

    ``stages(cfg, encoder_key, dataset, transfer)`` lists the stages it runs (``transfer``: the
    dataset is not the one the encoder was pretrained on); ``compute(pipeline, encoder, dataset,
    stage)`` returns one stage's metrics (``test_accuracy`` in %, and whatever else it measures).
    ``dataset(cfg, name, data_root)`` gives the dataset object ``compute`` receives and raises a
    one-line DatasetMissingError when its files are not under ``data_root`` (called before
    pretraining, so that a missing target fails first); None: the classification registry's, as
    the run normalises it, whose ``splits`` are loaded before the first stage is written.

    ``data_parallel``: under torchrun every process computes each stage together, on its share
    of the work (the computation writes in process 0 only); otherwise process 0 computes it
    alone."""

    name: str
    description: str
    splits: tuple[str, ...]
    stages: Callable[[RunConfig, str, str, bool], list[EvaluationStage]]
    compute: Callable[["Pipeline", "Encoder", Any, EvaluationStage], dict]
    dataset: Callable[[RunConfig, str, Path], Any] | None = None
    data_parallel: bool = False
