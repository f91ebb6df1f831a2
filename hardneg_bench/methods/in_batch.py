"""The SimCLR framework: two views of B images, each view's negatives are the other 2B - 2 views.
Methods on it (SimCLR, DCL, HCL, SSCL) differ only in their objective."""

from __future__ import annotations

import torch

from .base import Batch, Method


class InBatchMethod(Method):
    """Embeds both views and applies :meth:`objective` to the two (B, D) projections."""

    def objective(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        # The two views go through the network separately, so BatchNorm statistics are per view,
        # as in the HCL/DCL code (net(pos_1), net(pos_2)).
        return self.objective(self.embed(batch.view1), self.embed(batch.view2))
