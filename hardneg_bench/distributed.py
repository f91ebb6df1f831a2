"""Several processes on ``torchrun``: one global batch shared among them, every method's objective
on the whole batch, DistributedDataParallel averaging the gradients.

How a run with N processes computes what one process computes with the same global batch B:

* Every process draws the same epoch permutation and the same augmentation parameters for the
  whole batch; process r takes the rows r, r + N, r + 2N, ... (:func:`shard`), so its BatchNorm
  groups are exactly those of split BatchNorm with ``model.bn_splits`` groups (``bn_splits`` is a
  property of the global batch; each process uses ``bn_splits / N``).
* A batch's indices and labels are the global batch's on every process; the views are the
  process's rows. A method embeds its rows and :func:`gather` s the embeddings back into the
  global batch's order, with gradients: every process then computes the method's objective on
  the whole batch (all 2B - 2 in-batch negatives; the same queue and memory-bank updates on every
  process, so they stay identical). The gather's backward sums the N processes' gradients, and
  DDP's mean over processes brings the gradient back to that of the one global loss.
* MoCo's keys are computed with shuffle-BN across processes: the key views are gathered, shuffled
  with the same permutation one process would draw, sharded, encoded and gathered back.
* BatchNorm over the whole batch (``bn_splits: 1``) and the heads' BatchNorm1d are synchronised
  across the processes: PyTorch's SyncBatchNorm on GPUs, :mod:`hardneg_bench.models.sync_batchnorm`
  elsewhere (PyTorch's runs on GPUs only; the CPU runs on Gloo).
* Only process 0 writes the run store (:func:`is_main`); every process reads it to resume.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from .config import ConfigError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True in the process that writes results and prints (the only one without torchrun); known
    from torchrun's environment before the process group forms, so that a run refused before
    then is reported once."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return not launched() or int(os.environ.get("RANK", "0")) == 0


def launched() -> bool:
    """True when torchrun (or Slurm via torchrun) started this process, also as the only one: a
    one-process torchrun run then forms its process group (NCCL on a GPU) as a larger one does."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend() -> str | None:
    """The process group's backend (``nccl``, ``gloo``), None without one."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes in the environment (NCCL on GPUs, Gloo on CPUs)
    and return this process's device: ``cuda:LOCAL_RANK`` on GPUs. Without torchrun: ``device``."""
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main_decides(flag: bool, device: torch.device) -> bool:
    """Process 0's ``flag`` in every process (a collective: all must call it), so that the
    processes take the same branch whatever each of them saw."""
    if world_size() == 1:
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def any_process(flag: bool, device: torch.device) -> bool:
    """True in every process when ``flag`` is true in any (a collective: all must call it)."""
    if world_size() == 1:
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


Share = tuple[int, int]
"""(r, n): rows r, r + n, r + 2n, ... of a batch: process r of n's share."""
WHOLE: Share = (0, 1)


def rows(x: torch.Tensor, share: Share) -> torch.Tensor:
    """The rows of ``x`` that ``share`` names."""
    return x[share[0] :: share[1]]


def this_share() -> Share:
    return (rank(), world_size())


def shard(x: torch.Tensor) -> torch.Tensor:
    """This process's rows of a global batch: r, r + N, r + 2N, ..."""
    return rows(x, this_share())


class _GatherRows(torch.autograd.Function):
    """All processes' rows in the global order; backward: the gradients every process computed
    for all rows, summed, and this process's rows of that sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts, dim=1).flatten(0, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return shard(grad)


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every process's rows of ``x`` in the global batch's order; gradients flow back to each
    process's own rows (summed over the processes that used them)."""
    return x if world_size() == 1 else _GatherRows.apply(x)


def average_running_stats(model: nn.Module) -> None:
    """Each process's BatchNorm running statistics come from its own rows; their mean over the
    processes is what one process with split BatchNorm keeps (the running averages are linear).
    Called by every process before process 0 saves."""
    n = world_size()
    if n == 1:
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            for stat in (module.running_mean, module.running_var):
                dist.all_reduce(stat)
                stat.div_(n)


def check_batch(batch_size: int, key: str = "pretrain.batch_size") -> None:
    """Refuse a batch (config key ``key``) the processes cannot share equally."""
    n = world_size()
    if batch_size % n:
        raise ConfigError(f"{key} {batch_size} cannot be shared equally among {n} processes: use a multiple of {n}")


def check_shares(batch_size: int, bn_splits: int) -> None:
    """Refuse, before any work, a run whose batch or BatchNorm groups the processes cannot share."""
    check_batch(batch_size)
    local_bn_splits(bn_splits)


def local_bn_splits(bn_splits: int) -> int:
    """BatchNorm groups inside one process for ``bn_splits`` groups over the global batch."""
    n = world_size()
    if n == 1 or bn_splits == 1:
        return bn_splits
    if bn_splits % n:
        raise ConfigError(f"model.bn_splits {bn_splits} cannot be shared among {n} processes: use 1 (BatchNorm over the whole batch) or a multiple of {n}")
    return bn_splits // n


def _synced(module: nn.Module, convert: type, synced: Callable[[nn.Module], nn.Module]) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, convert):
            setattr(module, name, synced(child))
        else:
            _synced(child, convert, synced)
    return module


def prepare(model: nn.Module, device: torch.device, bn_splits: int) -> nn.Module:
    """With several processes: the BatchNorm layers that normalise over the whole batch (all of
    them when ``bn_splits`` is 1, else the heads' BatchNorm1d) are synchronised across the
    processes: PyTorch's SyncBatchNorm on GPUs, which it supports only there; ours elsewhere."""
    if world_size() == 1:
        return model
    from .models.sync_batchnorm import SyncBatchNorm  # here: the models package imports torchvision, which a CLI error need not

    convert = nn.modules.batchnorm._BatchNorm if bn_splits == 1 else nn.BatchNorm1d
    return _synced(model, convert, nn.SyncBatchNorm.convert_sync_batchnorm if device.type == "cuda" else SyncBatchNorm.from_batchnorm)


def wrap(model: nn.Module, device: torch.device):
    """``model`` itself, or DistributedDataParallel around it with several processes. Buffers
    are not broadcast: queues and banks stay identical by construction, and broadcasting a
    memory bank every step would cost more than the step."""
    if world_size() == 1:
        return model
    with warnings.catch_warnings():  # its replacement, forward_sync_buffers, is not in older PyTorch
        warnings.simplefilter("ignore", FutureWarning)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None, broadcast_buffers=False)
