"""Fine-tuning a detector as MoCo's detection transfer trains it (detectron2's ``DefaultTrainer``
with MoCo's configs), checkpointed and resumable like pretraining.

Each iteration takes this process's share of ``batch_size`` images (:mod:`.loader`: multi-scale,
flipped, grouped by orientation), runs one SGD step of the detector's summed losses (:mod:`.solver`:
the rate of that iteration's warm-up or step) and, every ``checkpoint_every`` iterations and at
the end, saves a checkpoint (the weights, the optimizer, the losses so far). Every random draw of
an iteration (the image sizes, the anchors and regions sampled for the losses) comes from a seed
derived from (trial seed, iteration, process), and the images from the loader's own seed, so a
run resumed from a checkpoint computes what an uninterrupted one does. After the last iteration
the BatchNorm statistics are recomputed (:mod:`.precise_bn`) and saved with the weights.

Several processes (torchrun) train data-parallel as detectron2 does: each its own share of the
batch, the gradients averaged (DistributedDataParallel), every BatchNorm synchronised over the
whole batch (the configs' ``naiveSyncBN``: :func:`hardneg_bench.distributed.prepare`); only
process 0 writes.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset
from torch.utils.hooks import RemovableHandle

from .. import distributed
from ..config import DetectionConfig, DetectionSchedule
from ..engine.preemption import Interrupted, stop_requests
from ..engine.pretrain import TrainingDiverged, write_metrics
from ..engine.progress import training_progress
from ..engine.runtime import Runtime, autocast, autocast_dtype, derive_seed, device_name
from ..faults import failpoint
from ..store import load_checkpoint, save_checkpoint
from .datasets import Item
from .loader import training_loader
from .precise_bn import recompute_batchnorm
from .solver import build_optimizer, lr_factor

CHECKPOINT = "checkpoint.pt"
SIGNAL_EVERY = 20
"""With several processes, the iterations between checks for a stop signal (a collective)."""


def _float32(value):
    """``value`` (a tensor, or lists, tuples and dicts of them) with its floating tensors in float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return type(value)((k, _float32(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_float32(v) for v in value)
    return value


def float32_outputs(detector: nn.Module) -> list[RemovableHandle]:
    """Under autocast, the backbone's features and the heads' predictions (RPN scores and box
    deltas, class scores and box deltas, mask and keypoint logits) leave their module in float32:
    the anchors (made in the features' dtype), the decoded boxes, RoIAlign, the losses and the
    post-processing are then computed in float32, as bf16 would put a box corner at 800 px on a
    4 px grid. The convolutions and linear layers inside run in the autocast dtype."""
    roi = detector.roi_heads
    modules = [detector.backbone, detector.rpn.head, roi.box_predictor, getattr(roi, "mask_predictor", None), getattr(roi, "keypoint_predictor", None)]
    return [m.register_forward_hook(lambda module, args, output: _float32(output)) for m in modules if m is not None]


Batch = list[Item]


@dataclass
class DetectorTrainer:
    """A detector on its device with its optimizer: what one training iteration needs."""

    model: nn.Module
    """The detector (BatchNorm synchronised across processes when there are several)."""
    forward: Callable
    """The detector through DistributedDataParallel when there are several processes."""
    optimizer: torch.optim.SGD
    amp_dtype: torch.dtype | None
    device: torch.device

    @classmethod
    def build(cls, detector: nn.Module, lr: float, precision: str, device: torch.device) -> "DetectorTrainer":
        if device.type == "cuda":
            # image sizes change every iteration: detectron2's default CUDNN_BENCHMARK False
            # (facebookresearch/detectron2@02b5c4e detectron2/config/defaults.py line 638)
            torch.backends.cudnn.benchmark = False
        model = distributed.prepare(detector, device, 1).to(device)
        amp_dtype = autocast_dtype(precision, device)
        if amp_dtype is not None:
            float32_outputs(model)
        return cls(model, distributed.wrap(model, device), build_optimizer(model, lr), amp_dtype, device)

    def on_device(self, batch: Batch) -> tuple[list[torch.Tensor], list[dict]]:
        """Images as float 0-1 (the detector's transform normalises them) and targets, on the device."""
        images = [image.to(self.device, non_blocking=True).float().div_(255) for image, _ in batch]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in target.items()} for _, target in batch]
        return images, targets

    def losses(self, batch: Batch, module: Callable | None = None) -> dict[str, torch.Tensor]:
        """The detector's losses on ``batch`` (computed by ``module``, the detector by default)."""
        images, targets = self.on_device(batch)
        with autocast(self.amp_dtype, self.device):
            return (module or self.model)(images, targets)

    def step(self, batch: Batch, lr: float) -> dict[str, torch.Tensor]:
        """One SGD step at rate ``lr`` on the sum of the losses; returns them, detached."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        losses = self.losses(batch, self.forward)
        self.optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        self.optimizer.step()
        return {name: loss.detach() for name, loss in losses.items()}

    def state_dict(self, optimizer: bool = True) -> dict:
        """The weights and (unless ``optimizer`` is false: training is over) the optimizer's state."""
        return {"model": self.model.state_dict(), **({"optimizer": self.optimizer.state_dict()} if optimizer else {})}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])


@dataclass
class _FineTuning:
    """One trial's fine-tuning: where it stands (``iteration``, ``history`` of every iteration's
    rate and losses, training ``seconds``, whether the BatchNorm statistics were recomputed) and
    its checkpoint."""

    trainer: DetectorTrainer
    cfg: DetectionConfig
    seed: int
    run_dir: Path
    name: str
    data: Dataset[Item]
    iteration: int = 0
    history: list = field(default_factory=list)
    seconds: float = 0.0
    precise_bn: bool = False
    saved: int | None = None
    """The iteration of the newest checkpoint."""

    def resume(self) -> None:
        state = load_checkpoint(self.run_dir / CHECKPOINT, self.run_dir.name, self.trainer.device)
        if state is not None:
            self.trainer.load_state_dict(state)
            self.iteration, self.history, self.seconds, self.precise_bn = state["iteration"], state["history"], state["seconds"], state["precise_bn"]
            self.saved = self.iteration

    def save(self) -> None:
        """A checkpoint of where the fine-tuning stands (written by process 0; the last, after
        precise BN, without the optimizer: the fine-tuned detector), and metrics.csv."""
        self.saved = self.iteration
        if distributed.is_main():
            state = {"iteration": self.iteration, "precise_bn": self.precise_bn, "history": self.history, "seconds": self.seconds, **self.trainer.state_dict(optimizer=not self.precise_bn)}
            save_checkpoint(self.run_dir / CHECKPOINT, state, self.run_dir.name)
            write_metrics(self.run_dir, self.history)

    def loader(self, seed: object, start: int, runtime: Runtime):
        world = distributed.world_size()
        return training_loader(self.data, self.cfg.batch_size // world, derive_seed(self.seed, seed), start, runtime.num_workers, self.trainer.device.type == "cuda", distributed.rank(), world)

    def train(self, schedule: DetectionSchedule, runtime: Runtime) -> None:
        """The iterations from ``iteration`` to the schedule's end, checkpointed; stops on a signal."""
        device, total, start = self.trainer.device, schedule.iterations, self.iteration
        world, main = distributed.world_size(), distributed.is_main()
        with training_progress(runtime.show_progress and main, self.name, 1, total) as progress, stop_requests() as stop_signal:
            progress.start(0, start)
            began, before = time.perf_counter(), self.seconds
            for iteration, batch in zip(range(start, total), self.loader("order", start, runtime)):
                torch.manual_seed(derive_seed(self.seed, "iteration", iteration, distributed.rank()))
                lr = self.cfg.lr * lr_factor(iteration, schedule)
                losses = self.trainer.step(batch, lr)
                loss = float(sum(losses.values()))
                if distributed.any_process(not math.isfinite(loss), device):
                    kept = "none" if self.saved is None else f"iteration {self.saved}"
                    raise TrainingDiverged(f"loss became {loss} at iteration {iteration + 1} of {total} of {self.name}; last good checkpoint kept: {kept}")
                self.history.append({"iteration": iteration + 1, "lr": lr, "loss": loss, **{k: float(v) for k, v in losses.items()}})
                failpoint("step")
                self.iteration, self.seconds = iteration + 1, before + time.perf_counter() - began
                progress.step(0, iteration, torch.tensor(loss), (self.iteration - start) * self.cfg.batch_size, self.seconds - before)
                if self.iteration % self.cfg.checkpoint_every == 0 or self.iteration == total:
                    self.save()
                if self.iteration < total and (world == 1 or self.iteration % SIGNAL_EVERY == 0):
                    signum = stop_signal()
                    if distributed.any_process(signum is not None, device):
                        if self.saved != self.iteration:
                            self.save()
                        how = signal.Signals(signum or signal.SIGTERM).name
                        raise Interrupted(signum or signal.SIGTERM, f"stopped by {how} at iteration {self.iteration} of {total} of {self.name}; a checkpoint of that point is saved: run the same command to continue")
            images_per_s = (total - start) * self.cfg.batch_size / max(self.seconds - before, 1e-9)
            progress.epoch_done([{"epoch": 1, "loss": self.history[-1]["loss"], "lr": self.history[-1]["lr"], "images_per_s": images_per_s, "seconds": self.seconds}])

    def recompute_batchnorm(self, runtime: Runtime) -> None:
        """Precise BN over ``precise_bn_iterations`` batches of a loader of its own, then a checkpoint."""
        if self.cfg.precise_bn_iterations:
            torch.manual_seed(derive_seed(self.seed, "precise-bn", distributed.rank()))
            batches = (batch for _, batch in zip(range(self.cfg.precise_bn_iterations), self.loader("precise-bn order", 0, runtime)))
            recompute_batchnorm(self.trainer.model, batches, self.trainer.losses)
        self.precise_bn = True
        self.save()


def fine_tune(trainer: DetectorTrainer, data: Dataset[Item], cfg: DetectionConfig, seed: int, run_dir: Path, runtime: Runtime, name: str = "detection") -> dict:
    """Train ``trainer``'s detector on ``data`` for ``cfg``'s schedule, resuming from ``run_dir``'s
    newest intact checkpoint, then recompute its BatchNorm statistics; returns the iterations, the
    seconds per iteration, the device (its name) and the number of processes. ``seed`` is the trial's. A SIGTERM or SIGINT while training saves
    a checkpoint after the current iteration and raises :class:`Interrupted`; a loss that is not
    finite raises :class:`TrainingDiverged` (the last checkpoint stays)."""
    distributed.check_batch(cfg.batch_size, "detection.batch_size")
    schedule = cfg.resolved_schedule()
    run = _FineTuning(trainer, cfg, seed, run_dir, name, data)
    run.resume()
    trainer.model.train()
    if run.iteration < schedule.iterations:
        run.train(schedule, runtime)
    if not run.precise_bn:
        run.recompute_batchnorm(runtime)
    return {"iterations": schedule.iterations, "seconds_per_iteration": run.seconds / schedule.iterations, "device": device_name(trainer.device), "processes": distributed.world_size()}
