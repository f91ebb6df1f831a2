"""SimCLR (Chen et al. 2020) with the NT-Xent loss over the 2B - 2 in-batch negatives."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import require
from ..losses import nt_xent
from .in_batch import InBatchMethod
from .registry import register


@dataclass
class SimCLRParams:
    temperature: float = 0.5
    """0.5 in the HCL/DCL code (joshr17/HCL@7b4647f image/main.py), which the suite follows."""

    def __post_init__(self) -> None:
        require(self.temperature > 0, "temperature", "must be positive")


@register("simclr", SimCLRParams, "SimCLR: NT-Xent over the 2B-2 in-batch negatives")
class SimCLR(InBatchMethod):
    def objective(self, z1, z2):
        return nt_xent(z1, z2, self.params.temperature)
