"""IR with conditional negatives (Ring, Wu et al. 2021): the 4095 negatives are drawn from the
ring of the whole memory bank, as mhw32/contrastive-ring-public@fb3e1c2 src/objectives/instdisc.py
``NCERing`` draws them."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import ir_ring
from .ir import IR, IRParams
from .registry import Equivalent, reduces_to, register
from .ring_fractions import RingFractions


@dataclass
class IRRingParams(IRParams, RingFractions):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_ring()

    def equivalent_to(self, epochs: int) -> Equivalent | None:
        """IR when the ring holds the whole bank: the negatives are then drawn uniformly from every
        entry (in another order, so other draws than IR's from the same distribution)."""
        why = self.keeps_everything(epochs, "bank entry")
        return reduces_to("ir", self, why) if why else None


@register("ir-ring", IRRingParams, "Ring (Wu et al. 2021) on IR: bank negatives sampled inside a similarity ring")
class IRRing(IR):
    def objective(self, z, indices, bank):
        p = self.params
        return ir_ring(z, indices, bank, p.temperature, p.n_negatives, p.outer_at(self.epoch), p.inner)
