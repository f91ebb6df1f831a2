"""Hard negative sampling (Robinson et al. 2021) on the SimCLR/DCL framework.

Importance weights exp(beta * s / t) on the in-batch negatives, not detached (as the official
joshr17/HCL@7b4647f image/main.py computes them), on top of DCL's debiasing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import require
from ..losses import hcl
from .in_batch import InBatchMethod
from .registry import Equivalent, reduces_to, register


@dataclass
class HCLParams:
    temperature: float = 0.5
    """joshr17/HCL main.py --temperature default."""
    tau_plus: float = 0.1
    """joshr17/HCL main.py --tau_plus default."""
    beta: float = 1.0
    """Concentration of the weights, relative to the temperature (the code raises exp(s/t) to
    the power beta): joshr17/HCL main.py --beta default."""

    def __post_init__(self) -> None:
        require(self.temperature > 0, "temperature", "must be positive")
        require(0 <= self.tau_plus < 1, "tau_plus", "must be in [0, 1)")
        require(self.beta >= 0, "beta", "must be >= 0")

    def equivalent_to(self, epochs: int) -> Equivalent | None:
        """DCL at beta 0: equal weights on every negative (:func:`~hardneg_bench.losses.dcl` is
        :func:`~hardneg_bench.losses.hcl` at beta 0)."""
        if self.beta != 0:
            return None
        return reduces_to("dcl", self, "beta 0 weights every negative equally")


@register("hcl", HCLParams, "Hard negative sampling (Robinson et al. 2021): beta-weighted, debiased in-batch negatives")
class HCL(InBatchMethod):
    def objective(self, z1, z2):
        return hcl(z1, z2, self.params.temperature, self.params.tau_plus, self.params.beta)
