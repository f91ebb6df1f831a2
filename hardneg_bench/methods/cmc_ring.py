"""CMC with conditional negatives (Ring, Wu et al. 2021): each stream's negatives are drawn from
the ring of the other stream's bank. The Ring paper reports CMC + Ring, but its public code has
no CMC; this applies the code's IR-Ring sampling (instdisc.py ``NCERing``) to both of CMC's terms."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import cmc_ring
from .cmc import CMC, CMCParams
from .registry import Equivalent, reduces_to, register
from .ring_fractions import RingFractions


@dataclass
class CMCRingParams(CMCParams, RingFractions):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_ring()

    def equivalent_to(self, epochs: int) -> Equivalent | None:
        """CMC when the ring holds the whole bank, except that each stream draws its own negatives
        where CMC draws one set of images for both."""
        why = self.keeps_everything(epochs, "bank entry")
        return reduces_to("cmc", self, f"{why} (each stream draws its own negatives, CMC's share one draw)") if why else None


@register("cmc-ring", CMCRingParams, "Ring (Wu et al. 2021) on CMC: cross-view bank negatives sampled inside a similarity ring")
class CMCRing(CMC):
    def objective(self, z_l, z_ab, indices, bank_l, bank_ab):
        p = self.params
        return cmc_ring(z_l, z_ab, indices, bank_l, bank_ab, p.temperature, p.n_negatives, p.outer_at(self.epoch), p.inner)
