"""Contrastive objectives as pure, differentiable functions.

Each takes raw projector outputs (it L2-normalises them itself), holds no state, and computes in
float32 whatever the input precision, so it can be imported into any training loop::

    from hardneg_bench.losses import nt_xent
    loss = nt_xent(projector(backbone(view1)), projector(backbone(view2)), temperature=0.5)
"""

from __future__ import annotations

import math

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


def _in_batch_logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of the 2B anchors: its positive's logit s_p / t (2B,) and its 2B - 2 negatives'
    logits s_n / t (2B, 2B - 2), in the order of the concatenated views."""
    z = _normalized(torch.cat([z1, z2]))
    batch = z1.shape[0]
    logits = z @ z.T / temperature
    positives = torch.arange(2 * batch, device=z.device).roll(batch)
    rows = torch.arange(2 * batch, device=z.device)
    positive = logits[rows, positives]
    keep = torch.ones_like(logits, dtype=torch.bool)
    keep[rows, rows] = False
    keep[rows, positives] = False
    return positive, logits[keep].view(2 * batch, 2 * batch - 2)


def hcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float, tau_plus: float, beta: float) -> torch.Tensor:
    """Hard negative sampling (Robinson et al. 2021) as joshr17/HCL@7b4647f image/main.py computes it.

    Per anchor, with ``e = exp(s / t)`` over its N = 2B - 2 in-batch negatives:
    importance weights ``w_n = exp(beta * s_n / t)``, NOT detached (the official code
    back-propagates through them); reweighted mass ``R = N * sum(w e) / sum(w)``; debiased and
    clamped ``g = max((R - tau_plus * N * e_p) / (1 - tau_plus), N * exp(-1 / t))``;
    loss ``-log(e_p / (e_p + g))``, mean over the 2B anchors. ``beta = 0`` is :func:`dcl`.

    Computed in log space (softmax weights, logaddexp) so that large beta / t cannot overflow;
    the value and gradient are those of the formula above.
    """
    if not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")
    positive, negatives = _in_batch_logits(z1, z2, temperature)
    n = negatives.shape[1]
    weights = torch.softmax(beta * negatives, dim=1)  # w_n / sum(w)
    reweighted = n * (weights * negatives.exp()).sum(1)
    floor = n * math.exp(-1 / temperature)
    g = ((reweighted - tau_plus * n * positive.exp()) / (1 - tau_plus)).clamp_min(floor)
    return (torch.logaddexp(positive, g.log()) - positive).mean()


def dcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float, tau_plus: float) -> torch.Tensor:
    """Debiased contrastive loss (Chuang et al. 2020; not "decoupled" DCL) as chingyaoc/DCL@7d6345f
    computes it: ``g = max((sum_n e_n - tau_plus * N * e_p) / (1 - tau_plus), N * exp(-1 / t))``,
    loss ``-log(e_p / (e_p + g))``; ``tau_plus = 0`` gives :func:`nt_xent` (up to the floor,
    which the sum of N positive terms can only reach when every cosine is -1)."""
    return hcl(z1, z2, temperature, tau_plus, beta=0.0)
