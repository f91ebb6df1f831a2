"""What a pretraining method is to the training loop.

A method owns its trainable modules (the encoder whose features are evaluated, a projector, any
momentum encoder, queue or memory bank as buffers, so that they are checkpointed) and computes
its loss on a batch. Each epoch the loop calls :meth:`Method.on_epoch_start`; each step it calls
:meth:`Method.loss`, steps the optimizer, then :meth:`Method.after_optimizer_step`. It knows no
method by name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

MakeProjector = Callable[[int], nn.Module]
"""Builds a projection head for features of the given width (the run's ``model`` config)."""


@dataclass
class Batch:
    """Augmented views of B images (``view2`` is None for one-view methods), the images' dataset
    indices and labels (-1 where unlabelled).

    With several processes (:mod:`hardneg_bench.distributed`) the views are this process's rows
    of the global batch and ``indices`` and ``labels`` are the whole batch's: a method embeds its
    views, :func:`~hardneg_bench.distributed.gather` s the embeddings and computes its objective
    on the whole batch."""

    view1: torch.Tensor
    view2: torch.Tensor | None
    indices: torch.Tensor
    labels: torch.Tensor


class Method(nn.Module):
    """Base class: ``backbone`` is the encoder that evaluation uses; ``projector`` maps its
    features to the embedding the objective sees; ``params`` is the method's parameter dataclass;
    ``dataset_size`` is the number of pretraining images (memory banks hold one entry each)."""

    views: int = 2
    """Augmented views per image the method needs (1 for memory-bank methods)."""
    lab_split: bool = False
    """True for CMC: the encoder is an L stream and an ab stream (models.colour)."""

    def __init__(self, backbone: nn.Module, make_projector: MakeProjector, params: Any, dataset_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = self.projection_head(make_projector)
        self.params = params
        self.on_epoch_start(0)

    def projection_head(self, make_projector: MakeProjector) -> nn.Module:
        return make_projector(self.backbone.feature_dim)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(images))

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: Batch) -> torch.Tensor:
        """The loss: what DistributedDataParallel calls."""
        return self.loss(batch)

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (0-based); warm-ups and annealing schedules read ``self.epoch``."""
        self.epoch = epoch

    def after_optimizer_step(self) -> None:
        """Called after each optimizer step: momentum-encoder updates, enqueueing, bank updates."""

    def hardness(self, batch: Batch) -> torch.Tensor | None:
        """Called after :meth:`loss` on labelled data: the hardness sums
        (:func:`hardneg_bench.methods.hardness.hardest_negatives`) of the negatives that loss used;
        None where the method does not say."""
        return None

    def negative_ring(self) -> tuple[float, float] | None:
        """(outer, inner) in force this epoch for the Ring methods, whose parameters have them."""
        p = self.params
        return (p.outer_at(self.epoch), p.inner) if hasattr(p, "outer_at") else None


@contextlib.contextmanager
def float32_objective(like: torch.Tensor):
    """The scope of an objective: autocast off, so that a loss given float32 embeddings computes
    its similarities, exponentials and logs in float32 while the encoders run in bf16. On a device
    type without autocast (``meta``) there is nothing to switch off."""
    if not torch.amp.is_autocast_available(like.device.type):
        yield
        return
    with torch.autocast(like.device.type, enabled=False):
        yield


def out_features(projector: nn.Module) -> int:
    """The embedding width of a projection head (its last Linear layer)."""
    return [m for m in projector.modules() if isinstance(m, nn.Linear)][-1].out_features
