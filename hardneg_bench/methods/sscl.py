"""SSCL, synthetic hard negatives (Dong et al.): mix the hardest in-batch negatives, then weight
and debias the union of real and synthetic negatives with HCL's estimator.

Defaults are the argument defaults of the authors' SimCLR_SSCL.py and its main script (reference
sheet B.6); the paper's per-dataset values are not verified.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import require
from ..losses import sscl
from .in_batch import InBatchMethod
from .registry import Equivalent, reduces_to, register


@dataclass
class SSCLParams:
    temperature: float = 0.5
    """Authors' code --temperature default."""
    tau_plus: float = 0.1
    """Authors' code --tau_plus default."""
    beta: float = 1.0
    """Authors' code --beta default."""
    n_hard: int = 64
    """Size S of each anchor's hard set: authors' code --s default."""
    n_synthetic: int = 32
    """Synthetic negatives K_syn per anchor: authors' code --k default."""

    def __post_init__(self) -> None:
        require(self.temperature > 0, "temperature", "must be positive")
        require(0 <= self.tau_plus < 1, "tau_plus", "must be in [0, 1)")
        require(self.beta >= 0, "beta", "must be >= 0")
        require(self.n_hard >= 1, "n_hard", "must be at least 1")
        require(self.n_synthetic >= 0, "n_synthetic", "must be >= 0")

    def equivalent_to(self, epochs: int) -> Equivalent | None:
        """HCL without synthetic negatives: the estimator over the real in-batch negatives alone."""
        if self.n_synthetic != 0:
            return None
        return reduces_to("hcl", self, "n_synthetic 0 adds no synthetic negative")


@register("sscl", SSCLParams, "Synthetic hard negatives (Dong et al.): mixed hardest in-batch negatives, HCL-weighted and debiased")
class SSCL(InBatchMethod):
    def objective(self, z1, z2):
        p = self.params
        return sscl(z1, z2, p.temperature, p.tau_plus, p.beta, p.n_hard, p.n_synthetic)
