"""Learning-rate schedules and the LARS optimizer against their definitions."""

import math

import pytest
import torch
from torch import nn

from hardneg_bench.config import OptimizerConfig, ScheduleConfig
from hardneg_bench.engine.optim import LARS, build_optimizer, build_schedule, lr_factor


def test_cosine_with_warmup():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=2, warmup_start_factor=0.1, final_lr_factor=0.0)
    steps, epochs = 10, 12
    assert lr_factor(cfg, 0, steps, epochs) == pytest.approx(0.1)
    assert lr_factor(cfg, 10, steps, epochs) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cfg, 20, steps, epochs) == pytest.approx(1.0)
    assert lr_factor(cfg, 70, steps, epochs) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(cfg, 120, steps, epochs) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_decays_at_milestones():
    cfg = ScheduleConfig(name="step", milestones=(60, 80), gamma=0.1)
    assert lr_factor(cfg, 59 * 5 + 4, 5, 100) == 1.0
    assert lr_factor(cfg, 60 * 5, 5, 100) == pytest.approx(0.1)
    assert lr_factor(cfg, 80 * 5, 5, 100) == pytest.approx(0.01)


def test_schedule_drives_the_optimizer_per_step():
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, OptimizerConfig(name="sgd", lr=0.4))
    schedule = build_schedule(optimizer, ScheduleConfig(name="cosine"), steps_per_epoch=4, epochs=2)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen[0] == pytest.approx(0.4)
    assert seen[4] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(seen, seen[1:]))


def test_lars_step_matches_its_definition():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    cfg = OptimizerConfig(name="lars", lr=0.5, momentum=0.9, weight_decay=1e-2, lars_trust_coefficient=0.001)
    optimizer = build_optimizer(model, cfg)
    assert isinstance(optimizer, LARS)
    weight, bias = model[0].weight, model[0].bias
    before_w, before_b = weight.detach().clone(), bias.detach().clone()
    model(torch.randn(8, 4)).pow(2).sum().backward()
    grad_w, grad_b = weight.grad.clone(), bias.grad.clone()
    optimizer.step()
    update = grad_w + 1e-2 * before_w
    trust = 0.001 * before_w.norm() / update.norm()
    assert torch.allclose(weight.detach(), before_w - 0.5 * trust * update, atol=1e-6)
    # biases and BatchNorm parameters: plain SGD, no decay, no trust ratio
    assert torch.allclose(bias.detach(), before_b - 0.5 * grad_b, atol=1e-6)
    assert torch.equal(weight.grad, grad_w)  # the gradients themselves are left as they were
    # second step: momentum buffer = 0.9 * first update + this update
    first_w, first_b = trust * update, grad_b
    w1, b1 = weight.detach().clone(), bias.detach().clone()
    optimizer.zero_grad()
    model(torch.randn(8, 4)).pow(2).sum().backward()
    update2 = weight.grad + 1e-2 * w1
    trust2 = 0.001 * w1.norm() / update2.norm()
    optimizer.step()
    assert torch.allclose(weight.detach(), w1 - 0.5 * (0.9 * first_w + trust2 * update2), atol=1e-6)
    assert torch.allclose(bias.detach(), b1 - 0.5 * (0.9 * first_b + bias.grad), atol=1e-6)


def test_adam_and_sgd_decay_every_parameter():
    model = nn.Linear(3, 1)
    for name in ("sgd", "adam"):
        optimizer = build_optimizer(model, OptimizerConfig(name=name, weight_decay=0.1))
        assert all(group["weight_decay"] == 0.1 for group in optimizer.param_groups)
