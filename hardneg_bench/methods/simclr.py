"""SimCLR (Chen et al. 2020) with the NT-Xent loss over the 2B - 2 in-batch negatives."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import require
from ..losses import nt_xent
from .base import Batch, Method
from .registry import register


@dataclass
class SimCLRParams:
    temperature: float = 0.5
    """0.5 in the HCL/DCL code (joshr17/HCL@7b4647f image/main.py), which the suite follows."""

    def __post_init__(self) -> None:
        require(self.temperature > 0, "temperature", "must be positive")


@register("simclr", SimCLRParams, "SimCLR: NT-Xent over the 2B-2 in-batch negatives")
class SimCLR(Method):
    def __init__(self, backbone, projector, params: SimCLRParams) -> None:
        super().__init__(backbone, projector)
        self.params = params

    def loss(self, batch: Batch) -> torch.Tensor:
        # The two views go through the network separately, so BatchNorm statistics are per view,
        # as in the HCL/DCL code (net(pos_1), net(pos_2)).
        return nt_xent(self.embed(batch.view1), self.embed(batch.view2), self.params.temperature)
