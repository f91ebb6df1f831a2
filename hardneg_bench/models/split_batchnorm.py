"""BatchNorm over sub-batches: MoCo's one-GPU stand-in for shuffle-BN.

With several GPUs, MoCo shuffles the keys across GPUs so that the key encoder's BatchNorm
statistics come from other images than the query's; otherwise the query can find its key through
the batch statistics and the model learns less. On one GPU, MoCo's official CIFAR-10 demo
(facebookresearch/moco, colab/moco_cifar10_demo.ipynb, ``SplitBatchNorm``) normalises each of
``num_splits`` sub-batches with its own statistics and shuffles the keys before the key encoder;
without it the demo loses about 4 points (reference sheet, anchor_results.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SplitBatchNorm2d(nn.BatchNorm2d):
    """In training, images ``i`` with the same ``i % num_splits`` form one sub-batch normalised
    with its own statistics; running statistics are the mean over sub-batches. In evaluation it
    is a plain BatchNorm2d, and its state dict is one too."""

    def __init__(self, num_features: int, num_splits: int) -> None:
        super().__init__(num_features)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        s = self.num_splits
        if n % s:
            raise ValueError(f"batch of {n} cannot be split into {s} BatchNorm sub-batches")
        running_mean, running_var = self.running_mean.repeat(s), self.running_var.repeat(s)
        out = F.batch_norm(
            x.reshape(n // s, c * s, h, w), running_mean, running_var, self.weight.repeat(s), self.bias.repeat(s), True, self.momentum, self.eps
        ).reshape(n, c, h, w)
        with torch.no_grad():
            self.running_mean.copy_(running_mean.view(s, c).mean(0))
            self.running_var.copy_(running_var.view(s, c).mean(0))
            self.num_batches_tracked += 1
        return out
