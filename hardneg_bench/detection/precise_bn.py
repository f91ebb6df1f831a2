"""Precise BatchNorm: the statistics recomputed with the final weights before testing.

MoCo's configs enable detectron2's ``TEST.PRECISE_BN`` (facebookresearch/moco@132aea9
detection/configs/Base-RCNN-C4-BN.yaml lines 13-15), whose hook runs after the last iteration
(facebookresearch/detectron2@02b5c4e detectron2/engine/hooks.py ``PreciseBN``, on a fresh training
loader, the model in training mode) fvcore's ``update_bn_stats``. MoCo's code (2020-03) ran the
fvcore of its time (facebookresearch/fvcore@96ee7f1 fvcore/nn/precise_bn.py): every BatchNorm's
momentum set to 1, so that after each forward pass its running statistics are that batch's, and
the new statistics are the plain means of the batches' means and of their (unbiased) variances.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable, forward: Callable[[object], object]) -> int:
    """Set the running mean and variance of every BatchNorm of ``model`` that is in training mode
    (fvcore's ``get_bn_modules``) to the mean, over ``batches``, of what ``forward(batch)`` made
    them; returns the number of batches."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    momenta = [layer.momentum for layer in layers]
    means = [torch.zeros_like(layer.running_mean) for layer in layers]
    variances = [torch.zeros_like(layer.running_var) for layer in layers]
    for layer in layers:
        layer.momentum = 1.0
    count = 0
    try:
        for batch in batches:
            forward(batch)
            count += 1
            for layer, mean, variance in zip(layers, means, variances):
                mean += (layer.running_mean - mean) / count
                variance += (layer.running_var - variance) / count
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if count:
        for layer, mean, variance in zip(layers, means, variances):
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(variance)
    return count
