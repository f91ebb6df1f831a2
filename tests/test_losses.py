"""The objectives against an independent float64 computation of their formulas."""

import math

import pytest
import torch

from hardneg_bench.losses import nt_xent


def nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's per-anchor formula written as a plain loop over the 2B anchors, in float64."""
    views = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    batch = z1.shape[0]
    total = 0.0
    for i, anchor in enumerate(views):
        positive = (i + batch) % (2 * batch)
        e = [math.e ** (float(anchor @ other) / temperature) if j != i else 0.0 for j, other in enumerate(views)]
        e_p = math.e ** (float(anchor @ views[positive]) / temperature)
        negatives = sum(e) - e_p
        total += -math.log(e_p / (e_p + negatives))
    return torch.tensor(total / (2 * batch), dtype=torch.float64)


def autograd_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The same formula with tensor ops in float64 (for gradients): explicit sums, no cross-entropy."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    batch = z1.shape[0]
    e = torch.exp(z @ z.T / temperature)
    e_p = e[torch.arange(2 * batch), torch.arange(2 * batch).roll(batch)]
    negatives = e.sum(1) - e.diagonal() - e_p
    return -(torch.log(e_p / (e_p + negatives))).mean()


@pytest.mark.parametrize("batch,dim,temperature", [(2, 3, 0.5), (8, 16, 0.1), (5, 32, 0.07)])
def test_nt_xent_value_matches_formula(batch, dim, temperature):
    torch.manual_seed(batch * dim)
    z1, z2 = torch.randn(batch, dim) * 3, torch.randn(batch, dim) * 3
    expected = nt_xent_reference(z1, z2, temperature)
    assert torch.allclose(nt_xent(z1, z2, temperature).double(), expected, rtol=1e-5)


def test_nt_xent_gradients_match_formula():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 10, dtype=torch.float64), torch.randn(6, 10, dtype=torch.float64)
    a1, a2 = z1.clone().float().requires_grad_(), z2.clone().float().requires_grad_()
    b1, b2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    nt_xent(a1, a2, 0.2).backward()
    autograd_reference(b1, b2, 0.2).backward()
    assert torch.allclose(a1.grad.double(), b1.grad, atol=1e-5)
    assert torch.allclose(a2.grad.double(), b2.grad, atol=1e-5)


def test_nt_xent_is_scale_invariant_and_symmetric():
    torch.manual_seed(1)
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    loss = nt_xent(z1, z2, 0.5)
    assert torch.allclose(nt_xent(5 * z1, 0.1 * z2, 0.5), loss, atol=1e-6)
    assert torch.allclose(nt_xent(z2, z1, 0.5), loss, atol=1e-6)


def test_nt_xent_lower_when_views_agree():
    torch.manual_seed(2)
    z1 = torch.randn(16, 32)
    aligned = nt_xent(z1, z1 + 0.01 * torch.randn_like(z1), 0.5)
    unrelated = nt_xent(z1, torch.randn_like(z1), 0.5)
    assert aligned < unrelated


def test_nt_xent_bf16_inputs_computed_in_float32():
    torch.manual_seed(3)
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    low = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.5)
    assert low.dtype == torch.float32
    assert torch.allclose(low, nt_xent(z1, z2, 0.5), atol=2e-2)
