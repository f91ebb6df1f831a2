"""Contrastive objectives as pure, differentiable functions.

Each takes raw projector outputs (it L2-normalises them itself), holds no state, and computes in
float32 (float64 for float64 inputs; bf16/fp16 are promoted), so it can be imported into any
training loop::

    from hardneg_bench.losses import nt_xent
    loss = nt_xent(projector(backbone(view1)), projector(backbone(view2)), temperature=0.5)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


def _precise(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or float64 if it is float64 (bf16/fp16 inputs are promoted)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _normalized(z: torch.Tensor) -> torch.Tensor:
    return F.normalize(_precise(z), dim=1)


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


class _InBatch(NamedTuple):
    z: torch.Tensor
    """The 2B normalised views, view 1 then view 2."""
    positive: torch.Tensor
    """Each anchor's positive logit s_p / t, (2B,)."""
    negatives: torch.Tensor
    """Each anchor's 2B - 2 negative logits s_n / t, (2B, 2B - 2)."""
    negative_rows: torch.Tensor
    """The rows of ``z`` those negatives are, (2B, 2B - 2)."""


def _in_batch(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> _InBatch:
    z = _normalized(torch.cat([z1, z2]))
    batch = z1.shape[0]
    logits = z @ z.T / temperature
    rows = torch.arange(2 * batch, device=z.device)
    positives = rows.roll(batch)
    # Row i's negatives are the columns other than i and its positive, in increasing order: the
    # j-th of them is j, moved past the smaller excluded column, then past the larger one. Index
    # arithmetic instead of a boolean mask, whose indexing would make the host wait for the GPU.
    smaller, larger = torch.minimum(rows, positives).view(-1, 1), torch.maximum(rows, positives).view(-1, 1)
    columns = torch.arange(2 * batch - 2, device=z.device).expand(2 * batch, -1)
    columns = columns + (columns >= smaller)
    negative_rows = columns + (columns >= larger)
    return _InBatch(z, logits.gather(1, positives.view(-1, 1)).squeeze(1), logits.gather(1, negative_rows), negative_rows)


def _hard_debiased(positive: torch.Tensor, negatives: torch.Tensor, temperature: float, tau_plus: float, beta: float) -> torch.Tensor:
    """Per-anchor HCL estimator from the positive's logit s_p / t (A,) and the negatives' logits
    s_n / t (A, N): ``-log(e_p / (e_p + g))`` with
    ``g = max((N * sum(w e) / sum(w) - tau_plus * N * e_p) / (1 - tau_plus), N * exp(-1 / t))``,
    ``w = exp(beta * s_n / t)``. In log space (softmax weights, logaddexp) so that large beta / t
    cannot overflow."""
    if not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")
    n = negatives.shape[1]
    weights = torch.softmax(beta * negatives, dim=1)  # w_n / sum(w)
    reweighted = n * (weights * negatives.exp()).sum(1)
    floor = n * math.exp(-1 / temperature)
    g = ((reweighted - tau_plus * n * positive.exp()) / (1 - tau_plus)).clamp_min(floor)
    return torch.logaddexp(positive, g.log()) - positive


def hcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float, tau_plus: float, beta: float) -> torch.Tensor:
    """Hard negative sampling (Robinson et al. 2021) as joshr17/HCL@7b4647f image/main.py computes it.

    Per anchor, with ``e = exp(s / t)`` over its N = 2B - 2 in-batch negatives:
    importance weights ``w_n = exp(beta * s_n / t)``, NOT detached (the official code
    back-propagates through them); reweighted mass ``R = N * sum(w e) / sum(w)``; debiased and
    clamped ``g = max((R - tau_plus * N * e_p) / (1 - tau_plus), N * exp(-1 / t))``;
    loss ``-log(e_p / (e_p + g))``, mean over the 2B anchors. ``beta = 0`` is :func:`dcl`.
    """
    pairs = _in_batch(z1, z2, temperature)
    return _hard_debiased(pairs.positive, pairs.negatives, temperature, tau_plus, beta).mean()


def dcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float, tau_plus: float) -> torch.Tensor:
    """Debiased contrastive loss (Chuang et al. 2020; not "decoupled" DCL) as chingyaoc/DCL@7d6345f
    computes it: ``g = max((sum_n e_n - tau_plus * N * e_p) / (1 - tau_plus), N * exp(-1 / t))``,
    loss ``-log(e_p / (e_p + g))``; ``tau_plus = 0`` gives :func:`nt_xent` (up to the floor,
    which the sum of N positive terms can only reach when every cosine is -1)."""
    return hcl(z1, z2, temperature, tau_plus, beta=0.0)


def sscl(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    tau_plus: float,
    beta: float,
    n_hard: int = 64,
    n_synthetic: int = 32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Synthetic hard negatives (SSCL, Dong et al.) on the in-batch framework.

    Per anchor: its ``n_hard`` most similar in-batch negatives (the authors' ``--s``, 64) form
    the hard set; ``n_synthetic`` (``--k``, 32) synthetic negatives ``normalise(a n_i + (1 - a) n_j)``
    are mixed from random pairs of it (i, j uniform with replacement, a ~ U(0, 1)), detached;
    the loss is :func:`hcl`'s estimator over the union of the 2B - 2 real and the synthetic
    negatives (N = 2B - 2 + n_synthetic), whose logits do carry the anchor's gradient.
    The authors' SimCLR_SSCL.py builds the hard set and the HCL estimator this way; in its
    released snapshot the mixing line is commented out (each synthetic negative is one hard
    negative); we mix, as the paper describes.
    """
    pairs = _in_batch(z1, z2, temperature)
    anchors = pairs.z.shape[0]
    if not 1 <= n_hard <= anchors - 2:
        raise ValueError(f"n_hard must be in [1, {anchors - 2}] for a batch of {anchors // 2}, got {n_hard}")
    with torch.no_grad():
        hardest = pairs.negatives.topk(n_hard, dim=1).indices
        hard_rows = pairs.negative_rows.gather(1, hardest)  # (2B, n_hard) rows of z
        picks = torch.randint(0, n_hard, (2, anchors, n_synthetic), device=pairs.z.device, generator=generator)
        alpha = torch.rand(anchors, n_synthetic, 1, device=pairs.z.device, generator=generator)
        first, second = (pairs.z[hard_rows.gather(1, pick)] for pick in picks)
        synthetic = F.normalize(alpha * first + (1 - alpha) * second, dim=2)
    synthetic_logits = torch.einsum("ad,asd->as", pairs.z, synthetic) / temperature
    negatives = torch.cat([pairs.negatives, synthetic_logits], dim=1)
    return _hard_debiased(pairs.positive, negatives, temperature, tau_plus, beta).mean()


# --------------------------------------------------------------------------------------------
# MoCo family: a query q, its key k from the momentum encoder, a queue of past keys (K, D).
# k and the queue are constants: the queue is used as given (it holds unit vectors), q and k are
# normalised here, as facebookresearch/moco@132aea9 moco/builder.py does.


def _queue_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The normalised query, its positive logit q.k / t (B,) and its queue logits q.queue / t (B, K)."""
    q = _normalized(q)
    k = _normalized(k.detach())
    return q, (q * k).sum(1) / temperature, q @ _precise(queue.detach()).to(q.dtype).T / temperature


def _info_nce(positive: torch.Tensor, *negatives: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log softmax`` of the positive among [positive, negatives...] (cross-entropy
    with the positive as class 0)."""
    logits = torch.cat([positive.unsqueeze(1), *negatives], dim=1)
    return (torch.logsumexp(logits, dim=1) - positive).mean()


def moco(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: per query, its key against every key in the queue (He et al. 2020)."""
    _, positive, negatives = _queue_logits(q, k, queue, temperature)
    return _info_nce(positive, negatives)


def ring_negatives(logits: torch.Tensor, outer: float, inner: float) -> torch.Tensor:
    """The logits inside the similarity ring (Wu et al. 2021), per row: sort the candidates by
    similarity, keep the top ``int(outer * K)`` (the outer ball), then drop the top
    ``int(inner * outer ball)`` of those ("dynamic inner", which the official code forces).
    ``outer=1, inner=0`` keeps every candidate."""
    outer_size = int(outer * logits.shape[1])
    inner_size = int(inner * outer_size)
    if not 0 < outer <= 1 or not 0 <= inner < 1 or outer_size - inner_size < 1:
        raise ValueError(f"ring (outer={outer}, inner={inner}) of {logits.shape[1]} candidates is empty or out of range")
    return logits.topk(outer_size, dim=1).values[:, inner_size:]


def moco_ring(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float, outer: float = 0.1, inner: float = 0.1) -> torch.Tensor:
    """MoCo with conditional negatives (Ring, Wu et al. 2021) as mhw32/contrastive-ring-public@fb3e1c2
    src/objectives/moco.py ``MoCoRing`` computes it: every queue key inside the ring
    (:func:`ring_negatives`) is a negative, the positive logit is prepended, and the loss is
    ``-(s_p / t - logsumexp([s_p, ring] / t))``. ``outer=1, inner=0`` is :func:`moco`."""
    _, positive, negatives = _queue_logits(q, k, queue, temperature)
    return _info_nce(positive, ring_negatives(negatives, outer, inner))


def mochi_negatives(
    q: torch.Tensor, queue: torch.Tensor, n_hard: int, n_mix: int, n_mix_query: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCHi's synthetic negatives for each query (Kalantidis et al. 2020): from the ``n_hard``
    queue keys most similar to the (normalised) query, ``n_mix`` (s) mixes
    ``normalise(a n_i + (1 - a) n_j)`` of two of them (i, j uniform with replacement,
    a ~ U(0, 1)), and ``n_mix_query`` (s') mixes ``normalise(b q + (1 - b) n_i)`` with the query,
    b ~ U(0, 1/2): shapes (B, s, D) and (B, s', D), unit vectors, detached.

    There is no official MoCHi code; this follows the two re-implementations the reference sheet
    names (davidsvy/hard-negative-mixing src/moco.py and giakoumoglou/synco), which agree, and
    draws its random numbers in the same order as the first."""
    with torch.no_grad():
        q = _normalized(q)
        queue = _precise(queue).to(q.dtype)
        hardest = (q @ queue.T).topk(n_hard, dim=1).indices  # (B, N)
        batch, device = q.shape[0], q.device
        first, second = torch.randint(0, n_hard, (2, batch, n_mix), device=device, generator=generator)
        alpha = torch.rand(batch, n_mix, 1, device=device, generator=generator)
        mixed = alpha * queue[hardest.gather(1, first)] + (1 - alpha) * queue[hardest.gather(1, second)]
        picks = torch.randint(0, n_hard, (batch, n_mix_query), device=device, generator=generator)
        beta = 0.5 * torch.rand(batch, n_mix_query, 1, device=device, generator=generator)
        with_query = beta * q.unsqueeze(1) + (1 - beta) * queue[hardest.gather(1, picks)]
        return F.normalize(mixed, dim=2), F.normalize(with_query, dim=2)


def mochi(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
    n_hard: int,
    n_mix: int,
    n_mix_query: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MoCo with hard negative mixing (MoCHi (N, s, s')): the query's queue negatives plus its
    s + s' synthetic negatives of :func:`mochi_negatives`, which belong to this query only (they
    never enter the queue) and carry no gradient; the query's gradient flows through q.h.
    ``n_mix = n_mix_query = 0`` is :func:`moco`."""
    q_unit, positive, negatives = _queue_logits(q, k, queue, temperature)
    if n_mix == 0 and n_mix_query == 0:
        return _info_nce(positive, negatives)
    if not 1 <= n_hard <= queue.shape[0]:
        raise ValueError(f"n_hard must be in [1, {queue.shape[0]}] (the queue size), got {n_hard}")
    mixed, with_query = mochi_negatives(q, queue, n_hard, n_mix, n_mix_query, generator)
    synthetic = torch.cat([mixed, with_query], dim=1)
    return _info_nce(positive, negatives, torch.einsum("bd,bsd->bs", q_unit, synthetic) / temperature)


# --------------------------------------------------------------------------------------------
# Memory banks: one stored unit vector per training image (N, D), used as given (a constant).
# Each anchor contrasts with its own image's entry (the positive) and sampled entries.


def _bank_terms(
    z: torch.Tensor, indices: torch.Tensor, bank: torch.Tensor, temperature: float, n_negatives: int, ring: tuple[float, float] | None, picks: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Per anchor ``logsumexp([s_p, s_1 .. s_k] / t) - s_p / t``: the positive is the anchor's own
    bank entry; the k negatives are drawn uniformly with replacement from the whole bank (by
    ``picks`` if given), or from the ring of :func:`ring_negatives` when ``ring = (outer, inner)``."""
    z = _normalized(z)
    logits = z @ _precise(bank.detach()).to(z.dtype).T / temperature  # (B, N)
    positive = logits.gather(1, indices.view(-1, 1)).squeeze(1)
    candidates = logits if ring is None else ring_negatives(logits, *ring)
    if picks is None:
        picks = torch.randint(0, candidates.shape[1], (z.shape[0], n_negatives), device=z.device, generator=generator)
    logits = torch.cat([positive.unsqueeze(1), candidates.gather(1, picks)], dim=1)
    return torch.logsumexp(logits, dim=1) - positive


def ir(z: torch.Tensor, indices: torch.Tensor, bank: torch.Tensor, temperature: float, n_negatives: int = 4095, generator: torch.Generator | None = None) -> torch.Tensor:
    """Instance discrimination (InsDis, Wu et al. 2018) with the softmax loss, as the Ring code's
    ``NCE`` objective computes it (mhw32/contrastive-ring-public@fb3e1c2 src/objectives/instdisc.py):
    the anchor's own bank entry against ``n_negatives`` entries drawn uniformly from the bank
    (4095 there: k = 4096 including the positive)."""
    return _bank_terms(z, indices, bank, temperature, n_negatives, None, None, generator).mean()


def ir_ring(
    z: torch.Tensor, indices: torch.Tensor, bank: torch.Tensor, temperature: float, n_negatives: int = 4095, outer: float = 0.1, inner: float = 0.1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """IR with conditional negatives (``NCERing`` of the same file): the ``n_negatives`` are drawn
    uniformly with replacement from the ring of the whole bank (the anchor's own entry is a
    candidate, as there)."""
    return _bank_terms(z, indices, bank, temperature, n_negatives, (outer, inner), None, generator).mean()


def cmc(
    z_l: torch.Tensor, z_ab: torch.Tensor, indices: torch.Tensor, bank_l: torch.Tensor, bank_ab: torch.Tensor, temperature: float, n_negatives: int = 16384, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Contrastive multiview coding (Tian et al. 2020), softmax version, as HobbitLong/CMC@7b227be
    NCE/NCEAverage.py and NCECriterion.py compute it: the L view's embedding against the ab bank
    and the ab view's against the L bank, each with the image's own entry as positive and the
    same ``n_negatives`` uniformly drawn entries; the loss is the sum of the two cross-entropies."""
    picks = torch.randint(0, bank_l.shape[0], (z_l.shape[0], n_negatives), device=z_l.device, generator=generator)
    return (_bank_terms(z_l, indices, bank_ab, temperature, n_negatives, None, picks, None) + _bank_terms(z_ab, indices, bank_l, temperature, n_negatives, None, picks, None)).mean()


def cmc_ring(
    z_l: torch.Tensor,
    z_ab: torch.Tensor,
    indices: torch.Tensor,
    bank_l: torch.Tensor,
    bank_ab: torch.Tensor,
    temperature: float,
    n_negatives: int = 16384,
    outer: float = 0.1,
    inner: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """CMC with conditional negatives: each view's negatives are drawn from the ring of the other
    view's bank around it. The Ring paper reports CMC + Ring but its public code has none; this
    applies the code's IR-Ring sampling to each of CMC's two cross-view terms."""
    ring = (outer, inner)
    return (_bank_terms(z_l, indices, bank_ab, temperature, n_negatives, ring, None, generator) + _bank_terms(z_ab, indices, bank_l, temperature, n_negatives, ring, None, generator)).mean()
