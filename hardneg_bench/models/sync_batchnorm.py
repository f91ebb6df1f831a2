"""BatchNorm over a batch shared among processes, where PyTorch's ``nn.SyncBatchNorm`` cannot run.

PyTorch's SyncBatchNorm accepts GPU tensors only, so a CPU run on several Gloo processes (the
README's two-process ``torchrun`` demonstration, CI) had no BatchNorm over the whole batch. This
one normalises with the global batch's statistics as one process would with the whole batch:

* forward: each process sums, per channel, its rows' count, values and squared deviations from
  its own mean; one all-reduce of these (and of count x mean^2) gives the global mean and
  (biased) variance, which every process normalises with;
* backward: BatchNorm's input gradient needs two per-channel sums over the whole batch, of the
  output gradient and of the output gradient times the normalised input; one all-reduce gives
  them. The weight and bias gradients stay this process's sums: DistributedDataParallel averages
  them over the processes as it does every other parameter's;
* running statistics: updated from the global mean and unbiased variance exactly as
  ``nn.BatchNorm`` updates them from one process's batch (momentum, or the cumulative average
  when momentum is None).

The variance is combined as Chan et al.'s parallel algorithm combines it: the processes' sums of
squared deviations plus the spread of their means, in float64, as one process's BatchNorm
computes it from deviations; the shorter E[x^2] - E[x]^2 cancels catastrophically when a
channel's mean is large beside its spread.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _other_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


class _SyncBatchNormFunction(torch.autograd.Function):
    """(x, weight, bias, eps) -> (normalised x, global batch mean, global unbiased variance)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float):
        channels, dims, shape = x.shape[1], _other_dims(x), _channel_shape(x)
        local_count = x.numel() // channels
        local_sum = x.sum(dims, dtype=torch.float64)
        local_mean = local_sum / local_count
        local_deviations = (x.double() - local_mean.view(shape)).square().sum(dims)
        stats = torch.cat([local_sum.new_full((1,), local_count), local_sum, local_deviations, local_count * local_mean.square()])
        dist.all_reduce(stats)
        count, total, deviations, count_mean_squares = stats[0], *stats[1:].view(3, channels)
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)} per process")
        mean = total / count
        var = ((deviations + count_mean_squares - count * mean.square()) / count).clamp_min(0)
        invstd = (var + eps).rsqrt()
        normalised = (x - mean.to(x.dtype).view(shape)) * invstd.to(x.dtype).view(shape)
        out = normalised
        if weight is not None:
            out = out * weight.to(x.dtype).view(shape) + bias.to(x.dtype).view(shape)
        ctx.save_for_backward(normalised, weight, invstd, count)
        unbiased_var = var * count / (count - 1)
        ctx.mark_non_differentiable(mean, unbiased_var)
        return out, mean, unbiased_var

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor, _grad_mean, _grad_var):
        normalised, weight, invstd, count = ctx.saved_tensors
        dims, shape = _other_dims(grad_out), _channel_shape(grad_out)
        channels = grad_out.shape[1]
        local = torch.cat([grad_out.sum(dims, dtype=torch.float64), (grad_out * normalised).sum(dims, dtype=torch.float64)])
        grad_weight = grad_bias = None
        if weight is not None:
            grad_bias, grad_weight = local[:channels].to(weight.dtype), local[channels:].to(weight.dtype)
        total = local.clone()
        dist.all_reduce(total)
        mean_grad = (total[:channels] / count).to(grad_out.dtype).view(shape)
        mean_grad_normalised = (total[channels:] / count).to(grad_out.dtype).view(shape)
        scale = invstd if weight is None else invstd * weight.double()
        grad_in = (grad_out - mean_grad - normalised * mean_grad_normalised) * scale.to(grad_out.dtype).view(shape)
        return grad_in, grad_weight, grad_bias, None


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (1d, 2d, 3d alike) whose training statistics are those of the batch all processes
    share. In evaluation, or with one process, it is plain BatchNorm; its state dict is one."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        out, mean, var = _SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                for running, batch in ((self.running_mean, mean), (self.running_var, var)):
                    running.mul_(1 - momentum).add_(batch.to(running.dtype), alpha=momentum)
        return out

    @classmethod
    def from_batchnorm(cls, module: nn.modules.batchnorm._BatchNorm) -> "SyncBatchNorm":
        """``module`` with its parameters (the same tensors) and running statistics."""
        synced = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            synced.weight, synced.bias = module.weight, module.bias
        if module.track_running_stats:
            synced.running_mean, synced.running_var, synced.num_batches_tracked = module.running_mean, module.running_var, module.num_batches_tracked
        return synced.train(module.training)
