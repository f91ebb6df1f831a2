"""Ring / CNCE on MoCo-v2 (Wu et al. 2021, Algorithm 1): each query's negatives are the queue keys
inside its similarity ring, as mhw32/contrastive-ring-public@fb3e1c2 src/objectives/moco.py
``MoCoRing`` computes them.

Defaults are that code's: t = 0.07, m = 0.999, and K = 65536 (config moco_ring.json, while its
MoCo baseline moco.json uses 4096).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import moco_ring
from .momentum_queue import MoCoParams, MomentumQueueMethod
from .registry import Equivalent, reduces_to, register
from .ring_fractions import RingFractions


@dataclass
class RingParams(MoCoParams, RingFractions):
    temperature: float = 0.07
    """Ring code loss_params.t."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_ring()

    def equivalent_to(self, epochs: int) -> Equivalent | None:
        """MoCo-v2 when the ring holds the whole queue: :func:`~hardneg_bench.losses.moco_ring`
        then takes :func:`~hardneg_bench.losses.moco`'s negatives, sorted."""
        why = self.keeps_everything(epochs, "queue key", self.queue_size)
        return reduces_to("moco-v2", self, why) if why else None


@register("ring", RingParams, "Ring (Wu et al. 2021) on MoCo-v2: negatives restricted to a similarity ring of the queue")
class Ring(MomentumQueueMethod):
    def objective(self, q, k, queue):
        return moco_ring(q, k, queue, self.params.temperature, self.params.outer_at(self.epoch), self.params.inner)
