"""Optimizers (SGD, Adam, LARS) and per-step learning-rate schedules (constant, cosine, step,
with linear warm-up)."""

from __future__ import annotations

import math
import torch
from torch import nn

from ..config import OptimizerConfig, ScheduleConfig


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio (You et al. 2017), as SimCLR uses it:
    weight decay and the trust ratio apply only to parameter groups with ``lars=True`` (weights of
    convolutions and linear layers), not to biases and BatchNorm parameters."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float, trust_coefficient: float) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, lars=True, trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["lars"]:  # multi-tensor ops: a handful of kernels for the whole model
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
                param_norms, grad_norms = torch.stack(torch._foreach_norm(params)), torch.stack(torch._foreach_norm(grads))
                trust = torch.where((param_norms > 0) & (grad_norms > 0), group["trust_coefficient"] * param_norms / grad_norms, torch.ones_like(param_norms))
                torch._foreach_mul_(grads, list(trust.unbind()))
            buffers = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]  # first step: buffer = grad
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, grads)
            torch._foreach_add_(params, buffers, alpha=-group["lr"])
        return loss


def _split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights of multi-dimensional layers, biases and normalisation parameters)."""
    weights, others = [], []
    for p in model.parameters():
        if p.requires_grad:
            (weights if p.ndim > 1 else others).append(p)
    return weights, others


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured optimizer over ``model``'s trainable parameters. SGD and Adam decay every
    parameter, as the papers' code does; LARS excludes biases and BatchNorm. On a GPU, SGD and Adam
    use PyTorch's fused kernels."""
    params: list = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and params[0].is_cuda  # one kernel per step for the whole model on a GPU
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, fused=fused)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    weights, others = _split_decay(model)
    groups = [{"params": weights}, {"params": others, "lars": False, "weight_decay": 0.0}]
    return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, trust_coefficient=cfg.lars_trust_coefficient)


def lr_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    epoch = step / steps_per_epoch
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * epoch / cfg.warmup_epochs
    if cfg.name == "cosine":
        span = max(epochs - cfg.warmup_epochs, 1e-12)
        progress = min((epoch - cfg.warmup_epochs) / span, 1.0)
        return cfg.final_lr_factor + (1 - cfg.final_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.name == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return 1.0


def build_schedule(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int):
    """A LambdaLR stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch, epochs))
