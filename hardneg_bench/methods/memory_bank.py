"""Memory banks: one stored unit embedding per training image (InsDis, CMC).

Each step's embeddings replace their images' entries after the optimizer step:
``entry <- normalise(m * entry + (1 - m) * normalise(z))``, with m = 0 in the Ring code (the entry
is overwritten) and 0.5 in InsDis and CMC. Entries start uniform in [-s, s], s = 1/sqrt(D/3),
L2-normalised (the Ring code's MemoryBank; CMC skips the normalisation, their norm is about 1).
The bank is a buffer, so it is saved in every checkpoint. A step's embeddings are staged with the
loss (:meth:`MemoryBank.stage`) and written after the optimizer step (:meth:`MemoryBank.commit`).
The bank also remembers each entry's label (-1 until written or when unlabelled), which only the
hardness diagnostics read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import require
from .hardness import hardest_negatives


@dataclass
class BankParams:
    """What every memory-bank method has (subclasses give the defaults of their sources)."""

    temperature: float
    n_negatives: int
    """Bank entries drawn per anchor besides its own."""
    bank_momentum: float

    def __post_init__(self) -> None:
        require(self.temperature > 0, "temperature", "must be positive")
        require(self.n_negatives >= 1, "n_negatives", "must be at least 1")
        require(0 <= self.bank_momentum < 1, "bank_momentum", "must be in [0, 1)")


class MemoryBank(nn.Module):
    def __init__(self, size: int, dim: int, momentum: float) -> None:
        super().__init__()
        scale = 1 / math.sqrt(dim / 3)
        self.register_buffer("entries", F.normalize(torch.rand(size, dim) * 2 * scale - scale, dim=1))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.momentum = momentum
        self.staged: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None

    @torch.no_grad()
    def update(self, indices: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        mixed = self.momentum * self.entries[indices] + (1 - self.momentum) * F.normalize(z.float(), dim=1)
        self.entries[indices] = F.normalize(mixed, dim=1)
        if labels is not None:
            self.labels[indices] = labels

    def stage(self, indices: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Remember this step's embeddings (detached) for :meth:`commit`."""
        self.staged = (indices, z.detach(), labels)

    def commit(self) -> None:
        if self.staged is not None:
            self.update(*self.staged)
            self.staged = None

    @torch.no_grad()
    def hardness(self, z: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor, ring: tuple[float, float] | None) -> torch.Tensor:
        """Hardness sums of the anchors ``z`` against this bank (their own entries excluded)."""
        similarity = F.normalize(z.float(), dim=1) @ self.entries.T
        own = torch.zeros_like(similarity, dtype=torch.bool).scatter_(1, indices.view(-1, 1), True)
        return hardest_negatives(similarity, self.labels, labels, own, ring)
