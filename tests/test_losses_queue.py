"""MoCo, Ring and MoCHi objectives against float64 loops over the queries of their formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from hardneg_bench.losses import mochi, mochi_negatives, moco, moco_ring


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def queue_reference(q, k, queue, temperature, ring=None, extra=None):
    """Per query: -log(e_p / (e_p + sum over its negatives)), e = exp(cosine / t); negatives are the
    whole queue, or the ring (sorted descending, [int(inner * int(outer * K)), int(outer * K))),
    plus ``extra[i]``'s vectors. Differentiable in q; k and queue enter as constants."""
    terms = []
    for i in range(q.shape[0]):
        qi = unit(q[i])
        sims = torch.stack([qi @ key for key in queue.detach()])
        if ring is not None:
            outer, inner = ring
            outer_size = int(outer * queue.shape[0])
            sims = torch.sort(sims, descending=True).values[int(inner * outer_size) : outer_size]
        if extra is not None:
            sims = torch.cat([sims, torch.stack([qi @ h for h in extra[i]])])
        e_p = torch.exp(qi @ unit(k[i].detach()) / temperature)
        terms.append(-torch.log(e_p / (e_p + torch.exp(sims / temperature).sum())))
    return torch.stack(terms).mean()


def inputs(batch=5, dim=8, size=40, seed=0):
    torch.manual_seed(seed)
    return torch.randn(batch, dim, dtype=torch.float64) * 2, torch.randn(batch, dim, dtype=torch.float64), F.normalize(torch.randn(size, dim, dtype=torch.float64), dim=1)


def value_and_grad(fn, q, *args):
    q = q.clone().requires_grad_()
    loss = fn(q, *args)
    loss.backward()
    return loss.detach(), q.grad


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_moco_matches_formula(temperature):
    q, k, queue = inputs(seed=1)
    ours, ours_grad = value_and_grad(moco, q, k, queue, temperature)
    ref, ref_grad = value_and_grad(queue_reference, q, k, queue, temperature)
    assert math.isclose(ours.item(), ref.item(), rel_tol=1e-9)
    assert torch.allclose(ours_grad, ref_grad, atol=1e-10)


@pytest.mark.parametrize("outer,inner,size", [(0.1, 0.1, 100), (0.5, 0.2, 40), (0.3, 0.0, 40), (1.0, 0.5, 33)])
def test_moco_ring_matches_formula(outer, inner, size):
    q, k, queue = inputs(size=size, seed=2)
    ours, ours_grad = value_and_grad(moco_ring, q, k, queue, 0.1, outer, inner)
    ref, ref_grad = value_and_grad(queue_reference, q, k, queue, 0.1, (outer, inner))
    assert math.isclose(ours.item(), ref.item(), rel_tol=1e-9)
    assert torch.allclose(ours_grad, ref_grad, atol=1e-10)


def test_special_cases_ring_and_mochi_reduce_to_moco():
    q, k, queue = inputs(seed=3)
    plain = moco(q, k, queue, 0.2)
    assert torch.allclose(moco_ring(q, k, queue, 0.2, outer=1.0, inner=0.0), plain)
    assert torch.allclose(mochi(q, k, queue, 0.2, n_hard=10, n_mix=0, n_mix_query=0), plain)
    assert not torch.allclose(moco_ring(q, k, queue, 0.2, outer=0.5, inner=0.1), plain)
    assert not torch.allclose(mochi(q, k, queue, 0.2, n_hard=10, n_mix=4, n_mix_query=4), plain)


def test_key_and_queue_get_no_gradient():
    q, k, queue = inputs(seed=4)
    q, k, queue = q.clone().requires_grad_(), k.clone().requires_grad_(), queue.clone().requires_grad_()
    for loss in (moco(q, k, queue, 0.2), moco_ring(q, k, queue, 0.2, 0.5, 0.1), mochi(q, k, queue, 0.2, 8, 3, 3)):
        grad_q, grad_k, grad_queue = torch.autograd.grad(loss, [q, k, queue], allow_unused=True)
        assert grad_q is not None and grad_k is None and grad_queue is None


def test_empty_ring_is_rejected():
    q, k, queue = inputs(size=20, seed=5)
    with pytest.raises(ValueError, match="ring"):
        moco_ring(q, k, queue, 0.2, outer=0.04, inner=0.0)
    with pytest.raises(ValueError, match="ring"):
        moco_ring(q, k, queue, 0.2, outer=0.5, inner=1.0)


def test_mochi_loss_is_moco_with_its_synthetic_negatives_appended():
    q, k, queue = inputs(batch=4, size=30, seed=6)
    mixed, with_query = mochi_negatives(q, queue, 6, 3, 2, torch.Generator().manual_seed(5))
    extra = torch.cat([mixed, with_query], dim=1)
    ours, ours_grad = value_and_grad(mochi, q, k, queue, 0.2, 6, 3, 2, torch.Generator().manual_seed(5))
    ref, ref_grad = value_and_grad(lambda q: queue_reference(q, k, queue, 0.2, extra=extra), q)
    assert math.isclose(ours.item(), ref.item(), rel_tol=1e-9)
    assert torch.allclose(ours_grad, ref_grad, atol=1e-10)


def decompose(h: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """Least-squares (x, y) with h ~ x a + y b, and the residual."""
    basis = torch.stack([a, b], dim=1)
    coef = torch.linalg.lstsq(basis, h.unsqueeze(1)).solution.squeeze(1)
    return coef[0].item(), coef[1].item(), (basis @ coef - h).norm().item()


def test_mochi_synthetic_negatives_are_unit_detached_and_built_from_the_hardest_keys():
    n_hard = 5
    q, _, queue = inputs(batch=3, dim=16, size=40, seed=7)
    q = q.clone().requires_grad_()
    mixed, with_query = mochi_negatives(q, queue, n_hard, n_mix=6, n_mix_query=6, generator=torch.Generator().manual_seed(0))
    assert mixed.shape == (3, 6, 16) and with_query.shape == (3, 6, 16)
    assert not mixed.requires_grad and not with_query.requires_grad
    assert torch.allclose(mixed.norm(dim=2), torch.ones(3, 6, dtype=torch.float64))
    assert torch.allclose(with_query.norm(dim=2), torch.ones(3, 6, dtype=torch.float64))
    qn = unit(q.detach())
    for i in range(3):
        hardest = (qn[i] @ queue.T).topk(n_hard).indices.tolist()
        others = [j for j in range(40) if j not in hardest]
        for h in mixed[i]:
            # a non-negative mix of two of the hardest keys (16-d random keys: no other pair fits)
            fits = [(x, y) for a in hardest for b in hardest for x, y, r in [decompose(h, queue[a], queue[b])] if r < 1e-9]
            assert fits and all(x >= -1e-9 and y >= -1e-9 for x, y in fits)
            # and no other key takes part in it
            assert all(abs(x) < 1e-9 for a in others for b in hardest for x, _, r in [decompose(h, queue[a], queue[b])] if r < 1e-9)
        for h in with_query[i]:
            # beta q + (1 - beta) n with n among the hardest and the query's share below 1/2
            fits = [(x, y) for n in hardest for x, y, r in [decompose(h, qn[i], queue[n])] if r < 1e-9]
            assert fits and all(0 <= x < y for x, y in fits)
