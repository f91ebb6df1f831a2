"""Hardness diagnostics: the hardest negative a method uses, checked against a plain loop over
anchors, for the plain and the ring selection, and through each framework's plumbing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hardneg_bench.methods.hardness import HardnessTally, hardest_negatives
from test_methods import batch, make_method


def _by_loop(similarity, candidate_labels, anchor_labels, exclude, ring):
    anchors = same = sim_sum = chance_sum = 0.0
    B, M = similarity.shape
    for i in range(B):
        order = sorted(range(M), key=lambda j: -similarity[i, j].item())
        if ring is not None:
            size = max(1, int(ring[0] * M))
            pool = order[int(ring[1] * size):size]
        else:
            pool = order
        pool = [j for j in pool if candidate_labels[j] >= 0 and not (exclude is not None and exclude[i, j])]
        if anchor_labels[i] < 0 or not pool:
            continue
        hardest = max(pool, key=lambda j: similarity[i, j].item())
        anchors += 1
        same += float(candidate_labels[hardest] == anchor_labels[i])
        sim_sum += similarity[i, hardest].item()
        chance_sum += sum(float(candidate_labels[j] == anchor_labels[i]) for j in pool) / len(pool)
    return [anchors, same, sim_sum, chance_sum]


@pytest.mark.parametrize("ring", [None, (0.5, 0.2), (0.1, 0.1)])
@pytest.mark.parametrize("seed", range(3))
def test_hardest_negative_matches_a_loop_over_anchors(ring, seed):
    g = torch.Generator().manual_seed(seed)
    B, M = 7, 40
    similarity = torch.rand(B, M, generator=g) * 2 - 1
    candidate_labels = torch.randint(-1, 4, (M,), generator=g)
    anchor_labels = torch.randint(-1, 4, (B,), generator=g)
    exclude = torch.rand(B, M, generator=g) < 0.1
    got = hardest_negatives(similarity, candidate_labels, anchor_labels, exclude, ring)
    assert got.tolist() == pytest.approx(_by_loop(similarity, candidate_labels, anchor_labels, exclude, ring), abs=1e-5)


def test_tally_means_over_counted_anchors():
    tally = HardnessTally()
    assert tally.summary() == {}
    tally.add(torch.tensor([2.0, 1.0, 1.2, 0.4]))
    tally.add(torch.tensor([2.0, 2.0, 0.4, 0.2]))
    assert tally.summary() == pytest.approx({"hardest_same_class": 0.75, "hardest_similarity": 0.4, "chance_same_class": 0.15})


def test_in_batch_hardness_excludes_the_anchor_and_its_positive():
    torch.manual_seed(0)
    method = make_method("simclr")
    b = batch(size=6)
    b.labels = torch.tensor([0, 1, 0, 1, 2, 2])
    method.loss(b)
    z1, z2 = method._embeddings
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    labels = torch.cat([b.labels, b.labels])
    exclude = torch.zeros(12, 12, dtype=torch.bool)
    for i in range(12):
        exclude[i, i] = exclude[i, (i + 6) % 12] = True
    assert method.hardness(b).tolist() == pytest.approx(_by_loop(z @ z.T, labels, labels, exclude, None), abs=1e-5)


@pytest.mark.parametrize("name, params", [("moco-v2", {"queue_size": 16}), ("ring", {"queue_size": 16, "outer": 0.5, "inner": 0.25})])
def test_queue_hardness_reads_the_labels_of_enqueued_keys(name, params):
    torch.manual_seed(0)
    method = make_method(name, **params)
    b = batch(size=4)
    b.labels = torch.tensor([0, 1, 2, 3])
    method.loss(b)
    assert method.hardness(b)[0] == 0  # an empty queue (no labelled key yet): no anchor counted
    method.after_optimizer_step()
    method.loss(b)
    similarity = F.normalize(method._query, dim=1) @ method.queue.T
    ring = (params["outer"], params["inner"]) if name == "ring" else None
    assert method.hardness(b).tolist() == pytest.approx(_by_loop(similarity, method.queue_labels, b.labels, None, ring), abs=1e-5)


def test_bank_hardness_excludes_the_own_entry():
    torch.manual_seed(0)
    method = make_method("ir", n_negatives=5, bank_momentum=0.0)
    b = batch(size=4)
    b.labels = torch.tensor([0, 1, 0, 1])
    method.loss(b)
    method.after_optimizer_step()  # the four entries now carry their labels
    method.loss(b)
    z = F.normalize(method.bank.staged[1], dim=1)
    exclude = torch.zeros(4, method.bank.entries.shape[0], dtype=torch.bool)
    exclude[torch.arange(4), b.indices] = True
    expected = _by_loop(z @ method.bank.entries.T, method.bank.labels, b.labels, exclude, None)
    assert expected[0] == 4 and method.hardness(b).tolist() == pytest.approx(expected, abs=1e-5)
