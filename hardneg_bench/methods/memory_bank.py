"""Memory banks: one stored unit embedding per training image (InsDis, CMC).

Each step's embeddings replace their images' entries after the optimizer step:
``entry <- normalise(m * entry + (1 - m) * normalise(z))``, with m = 0 in the Ring code (the entry
is overwritten) and 0.5 in InsDis and CMC. Entries start uniform in [-s, s], s = 1/sqrt(D/3),
L2-normalised (the Ring code's MemoryBank; CMC skips the normalisation, their norm is about 1).
The bank is a buffer, so it is saved in every checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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
