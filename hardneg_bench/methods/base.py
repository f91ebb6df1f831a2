"""What a pretraining method is to the training loop.

A method owns its trainable modules (the backbone whose features are evaluated, a projector, any
momentum encoder, queue or memory bank as buffers, so that they are checkpointed) and computes
its loss on a batch. The loop calls :meth:`Method.loss`, steps the optimizer, then
:meth:`Method.after_optimizer_step`; it knows no method by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Batch:
    """Two augmented views of the same images, the images' dataset indices and labels (-1 where
    unlabelled). Methods that need neither indices nor labels ignore them."""

    view1: torch.Tensor
    view2: torch.Tensor
    indices: torch.Tensor
    labels: torch.Tensor


class Method(nn.Module):
    """Base class: ``backbone`` is the encoder that evaluation uses; ``projector`` maps its
    features to the embedding the objective sees."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(images))

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Called after each optimizer step (momentum-encoder updates, enqueueing)."""
