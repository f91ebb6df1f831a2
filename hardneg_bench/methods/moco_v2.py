"""MoCo-v2 (Chen et al. 2020): InfoNCE of each query against its key and the whole queue."""

from __future__ import annotations

from ..losses import moco
from .momentum_queue import MoCoParams, MomentumQueueMethod
from .registry import register


@register("moco-v2", MoCoParams, "MoCo-v2: momentum encoder and a queue of K keys as negatives")
class MoCoV2(MomentumQueueMethod):
    def objective(self, q, k, queue):
        return moco(q, k, queue, self.params.temperature)
