"""Memory banks: one stored unit embedding per training image (InsDis, CMC).

Each step's embeddings replace their images' entries after the optimizer step:
``entry <- normalise(m * entry + (1 - m) * normalise(z))``, with m = 0 in the Ring code (the entry
is overwritten) and 0.5 in InsDis and CMC. Entries start uniform in [-s, s], s = 1/sqrt(D/3),
L2-normalised (the Ring code's MemoryBank; CMC skips the normalisation, their norm is about 1).
The bank is a buffer, so it is saved in every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import require


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
        self.momentum = momentum

    @torch.no_grad()
    def update(self, indices: torch.Tensor, z: torch.Tensor) -> None:
        mixed = self.momentum * self.entries[indices] + (1 - self.momentum) * F.normalize(z.float(), dim=1)
        self.entries[indices] = F.normalize(mixed, dim=1)
