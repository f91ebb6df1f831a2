"""detectron2's default solver, as MoCo's detection configs use it: SGD over parameter groups and
the learning rate of each iteration (warm-up, then steps).

``D2`` below is facebookresearch/detectron2@02b5c4e: ``solver/build.py`` (the optimizer and the
schedule) and ``config/defaults.py`` (the values). MoCo's configs set BASE_LR, IMS_PER_BATCH,
STEPS, MAX_ITER and WARMUP_ITERS only (facebookresearch/moco@132aea9 detection/configs/).
"""

from __future__ import annotations

import bisect

import torch
from torch import nn

from ..config import DetectionSchedule

MOMENTUM = 0.9
"""D2 defaults.py line 534 SOLVER.MOMENTUM (NESTEROV False, line 536)."""
WEIGHT_DECAY = 1e-4
"""D2 defaults.py line 538 SOLVER.WEIGHT_DECAY; biases too (WEIGHT_DECAY_BIAS None, line 577)."""
WEIGHT_DECAY_NORM = 0.0
"""D2 defaults.py line 541 SOLVER.WEIGHT_DECAY_NORM: no decay on normalisation layers' parameters."""
GAMMA = 0.1
"""D2 defaults.py line 543 SOLVER.GAMMA: the rate's factor at each step."""
WARMUP_FACTOR = 1.0 / 1000
"""D2 defaults.py line 549 SOLVER.WARMUP_FACTOR (WARMUP_METHOD linear, line 551)."""

NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,  # BatchNorm1d/2d/3d, SyncBatchNorm and ours (models/sync_batchnorm.py)
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
"""``norm_module_types`` of D2 build.py ``get_default_optimizer_params``."""


def lr_factor(iteration: int, schedule: DetectionSchedule) -> float:
    """The multiplier of the base rate at ``iteration`` (0-based): D2 build.py
    ``build_lr_scheduler`` (WarmupParamScheduler over MultiStepParamScheduler, stepped after every
    iteration by LRMultiplier). Inside the warm-up it rises linearly from WARMUP_FACTOR times the
    rate at iteration 0 to the rate at the warm-up's end; then it is GAMMA to the number of steps
    at or before ``iteration`` (``bisect_right``). detectron2 drops steps after MAX_ITER, which
    never apply."""
    stepped = GAMMA ** bisect.bisect_right(schedule.steps, iteration)
    if iteration >= schedule.warmup_iterations:
        return stepped
    start = WARMUP_FACTOR * GAMMA ** bisect.bisect_right(schedule.steps, 0)
    end = GAMMA ** bisect.bisect_right(schedule.steps, schedule.warmup_iterations)
    return start + (end - start) * iteration / schedule.warmup_iterations


def parameter_groups(model: nn.Module) -> list[dict]:
    """The trainable parameters in two groups, as D2 build.py ``get_default_optimizer_params``
    gives them: those of normalisation layers without weight decay, every other one (biases
    included) with WEIGHT_DECAY; each parameter once."""
    norms, others, seen = [], [], set()
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            if parameter.requires_grad and parameter not in seen:
                seen.add(parameter)
                (norms if isinstance(module, NORM_LAYERS) else others).append(parameter)
    return [{"params": others, "weight_decay": WEIGHT_DECAY}, {"params": norms, "weight_decay": WEIGHT_DECAY_NORM}]


def build_optimizer(model: nn.Module, lr: float) -> torch.optim.SGD:
    """SGD with momentum over :func:`parameter_groups` (D2 build.py ``build_optimizer``); PyTorch's
    fused kernel on a GPU (the same update)."""
    groups = parameter_groups(model)
    fused = groups[0]["params"][0].is_cuda
    return torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM, nesterov=False, fused=fused)
