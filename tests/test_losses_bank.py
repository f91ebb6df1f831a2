"""IR, IR-Ring, CMC and CMC-Ring objectives against float64 loops over the anchors."""

import math

import pytest
import torch
import torch.nn.functional as F

from hardneg_bench.losses import cmc, cmc_ring, ir, ir_ring


def bank_term(z, index, bank, temperature, picks, ring=None):
    """One anchor: -log(e_p / (e_p + sum_j e_j)), e = exp(z.entry / t); the positive is the
    anchor's own bank entry; entries j are ``picks`` into the bank, or into its ring (the bank's
    similarities sorted descending, [int(inner * int(outer * N)), int(outer * N)))."""
    zi = z / z.norm()
    sims = torch.stack([zi @ entry for entry in bank])
    candidates = sims
    if ring is not None:
        outer_size = int(ring[0] * bank.shape[0])
        candidates = torch.sort(sims, descending=True).values[int(ring[1] * outer_size) : outer_size]
    e_p = torch.exp(sims[index] / temperature)
    return -torch.log(e_p / (e_p + torch.exp(candidates[picks] / temperature).sum()))


def draws(generator_seed, *shapes_and_highs):
    """The uniform picks the objectives draw, in their order, from a generator with this seed."""
    generator = torch.Generator().manual_seed(generator_seed)
    return [torch.randint(0, high, shape, generator=generator) for shape, high in shapes_and_highs]


def setup(batch=4, dim=6, size=30, seed=0):
    torch.manual_seed(seed)
    z = torch.randn(batch, dim, dtype=torch.float64, requires_grad=True)
    z_other = torch.randn(batch, dim, dtype=torch.float64, requires_grad=True)
    banks = F.normalize(torch.randn(2, size, dim, dtype=torch.float64), dim=2)
    indices = torch.randperm(size)[:batch]
    return z, z_other, banks[0], banks[1], indices


def check(ours, reference, inputs):
    assert math.isclose(ours.item(), reference.item(), rel_tol=1e-9)
    for g_ours, g_ref in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(reference, inputs)):
        assert torch.allclose(g_ours, g_ref, atol=1e-10)


@pytest.mark.parametrize("n_negatives,temperature", [(7, 0.07), (50, 0.5)])
def test_ir_matches_formula(n_negatives, temperature):
    z, _, bank, _, indices = setup(seed=1)
    (picks,) = draws(3, ((4, n_negatives), 30))
    ours = ir(z, indices, bank, temperature, n_negatives, torch.Generator().manual_seed(3))
    reference = torch.stack([bank_term(z[i], indices[i], bank, temperature, picks[i]) for i in range(4)]).mean()
    check(ours, reference, [z])


@pytest.mark.parametrize("outer,inner", [(0.5, 0.2), (0.1, 0.0), (1.0, 0.3)])
def test_ir_ring_matches_formula(outer, inner):
    z, _, bank, _, indices = setup(size=60, seed=2)
    ring_size = int(outer * 60) - int(inner * int(outer * 60))
    (picks,) = draws(4, ((4, 9), ring_size))
    ours = ir_ring(z, indices, bank, 0.1, 9, outer, inner, torch.Generator().manual_seed(4))
    reference = torch.stack([bank_term(z[i], indices[i], bank, 0.1, picks[i], (outer, inner)) for i in range(4)]).mean()
    check(ours, reference, [z])


def test_cmc_matches_formula_with_one_draw_for_both_views():
    z_l, z_ab, bank_l, bank_ab, indices = setup(seed=5)
    (picks,) = draws(6, ((4, 11), 30))
    ours = cmc(z_l, z_ab, indices, bank_l, bank_ab, 0.07, 11, torch.Generator().manual_seed(6))
    reference = torch.stack(
        [bank_term(z_l[i], indices[i], bank_ab, 0.07, picks[i]) + bank_term(z_ab[i], indices[i], bank_l, 0.07, picks[i]) for i in range(4)]
    ).mean()
    check(ours, reference, [z_l, z_ab])


def test_cmc_ring_matches_formula():
    z_l, z_ab, bank_l, bank_ab, indices = setup(size=40, seed=7)
    ring_size = 20 - 2  # outer 0.5 of 40, inner 0.1 of that
    picks_l, picks_ab = draws(8, ((4, 5), ring_size), ((4, 5), ring_size))
    ours = cmc_ring(z_l, z_ab, indices, bank_l, bank_ab, 0.2, 5, 0.5, 0.1, torch.Generator().manual_seed(8))
    reference = torch.stack(
        [
            bank_term(z_l[i], indices[i], bank_ab, 0.2, picks_l[i], (0.5, 0.1)) + bank_term(z_ab[i], indices[i], bank_l, 0.2, picks_ab[i], (0.5, 0.1))
            for i in range(4)
        ]
    ).mean()
    check(ours, reference, [z_l, z_ab])


def test_banks_get_no_gradient():
    z, z_other, bank_l, bank_ab, indices = setup(seed=9)
    bank_l, bank_ab = bank_l.clone().requires_grad_(), bank_ab.clone().requires_grad_()
    for loss in (ir(z, indices, bank_l, 0.1, 5), ir_ring(z, indices, bank_l, 0.1, 5, 0.5, 0.1), cmc(z, z_other, indices, bank_l, bank_ab, 0.1, 5)):
        assert all(g is None for g in torch.autograd.grad(loss, [bank_l, bank_ab], allow_unused=True))


def test_ir_ring_negatives_come_from_the_ring_only():
    """With a bank whose ring is known, only ring entries can be drawn: an anchor equal to bank
    entry 0 whose ring (outer 0.5, inner 0.2 of 20 entries) holds entries at similarity 0.5."""
    anchor = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    angle = lambda c: torch.tensor([c, math.sqrt(1 - c * c), 0.0, 0.0], dtype=torch.float64)  # noqa: E731
    bank = torch.stack([angle(1.0), angle(0.9)] + [angle(0.5)] * 8 + [angle(-0.5)] * 10)
    loss = ir_ring(anchor, torch.tensor([0]), bank, 1.0, n_negatives=6, outer=0.5, inner=0.2)
    expected = math.log(math.e + 6 * math.exp(0.5)) - 1.0
    assert math.isclose(loss.item(), expected, rel_tol=1e-12)
