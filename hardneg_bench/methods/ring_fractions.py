"""The similarity ring shared by the Ring methods (Wu et al. 2021): its two fractions, their
checks, and the optional annealing of the outer fraction."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import require


@dataclass
class RingFractions:
    outer: float = 0.1
    """Share of the candidates, ranked by similarity to the anchor, in the outer ball
    (mhw32/contrastive-ring-public@fb3e1c2 ``thres_outer`` default and every released config)."""
    inner: float = 0.1
    """Share of the outer ball removed from its top (``thres_inner``; the code forces this
    "dynamic inner" reading)."""
    anneal_epochs: int = 0
    """0 keeps the ring constant, as every released config does. Otherwise the outer fraction
    falls linearly from 1 to ``outer`` over this many epochs (the code's ``linear_anneal`` does so
    per step over ``max_anneal_epoch`` epochs; here it changes once per epoch)."""

    def check_ring(self) -> None:
        require(0 < self.outer <= 1, "outer", "must be in (0, 1]")
        require(0 <= self.inner < 1, "inner", "must be in [0, 1)")
        require(self.anneal_epochs >= 0, "anneal_epochs", "must be >= 0")

    def outer_at(self, epoch: int) -> float:
        """The outer fraction in force during ``epoch`` (0-based)."""
        if self.anneal_epochs == 0 or epoch >= self.anneal_epochs:
            return self.outer
        return 1.0 - (1.0 - self.outer) * epoch / self.anneal_epochs

    def keeps_everything(self, epochs: int, what: str, candidates: int | None = None) -> str | None:
        """Why the ring keeps every one of the ``candidates`` (None: of any number) as a negative
        in each of ``epochs`` epochs, cut as :func:`~hardneg_bench.losses.ring_negatives` cuts it,
        annealing included; None when it leaves some out in some epoch."""

        def whole(outer: float) -> bool:
            if candidates is None:
                return outer == 1 and self.inner == 0
            kept = int(outer * candidates)
            return kept == candidates and int(self.inner * kept) == 0

        if not all(whole(self.outer_at(epoch)) for epoch in range(epochs)):
            return None
        outer = f"outer {self.outer:g}" if self.anneal_epochs == 0 else f"outer annealed from 1 over {self.anneal_epochs} epochs"
        return f"its ring ({outer}, inner {self.inner:g}) keeps every {what} throughout the {epochs}-epoch run"
