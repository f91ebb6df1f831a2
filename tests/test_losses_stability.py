"""Property tests (hypothesis): every objective is finite, with finite gradients, over random and
extreme inputs: tiny, huge and identical embeddings, temperatures down to 0.05, HCL/SSCL's beta
up to 10, tau_plus close to 1, bfloat16 inputs."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardneg_bench import losses

EXTREMES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def embeddings(draw, rows: int | None = None):
    """(rows, D) embeddings: random, all identical, or random at a tiny or huge scale; float32 or bf16."""
    n = rows or draw(st.integers(4, 9))
    d = draw(st.integers(2, 16))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    kind = draw(st.sampled_from(["random", "identical", "tiny", "huge"]))
    z = torch.randn(n, d, generator=generator)
    if kind == "identical":
        z = z[:1].expand(n, d).clone()
    scale = {"tiny": 1e-20, "huge": 1e20}.get(kind, 1.0)
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
    return (z * scale).to(dtype)


temperatures = st.floats(0.05, 1.0)
betas = st.floats(0.0, 10.0)
tau_pluses = st.floats(0.0, 0.99)


def assert_finite(loss: torch.Tensor, *inputs: torch.Tensor) -> None:
    assert loss.ndim == 0 and torch.isfinite(loss), loss
    loss.backward()
    for x in inputs:
        assert x.grad is not None and torch.isfinite(x.grad.float()).all()


def leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)



@EXTREMES
@given(embeddings(), embeddings(), temperatures, betas, tau_pluses)
def test_in_batch_objectives(z1, z2, temperature, beta, tau_plus):
    n = min(z1.shape[0], z2.shape[0])
    d = min(z1.shape[1], z2.shape[1])
    z1, z2 = z1[:n, :d], z2[:n, :d].to(z1.dtype)
    for objective in (
        lambda a, b: losses.nt_xent(a, b, temperature),
        lambda a, b: losses.dcl(a, b, temperature, tau_plus),
        lambda a, b: losses.hcl(a, b, temperature, tau_plus, beta),
        lambda a, b: losses.sscl(a, b, temperature, tau_plus, beta, n_hard=2, n_synthetic=3, generator=torch.Generator().manual_seed(0)),
    ):
        a, b = leaf(z1), leaf(z2)
        assert_finite(objective(a, b), a, b)


@EXTREMES
@given(embeddings(), embeddings(rows=32), temperatures, st.floats(0.05, 1.0), st.floats(0.0, 0.5))
def test_queue_objectives(q, queue, temperature, outer, inner):
    d = min(q.shape[1], queue.shape[1])
    q, queue = q[:, :d], queue[:, :d].to(q.dtype)
    k = torch.nn.functional.normalize(q.float().flip(0), dim=1)  # keys arrive normalised, float32
    queue = torch.nn.functional.normalize(queue.float(), dim=1)
    for objective in (
        lambda x: losses.moco(x, k, queue, temperature),
        lambda x: losses.moco_ring(x, k, queue, temperature, outer, inner),
        lambda x: losses.mochi(x, k, queue, temperature, n_hard=8, n_mix=4, n_mix_query=2, generator=torch.Generator().manual_seed(0)),
    ):
        x = leaf(q)
        assert_finite(objective(x), x)


@EXTREMES
@given(embeddings(), embeddings(rows=40), temperatures, st.floats(0.05, 1.0), st.floats(0.0, 0.5))
def test_bank_objectives(z, bank, temperature, outer, inner):
    d = min(z.shape[1], bank.shape[1])
    z, bank = z[:, :d], torch.nn.functional.normalize(bank[:, :d].float(), dim=1)
    indices = torch.arange(z.shape[0])
    for objective in (
        lambda x: losses.ir(x, indices, bank, temperature, n_negatives=16, generator=torch.Generator().manual_seed(0)),
        lambda x: losses.ir_ring(x, indices, bank, temperature, n_negatives=8, outer=outer, inner=inner, generator=torch.Generator().manual_seed(0)),
    ):
        x = leaf(z)
        assert_finite(objective(x), x)
    a, b = leaf(z), leaf(z.flip(0))
    assert_finite(losses.cmc(a, b, indices, bank, bank.flip(0), temperature, n_negatives=16, generator=torch.Generator().manual_seed(0)), a, b)
    a, b = leaf(z), leaf(z.flip(0))
    assert_finite(losses.cmc_ring(a, b, indices, bank, bank.flip(0), temperature, n_negatives=8, outer=outer, inner=inner, generator=torch.Generator().manual_seed(0)), a, b)
