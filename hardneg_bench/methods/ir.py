"""Instance discrimination (InsDis / IR, Wu et al. 2018) with a memory bank, as the Ring paper's
baseline: mhw32/contrastive-ring-public@fb3e1c2 src/objectives/instdisc.py ``NCE`` and
src/systems/systems.py ``PretrainNCESystem``. One augmented view per image; its embedding is
contrasted with its own bank entry against 4095 uniformly drawn entries (k = 4096), t = 0.07, and
written into the bank with momentum 0 (the original InsDis used 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import ir
from ..distributed import gather
from .base import Batch, Method, float32_objective, out_features
from .memory_bank import BankParams, MemoryBank
from .registry import register


@dataclass
class IRParams(BankParams):
    temperature: float = 0.07
    """Ring code loss_params.t (also InsDis's and CMC's nce_t)."""
    n_negatives: int = 4095
    """Sampled bank entries per anchor: the Ring code's k = 4096 minus the positive."""
    bank_momentum: float = 0.0
    """Ring code loss_params.m (InsDis: 0.5)."""


@register("ir", IRParams, "Instance discrimination (Wu et al. 2018): own memory-bank entry against sampled bank entries")
class IR(Method):
    views = 1

    def __init__(self, backbone, make_projector, params, dataset_size) -> None:
        super().__init__(backbone, make_projector, params, dataset_size)
        self.bank = MemoryBank(dataset_size, out_features(self.projector), params.bank_momentum)

    def objective(self, z: torch.Tensor, indices: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        return ir(z, indices, bank, self.params.temperature, self.params.n_negatives)

    def loss(self, batch: Batch) -> torch.Tensor:
        z = gather(self.embed(batch.view1))
        with float32_objective(z):
            loss = self.objective(z.float(), batch.indices, self.bank.entries)
        self.bank.stage(batch.indices, z, batch.labels)
        return loss

    def hardness(self, batch: Batch) -> torch.Tensor:
        _, z, _ = self.bank.staged
        return self.bank.hardness(z, batch.indices, batch.labels, self.negative_ring())

    def after_optimizer_step(self) -> None:
        self.bank.commit()
