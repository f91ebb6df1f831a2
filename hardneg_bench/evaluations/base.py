"""What an evaluation is: the stages it adds to a run for one (encoder, dataset) and how each is
computed. A new protocol is one module defining an :class:`Evaluation` plus its entry in
:mod:`.registry`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..config import RunConfig

if TYPE_CHECKING:  # the pipeline calls evaluations; they only use its services
    from ..data.base import DatasetSpec
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
    dataset is not the one the encoder was pretrained on); ``compute(pipeline, encoder, spec,
    stage)`` returns one stage's metrics (``test_accuracy`` in %, and whatever else it measures);
    ``splits`` are the dataset splits it reads."""

    name: str
    description: str
    splits: tuple[str, ...]
    stages: Callable[[RunConfig, str, str, bool], list[EvaluationStage]]
    compute: Callable[["Pipeline", "Encoder", "DatasetSpec", EvaluationStage], dict]
