"""The SimCLR framework: two views of B images, each view's negatives are the other 2B - 2 views.
Methods on it (SimCLR, DCL, HCL, SSCL) differ only in their objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather
from .base import Batch, Method, float32_objective
from .hardness import hardest_negatives


class InBatchMethod(Method):
    """Embeds both views and applies :meth:`objective` to the two (B, D) projections."""

    def objective(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        # The two views go through the network separately, so BatchNorm statistics are per view,
        # as in the HCL/DCL code (net(pos_1), net(pos_2)).
        z1, z2 = gather(self.embed(batch.view1)), gather(self.embed(batch.view2))
        self._embeddings = (z1.detach(), z2.detach())
        with float32_objective(z1):
            return self.objective(z1.float(), z2.float())

    def hardness(self, batch: Batch) -> torch.Tensor:
        """Among the 2B - 2 in-batch negatives of each view (SSCL's synthetic ones are not counted)."""
        z = F.normalize(torch.cat(self._embeddings).float(), dim=1)
        n = z.shape[0] // 2
        labels = torch.cat([batch.labels, batch.labels])
        same_image = torch.arange(2 * n, device=z.device) % n
        exclude = same_image.view(-1, 1) == same_image.view(1, -1)  # the anchor and its positive
        return hardest_negatives(z @ z.T, labels, labels, exclude)
