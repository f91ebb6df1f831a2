"""The objectives against an independent float64 computation of their formulas."""

import math

import pytest
import torch

from hardneg_bench.losses import _in_batch, dcl, hcl, nt_xent, sscl


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


def hcl_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float, tau_plus: float, beta: float) -> float:
    """HCL's per-anchor formula as a plain loop in float64 (B.3 of the reference sheet)."""
    views = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    batch = z1.shape[0]
    n = 2 * batch - 2
    total = 0.0
    for i, anchor in enumerate(views):
        positive = (i + batch) % (2 * batch)
        e_p = math.exp(float(anchor @ views[positive]) / temperature)
        sims = [float(anchor @ other) for j, other in enumerate(views) if j not in (i, positive)]
        e = [math.exp(s / temperature) for s in sims]
        w = [math.exp(beta * s / temperature) for s in sims]
        reweighted = n * sum(wi * ei for wi, ei in zip(w, e)) / sum(w)
        g = max((reweighted - tau_plus * n * e_p) / (1 - tau_plus), n * math.exp(-1 / temperature))
        total += -math.log(e_p / (e_p + g))
    return total / (2 * batch)


def hcl_official_style(z1: torch.Tensor, z2: torch.Tensor, temperature: float, tau_plus: float, beta: float) -> torch.Tensor:
    """The same objective written the way the official code writes it (exp, mask, imp = neg**beta,
    reweight by the mean weight, clamp), in float64, for gradients."""
    out = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    batch = z1.shape[0]
    neg = torch.exp(out @ out.T / temperature)
    mask = torch.ones_like(neg, dtype=torch.bool)
    for i in range(batch):
        mask[i, i] = mask[i + batch, i + batch] = mask[i, i + batch] = mask[i + batch, i] = False
    neg = neg.masked_select(mask).view(2 * batch, -1)
    pos = torch.exp((torch.nn.functional.normalize(z1.double(), dim=1) * torch.nn.functional.normalize(z2.double(), dim=1)).sum(-1) / temperature)
    pos = torch.cat([pos, pos])
    n = 2 * batch - 2
    imp = (beta * neg.log()).exp()
    reweight_neg = (imp * neg).sum(-1) / imp.mean(-1)
    ng = ((-tau_plus * n * pos + reweight_neg) / (1 - tau_plus)).clamp(min=n * math.e ** (-1 / temperature))
    return (-torch.log(pos / (pos + ng))).mean()


@pytest.mark.parametrize(
    "batch,dim,temperature,tau_plus,beta",
    [(3, 5, 0.5, 0.1, 1.0), (8, 16, 0.5, 0.0, 0.5), (6, 12, 0.2, 0.1, 2.0), (4, 8, 0.5, 0.05, 0.0), (5, 7, 0.1, 0.3, 6.0)],
)
def test_hcl_value_and_gradient_match_formula(batch, dim, temperature, tau_plus, beta):
    torch.manual_seed(batch + dim)
    z1, z2 = torch.randn(batch, dim, dtype=torch.float64), torch.randn(batch, dim, dtype=torch.float64)
    ours = hcl(z1, z2, temperature, tau_plus, beta)
    assert math.isclose(ours.item(), hcl_reference(z1, z2, temperature, tau_plus, beta), rel_tol=1e-5)
    a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    b1, b2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    hcl(a1, a2, temperature, tau_plus, beta).backward()
    hcl_official_style(b1, b2, temperature, tau_plus, beta).backward()
    assert torch.allclose(a1.grad.double(), b1.grad, atol=1e-5) and torch.allclose(a2.grad.double(), b2.grad, atol=1e-5)


def test_hcl_weights_carry_gradient():
    """The official code does not detach the importance weights: detaching them changes the gradient."""
    torch.manual_seed(7)
    z1, z2 = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    a = z1.clone().requires_grad_()
    hcl(a, z2, 0.5, 0.1, 2.0).backward()

    def detached_weights(z1, z2):
        pairs = _in_batch(z1, z2, 0.5)
        positive, negatives = pairs.positive, pairs.negatives
        weights = torch.softmax(2.0 * negatives, dim=1).detach()
        g = (((10 * (weights * negatives.exp()).sum(1)) - 0.1 * 10 * positive.exp()) / 0.9).clamp_min(10 * math.exp(-2))
        return (torch.logaddexp(positive, g.log()) - positive).mean()

    b = z1.clone().requires_grad_()
    detached_weights(b, z2).backward()
    assert torch.allclose(hcl(z1, z2, 0.5, 0.1, 2.0), detached_weights(z1, z2))
    assert not torch.allclose(a.grad, b.grad, atol=1e-4)


def test_special_cases_hcl_dcl_nt_xent():
    torch.manual_seed(8)
    z1, z2 = torch.randn(10, 6), torch.randn(10, 6)
    assert torch.allclose(hcl(z1, z2, 0.5, 0.1, 0.0), dcl(z1, z2, 0.5, 0.1))
    assert torch.allclose(dcl(z1, z2, 0.5, 0.0), nt_xent(z1, z2, 0.5), atol=1e-6)
    assert not torch.allclose(hcl(z1, z2, 0.5, 0.1, 1.0), dcl(z1, z2, 0.5, 0.1))


@pytest.mark.parametrize("temperature,beta", [(0.05, 10.0), (0.5, 10.0), (0.05, 0.0)])
def test_hcl_finite_at_extremes(temperature, beta):
    torch.manual_seed(9)
    z = torch.randn(8, 16)
    for z1, z2 in ((z, z.clone()), (z, -z), (torch.randn(8, 16), torch.randn(8, 16))):
        a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        loss = hcl(a1, a2, temperature, 0.1, beta)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(a1.grad).all() and torch.isfinite(a2.grad).all()


def test_tau_plus_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="tau_plus"):
        dcl(torch.randn(2, 3), torch.randn(2, 3), 0.5, 1.0)


def sscl_reference(z1, z2, temperature, tau_plus, beta, n_hard, n_synthetic, seed):
    """SSCL per anchor as a loop in float64 (reference sheet B.6): the n_hard most similar
    negatives, n_synthetic normalised mixes of random pairs of them (the random numbers drawn in
    the documented order: pair picks (2, 2B, K), then alpha (2B, K, 1)), HCL's estimator over
    real + synthetic negatives. Differentiable, for gradients."""
    views = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    batch, anchors = z1.shape[0], 2 * z1.shape[0]
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, n_hard, (2, anchors, n_synthetic), generator=generator)
    alpha = torch.rand(anchors, n_synthetic, 1, generator=generator, dtype=torch.float32).double()
    terms = []
    for i in range(anchors):
        positive = (i + batch) % anchors
        others = [j for j in range(anchors) if j not in (i, positive)]
        sims = torch.stack([views[i] @ views[j] for j in others])
        hard = [others[j] for j in sorted(range(len(others)), key=lambda j: -sims.detach()[j].item())[:n_hard]]
        synthetic = []
        for s in range(n_synthetic):
            a, b = views[hard[picks[0, i, s]]].detach(), views[hard[picks[1, i, s]]].detach()
            h = alpha[i, s] * a + (1 - alpha[i, s]) * b
            synthetic.append(views[i] @ (h / h.norm()))
        all_sims = torch.cat([sims, torch.stack(synthetic)]) if synthetic else sims
        n = len(all_sims)
        e, w = torch.exp(all_sims / temperature), torch.exp(beta * all_sims / temperature)
        e_p = torch.exp(views[i] @ views[positive] / temperature)
        g = torch.clamp((n * (w * e).sum() / w.sum() - tau_plus * n * e_p) / (1 - tau_plus), min=n * math.exp(-1 / temperature))
        terms.append(-torch.log(e_p / (e_p + g)))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("batch,dim,temperature,tau_plus,beta,n_hard,n_synthetic", [(4, 6, 0.5, 0.1, 1.0, 3, 5), (6, 8, 0.2, 0.0, 0.5, 10, 4), (5, 12, 0.5, 0.2, 2.0, 1, 3)])
def test_sscl_value_and_gradient_match_formula(batch, dim, temperature, tau_plus, beta, n_hard, n_synthetic):
    torch.manual_seed(batch * 7 + dim)
    z1, z2 = torch.randn(batch, dim, dtype=torch.float64), torch.randn(batch, dim, dtype=torch.float64)
    a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    b1, b2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ours = sscl(a1, a2, temperature, tau_plus, beta, n_hard, n_synthetic, generator=torch.Generator().manual_seed(11))
    expected = sscl_reference(b1, b2, temperature, tau_plus, beta, n_hard, n_synthetic, seed=11)
    assert math.isclose(ours.item(), expected.item(), rel_tol=1e-6)
    ours.backward()
    expected.backward()
    assert torch.allclose(a1.grad, b1.grad, atol=1e-8) and torch.allclose(a2.grad, b2.grad, atol=1e-8)


def test_sscl_without_synthetic_negatives_is_hcl_and_with_them_differs():
    torch.manual_seed(12)
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    assert torch.allclose(sscl(z1, z2, 0.5, 0.1, 1.0, 4, 0), hcl(z1, z2, 0.5, 0.1, 1.0))
    assert not torch.allclose(sscl(z1, z2, 0.5, 0.1, 1.0, 4, 8), hcl(z1, z2, 0.5, 0.1, 1.0))


def test_sscl_hard_set_larger_than_the_negatives_is_rejected():
    with pytest.raises(ValueError, match="n_hard"):
        sscl(torch.randn(4, 8), torch.randn(4, 8), 0.5, 0.1, 1.0, n_hard=7, n_synthetic=2)
