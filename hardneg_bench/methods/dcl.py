"""Debiased Contrastive Learning (Chuang et al. 2020) on the SimCLR framework.

Not the "decoupled" contrastive loss that some libraries call DCL: this is the debiased negative
term with class prior tau+ and the N * exp(-1/t) floor of chingyaoc/DCL@7d6345f main.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import require
from ..losses import dcl
from .in_batch import InBatchMethod
from .registry import Equivalent, reduces_to, register


@dataclass
class DCLParams:
    temperature: float = 0.5
    """chingyaoc/DCL main.py --temperature default."""
    tau_plus: float = 0.1
    """Class prior tau+: chingyaoc/DCL main.py --tau_plus default."""

    def __post_init__(self) -> None:
        require(self.temperature > 0, "temperature", "must be positive")
        require(0 <= self.tau_plus < 1, "tau_plus", "must be in [0, 1)")

    def equivalent_to(self, epochs: int) -> Equivalent | None:
        """SimCLR at tau+ 0: no debiasing, and the floor N exp(-1/t) never exceeds the sum of the
        N negatives' exp(s/t) (every cosine is at least -1), so the loss is NT-Xent's."""
        if self.tau_plus != 0:
            return None
        return reduces_to("simclr", self, "tau_plus 0 removes the debiasing")


@register("dcl", DCLParams, "Debiased contrastive loss (Chuang et al. 2020): tau+ debiasing of the in-batch negatives")
class DCL(InBatchMethod):
    def objective(self, z1, z2):
        return dcl(z1, z2, self.params.temperature, self.params.tau_plus)
