"""MoCHi, hard negative mixing (Kalantidis et al. 2020) on MoCo-v2.

There is no official code. The objective follows the two re-implementations that agree
(davidsvy/hard-negative-mixing, giakoumoglou/synco; reference sheet B.4). The defaults (N, s, s')
= (1024, 256, 256) and the 10 warm-up epochs without synthetic negatives are SynCo's
(main_synco.py --n-hard, --n1, --warmup-epochs); the paper's own defaults are not verified.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import require
from ..losses import mochi
from .momentum_queue import MoCoParams, MomentumQueueMethod
from .registry import Equivalent, reduces_to, register


@dataclass
class MoCHiParams(MoCoParams):
    n_hard: int = 1024
    """N: the hardest queue keys each query's synthetic negatives are mixed from."""
    n_mix: int = 256
    """s: mixes of two hard keys per query."""
    n_mix_query: int = 256
    """s': mixes of the query with one hard key per query (query share below 1/2)."""
    warmup_epochs: int = 10
    """Epochs of plain MoCo before the synthetic negatives start."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(1 <= self.n_hard <= self.queue_size, "n_hard", f"must be in [1, queue_size={self.queue_size}]")
        require(self.n_mix >= 0, "n_mix", "must be >= 0")
        require(self.n_mix_query >= 0, "n_mix_query", "must be >= 0")
        require(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")

    def equivalent_to(self, epochs: int) -> Equivalent | None:
        """MoCo-v2 when no synthetic negative is ever mixed: :func:`~hardneg_bench.losses.mochi`
        without mixes is :func:`~hardneg_bench.losses.moco`'s loss."""
        if self.n_mix == 0 and self.n_mix_query == 0:
            why = "n_mix = n_mix_query = 0 mix no synthetic negative"
        elif self.warmup_epochs >= epochs:
            why = f"its {self.warmup_epochs}-epoch warm-up covers the whole {epochs}-epoch run, so no synthetic negative is mixed"
        else:
            return None
        return reduces_to("moco-v2", self, why)


@register("mochi", MoCHiParams, "MoCHi (Kalantidis et al. 2020): MoCo-v2 with synthetic negatives mixed from the hardest queue keys")
class MoCHi(MomentumQueueMethod):
    def objective(self, q, k, queue):
        p = self.params
        if self.epoch < p.warmup_epochs:
            return mochi(q, k, queue, p.temperature, p.n_hard, 0, 0)
        return mochi(q, k, queue, p.temperature, p.n_hard, p.n_mix, p.n_mix_query)
