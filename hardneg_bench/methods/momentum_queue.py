"""The MoCo framework: a query encoder trained by the loss, a key encoder that follows it as an
exponential moving average, and a queue of the last K keys as negatives
(facebookresearch/moco@132aea9 moco/builder.py).

The details other libraries' users tripped over (reference sheet, anchor_results.md):
- On one GPU the keys are shuffled before the key encoder and the backbones use BatchNorm over
  sub-batches (``model.bn_splits``, :mod:`hardneg_bench.models.split_batchnorm`), as MoCo's CIFAR
  demo does in place of multi-GPU shuffle-BN.
- A batch's keys are enqueued only after the loss that uses the queue (here: after the optimizer
  step), so no key is ever a negative of its own query.
- Queue, pointer and key encoder are buffers or modules of the method, so they are saved in
  every checkpoint and a resumed run continues with the same negatives.

The key encoder's momentum update happens right after each optimizer step; MoCo does it at the
start of the next forward pass, which is the same sequence of weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import require
from ..distributed import gather, shard
from .base import Batch, Method, float32_objective, out_features
from .hardness import hardest_negatives


@dataclass
class MoCoParams:
    temperature: float = 0.2
    """MoCo-v2 (facebookresearch/moco main_moco.py --moco-t 0.2 for v2)."""
    queue_size: int = 65536
    """K (main_moco.py --moco-k default)."""
    momentum: float = 0.999
    """Key-encoder EMA m (main_moco.py --moco-m default)."""

    def __post_init__(self) -> None:
        require(self.temperature > 0, "temperature", "must be positive")
        require(self.queue_size >= 1, "queue_size", "must be at least 1")
        require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")


class MomentumQueueMethod(Method):
    """Queries from ``view1`` through the trained encoder, keys from ``view2`` through the momentum
    encoder; subclasses define :meth:`objective` on (q, k, queue)."""

    def __init__(self, backbone, make_projector, params: MoCoParams, dataset_size: int) -> None:
        super().__init__(backbone, make_projector, params, dataset_size)
        self.key_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(params.queue_size, out_features(self.projector)), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_labels", torch.full((params.queue_size,), -1, dtype=torch.long))  # read by hardness only
        self._new_keys: tuple[torch.Tensor, torch.Tensor] | None = None

    def objective(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def keys(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised keys of the whole batch, computed on the shuffled batch so that (split or
        per-process) BatchNorm groups other images than the query encoder's, then put back in
        order: shuffle-BN, across processes when there are several."""
        images = gather(images)
        order = torch.randperm(images.shape[0], device=images.device)
        keys = self.key_projector(self.key_backbone(shard(images[order])))
        return gather(F.normalize(keys.float(), dim=1))[order.argsort()]

    def loss(self, batch: Batch) -> torch.Tensor:
        if batch.indices.shape[0] > self.queue.shape[0]:
            raise ValueError(f"queue_size {self.queue.shape[0]} is smaller than the batch of {batch.indices.shape[0]}")
        k = self.keys(batch.view2)
        q = gather(self.embed(batch.view1))
        with float32_objective(q):
            loss = self.objective(q.float(), k, self.queue)
        self._query = q.detach()
        self._new_keys = (k, batch.labels)
        return loss

    def hardness(self, batch: Batch) -> torch.Tensor:
        """Among the queue's keys (MoCHi's synthetic negatives are not counted)."""
        similarity = F.normalize(self._query.float(), dim=1) @ self.queue.T
        return hardest_negatives(similarity, self.queue_labels, batch.labels, None, self.negative_ring())

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        m = self.params.momentum
        for key_module, module in ((self.key_backbone, self.backbone), (self.key_projector, self.projector)):
            for key_param, param in zip(key_module.parameters(), module.parameters()):
                key_param.lerp_(param, 1 - m)
        if self._new_keys is not None:
            keys, labels = self._new_keys
            size = self.queue.shape[0]
            slots = (self.queue_pointer + torch.arange(keys.shape[0], device=self.queue.device)) % size
            self.queue[slots] = keys
            self.queue_labels[slots] = labels
            self.queue_pointer.copy_((self.queue_pointer + keys.shape[0]) % size)
            self._new_keys = None
