"""Contrastive multiview coding (CMC, Tian et al. 2020) with memory banks, softmax version, as
HobbitLong/CMC@7b227be train_CMC.py, NCE/NCEAverage.py and models/resnet.py compute it.

One augmented view per image is converted to L*a*b*; an L encoder and an ab encoder (each a
half-width ResNet in CMC's ``ResNetV1``: ``model.width: 0.5``) with their own linear heads embed
it; each stream's embedding is contrasted against the other stream's bank (its own image's entry
against 16384 uniformly drawn ones, t = 0.07), and both banks take the new embeddings with
momentum 0.5. Evaluation uses the two streams' features concatenated, as CMC's linear probe does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..losses import cmc
from ..distributed import gather
from .base import Batch, Method, float32_objective, out_features
from .memory_bank import BankParams, MemoryBank
from .registry import register


@dataclass
class CMCParams(BankParams):
    temperature: float = 0.07
    """train_CMC.py --nce_t default (its README suggests 0.1 for STL-10)."""
    n_negatives: int = 16384
    """train_CMC.py --nce_k default."""
    bank_momentum: float = 0.5
    """train_CMC.py --nce_m default."""


@register("cmc", CMCParams, "CMC (Tian et al. 2020): L and ab streams contrasted through each other's memory bank")
class CMC(Method):
    views = 1
    lab_split = True

    def __init__(self, backbone, make_projector, params, dataset_size) -> None:
        super().__init__(backbone, make_projector, params, dataset_size)
        dim = out_features(self.projector[0])
        self.bank_l = MemoryBank(dataset_size, dim, params.bank_momentum)
        self.bank_ab = MemoryBank(dataset_size, dim, params.bank_momentum)

    def projection_head(self, make_projector):
        return nn.ModuleList([make_projector(self.backbone.l_stream.feature_dim), make_projector(self.backbone.ab_stream.feature_dim)])

    def objective(self, z_l, z_ab, indices, bank_l, bank_ab) -> torch.Tensor:
        return cmc(z_l, z_ab, indices, bank_l, bank_ab, self.params.temperature, self.params.n_negatives)

    def loss(self, batch: Batch) -> torch.Tensor:
        features_l, features_ab = self.backbone.streams(batch.view1)
        z_l, z_ab = gather(self.projector[0](features_l)), gather(self.projector[1](features_ab))
        with float32_objective(z_l):
            loss = self.objective(z_l.float(), z_ab.float(), batch.indices, self.bank_l.entries, self.bank_ab.entries)
        self.bank_l.stage(batch.indices, z_l, batch.labels)
        self.bank_ab.stage(batch.indices, z_ab, batch.labels)
        return loss

    def hardness(self, batch: Batch) -> torch.Tensor:
        """Each stream's anchors against the other stream's bank, as the objective contrasts them."""
        ring = self.negative_ring()
        z_l, z_ab = self.bank_l.staged[1], self.bank_ab.staged[1]
        return self.bank_ab.hardness(z_l, batch.indices, batch.labels, ring) + self.bank_l.hardness(z_ab, batch.indices, batch.labels, ring)

    def after_optimizer_step(self) -> None:
        self.bank_l.commit()
        self.bank_ab.commit()
