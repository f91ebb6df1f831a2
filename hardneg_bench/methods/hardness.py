"""Hardness diagnostics: which negatives a method leans on, measured with the labels it never sees.

For each labelled anchor of a training step, take the hardest negative the method's objective
uses — the most similar candidate, or for Ring the most similar one inside the ring — and record
whether it shares the anchor's class (a false negative) and its cosine similarity. ``chance`` is
the share of same-class candidates among those the objective draws from: the false-negative rate
of a uniformly drawn negative. Candidates without a label (unlabelled images, queue slots not
filled yet) are never chosen; anchors without a label are not counted.
"""

from __future__ import annotations

import torch

DIAGNOSTICS = ("hardest_same_class", "hardest_similarity", "chance_same_class")
"""What :meth:`HardnessTally.summary` reports per epoch."""


class HardnessTally:
    """Sums over the anchors counted so far (one epoch), kept on the device: (anchors, hardest
    same-class, hardest similarity, chance same-class), read back once by :meth:`summary`."""

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None

    def add(self, sums: torch.Tensor) -> None:
        self.sums = sums if self.sums is None else self.sums + sums

    def summary(self) -> dict[str, float]:
        """Per-anchor means: ``hardest_same_class`` (the false-negative rate), ``hardest_similarity``
        and ``chance_same_class``; empty when no anchor was labelled."""
        if self.sums is None:
            return {}
        anchors, same_class, similarity, chance = self.sums.tolist()
        if anchors == 0:
            return {}
        return dict(zip(DIAGNOSTICS, (same_class / anchors, similarity / anchors, chance / anchors)))


@torch.no_grad()
def hardest_negatives(
    similarity: torch.Tensor,
    candidate_labels: torch.Tensor,
    anchor_labels: torch.Tensor,
    exclude: torch.Tensor | None = None,
    ring: tuple[float, float] | None = None,
) -> torch.Tensor:
    """The (4,) sums that a :class:`HardnessTally` adds up, for ``similarity`` (B, M), the cosines
    of B anchors with M candidates whose labels are ``candidate_labels`` ((M,) or (B, M), -1
    unknown); ``exclude`` (B, M) marks candidates that are not negatives (the anchor itself, its
    positive); ``ring = (outer, inner)`` restricts the negatives to the ring of
    :func:`hardneg_bench.losses.ring_negatives`."""
    similarity = similarity.float()
    labels = candidate_labels.expand_as(similarity)
    unusable = labels < 0
    if exclude is not None:
        unusable = unusable | exclude
    same = labels == anchor_labels.view(-1, 1)
    if ring is None:
        allowed = ~unusable
    else:
        # rank all candidates by similarity, as the objective does, and keep the ranks in the ring
        outer, inner = ring
        size = max(1, int(outer * similarity.shape[1]))
        order = similarity.topk(size, dim=1).indices
        allowed = torch.zeros_like(unusable)
        allowed.scatter_(1, order[:, int(inner * size):], True)
        allowed &= ~unusable
    scores = similarity.masked_fill(~allowed, float("-inf"))
    best = scores.argmax(dim=1, keepdim=True)
    counted = ((anchor_labels >= 0) & allowed.any(dim=1)).float()
    chance = (same & allowed).float().sum(1) / allowed.float().sum(1).clamp_min(1)
    return torch.stack(
        [counted.sum(), (same.gather(1, best).squeeze(1).float() * counted).sum(), (similarity.gather(1, best).squeeze(1) * counted).sum(), (chance * counted).sum()]
    )
