"""Contrastive objectives as pure, differentiable functions.

Each takes raw projector outputs (it L2-normalises them itself), holds no state, and computes in
float32 whatever the input precision, so it can be imported into any training loop::

    from hardneg_bench.losses import nt_xent
    loss = nt_xent(projector(backbone(view1)), projector(backbone(view2)), temperature=0.5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _normalized(z: torch.Tensor) -> torch.Tensor:
    return F.normalize(z.float(), dim=1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss for two views ``z1``, ``z2`` of shape (B, D).

    Every one of the 2B views is an anchor; its positive is the other view of the same image and
    its negatives are the other 2B - 2 views. Per anchor ``-log(e_p / (e_p + sum_n e_n))`` with
    ``e = exp(cosine / temperature)``; the mean is over all 2B anchors (HCL/DCL code, B.1 of the
    reference sheet).
    """
    z = _normalized(torch.cat([z1, z2]))
    batch = z1.shape[0]
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.arange(2 * batch, device=z.device).roll(batch)
    return F.cross_entropy(logits, positives)
