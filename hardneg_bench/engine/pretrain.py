"""The pretraining loop: any registered method, checkpointed and resumable.

A checkpoint holds everything the next step depends on (the method's modules and buffers,
optimizer, schedule, grad scaler, RNG states, the metrics so far); each epoch's batches and
augmentations are drawn from a seed derived from (run seed, epoch), so a run resumed from a
checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import signal
import time
from pathlib import Path

import torch

from .. import distributed
from ..config import ConfigError, RunConfig, to_dict
from ..data.base import DatasetSpec, ImageSet
from ..methods import Batch
from ..methods.hardness import DIAGNOSTICS, HardnessTally
from ..methods.registry import get_method
from ..models import EncoderSpec, build_encoder
from ..models.heads import projection_head
from ..faults import failpoint
from ..store import atomic_torch_save, atomic_write_text, load_checkpoint, load_data, save_checkpoint
from .batches import on_device, pretraining_batches, steps_per_epoch
from .preemption import Interrupted, stop_requests
from .loggers import open_logger
from .progress import training_progress
from .runtime import Runtime, derive_seed, device_name, rng_state, seed_everything, set_rng_state
from .trainer import Trainer, encoder_spec, head_spec

CHECKPOINT = "checkpoint.pt"
ENCODER = "encoder.pt"
METRICS = "metrics.csv"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class NoHead(ConfigError):
    """``knn.feature: head`` asked for a projection head that ``encoder.pt`` does not hold."""


def encoder_record(cfg: RunConfig, spec: DatasetSpec, backbone: torch.nn.Module, projector: torch.nn.Module) -> dict:
    """What ``encoder.pt`` holds: enough to rebuild the encoder without the run's config, and its
    projection head (for a kNN on the head's output, as MoCo's CIFAR-10 demo monitors); CMC's
    two heads, one per stream, are not stored."""
    record = {"encoder": encoder_spec(cfg, spec).to_dict(), "state_dict": backbone.state_dict()}
    if not get_method(cfg.method).cls.lab_split:
        record["head"] = {"spec": head_spec(cfg, backbone.feature_dim), "state_dict": projector.state_dict()}
    return record


def _frozen(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return module.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)


def load_encoder(path: Path, device: torch.device) -> torch.nn.Module:
    """The encoder saved by a pretraining (or random-init) stage, in eval mode, frozen."""
    record = load_data(path, device)
    encoder = build_encoder(EncoderSpec(**record["encoder"]))
    encoder.load_state_dict(record["state_dict"])
    return _frozen(encoder, device)


def load_encoder_with_head(path: Path, device: torch.device) -> torch.nn.Module:
    """The saved encoder followed by its projection head, in eval mode, frozen."""
    record = load_data(path, device)
    if "head" not in record:
        raise NoHead(f"{path} holds no projection head (CMC's heads are not stored, nor were heads before knn.feature existed): knn.feature head needs one; use knn.feature backbone, or remove {path.parent} to train it again")
    head = projection_head(**record["head"]["spec"])
    head.load_state_dict(record["head"]["state_dict"])
    return torch.nn.Sequential(load_encoder(path, device), _frozen(head, device))


def save_random_init(cfg: RunConfig, spec: DatasetSpec, run_dir: Path) -> dict:
    """The random-init baseline: the encoder (and its head) as initialised with the run's seed,
    untrained (written by process 0)."""
    seed_everything(derive_seed(cfg.seed, "init"))
    backbone = build_encoder(encoder_spec(cfg, spec))
    projector = projection_head(**head_spec(cfg, backbone.feature_dim))  # drawn after the encoder: its init is unchanged
    if distributed.is_main():
        atomic_torch_save(encoder_record(cfg, spec, backbone, projector), run_dir / ENCODER)
    return {"epochs_trained": 0}


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """``run_dir``'s metrics.csv, written atomically: one row per entry of ``history`` (pretraining
    epochs, detection iterations), a column per name any entry has."""
    buffer = io.StringIO()
    fields = list(dict.fromkeys(name for entry in history for name in entry))  # diagnostics may start late
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / METRICS, buffer.getvalue())


class _EpochTotals:
    """What an epoch accumulates on the device (no host sync per step): the loss sum, the first
    step whose loss was not finite and that loss, the hardness sums."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)
        self.hardness = HardnessTally()

    def add(self, step: int, loss: torch.Tensor) -> None:
        first_bad = (self.bad_step < 0) & ~torch.isfinite(loss)
        self.bad_step = torch.where(first_bad, step, self.bad_step)
        self.bad_loss = torch.where(first_bad, loss.float(), self.bad_loss)
        self.loss_sum += loss

    def state(self) -> dict:
        return {"loss_sum": self.loss_sum, "bad_step": self.bad_step, "bad_loss": self.bad_loss, "hardness": self.hardness.sums}

    def load(self, state: dict) -> None:
        self.loss_sum, self.bad_step, self.bad_loss, self.hardness.sums = state["loss_sum"], state["bad_step"], state["bad_loss"], state["hardness"]


def pretrain(cfg: RunConfig, spec: DatasetSpec, data: ImageSet, run_dir: Path, runtime: Runtime) -> dict:
    """Train ``cfg.method`` on ``data`` (resuming from ``run_dir``'s newest intact checkpoint,
    mid-epoch if a signal stopped it there); write ``encoder.pt`` and ``metrics.csv``; return the
    stage's metrics. With several processes each trains on its share of every batch and only
    process 0 writes. A loss that is not finite stops the run (:class:`TrainingDiverged`) before
    the epoch's checkpoint: the last good one stays. SIGTERM or SIGINT saves a checkpoint after the
    current step and raises :class:`Interrupted`."""
    device, p = runtime.device, cfg.pretrain
    distributed.check_batch(p.batch_size)
    steps = steps_per_epoch(len(data), p.batch_size, drop_last=True)
    if steps == 0:
        raise ValueError(f"batch size {p.batch_size} is larger than the {len(data)} pretraining images of {spec.name}")
    seed_everything(derive_seed(cfg.seed, "init"))
    trainer = Trainer.build(cfg, spec, len(data), steps, runtime)
    model, main, key = trainer.model, distributed.is_main(), run_dir.name

    start_epoch, start_step, history, partial = 0, 0, [], None
    checkpoint_path = run_dir / CHECKPOINT
    state = load_checkpoint(checkpoint_path, key, device)
    if state is not None:
        trainer.load_state_dict(state)
        start_epoch, start_step, history, partial = state["epoch"], state["step"], state["history"], state["partial"]

    def checkpoint(epoch: int, step: int, partial: dict | None) -> None:
        """After ``step`` steps of ``epoch`` (0 at an epoch's end); ``partial``: the epoch's totals so far."""
        if main:
            save_checkpoint(checkpoint_path, {"epoch": epoch, "step": step, "partial": partial, **trainer.state_dict(), "rng": rng_state(), "history": history}, key)

    images = on_device(data, device)
    logger = open_logger(runtime.logger if main else "none", run_dir, key, f"{cfg.method}-{spec.name}-{key}", to_dict(cfg))
    with training_progress(runtime.show_progress and main, f"{cfg.method}/{spec.name}", p.epochs, steps) as progress, logger, stop_requests() as stop_signal:
        progress.start(start_epoch, start_step)
        for epoch in range(start_epoch, p.epochs):
            model.train()
            started = time.perf_counter()
            totals = _EpochTotals(device)
            seed = derive_seed(cfg.seed, "pretrain", epoch)
            torch.manual_seed(seed)
            model.on_epoch_start(epoch)
            resume_at, spent = (start_step, partial["seconds"]) if epoch == start_epoch and start_step else (0, 0.0)
            if resume_at:
                totals.load(partial)

            def tally(batch: Batch) -> None:
                sums = model.hardness(batch)
                if sums is not None:
                    totals.hardness.add(sums)
            for step, batch in enumerate(pretraining_batches(images, p.augment, spec, p.batch_size, device, seed, runtime.num_workers, model.views)):
                if step < resume_at:  # drawn again so that the augmentation generators advance as before
                    continue
                if step == resume_at and resume_at:
                    set_rng_state(state["rng"])
                diagnose = p.diagnostics_every and step % p.diagnostics_every == 0
                loss = trainer.step(batch, tally if diagnose else None)
                totals.add(step, loss)
                failpoint("step")
                progress.step(epoch, step, loss, (step + 1 - resume_at) * p.batch_size, time.perf_counter() - started)
                if step + 1 < steps and (distributed.world_size() == 1 or step % 20 == 0):
                    signum = stop_signal()
                    if distributed.any_process(signum is not None, device):
                        checkpoint(epoch, step + 1, {**totals.state(), "seconds": spent + time.perf_counter() - started})
                        name = signal.Signals(signum or signal.SIGTERM).name
                        raise Interrupted(signum or signal.SIGTERM, f"stopped by {name} in epoch {epoch + 1}, step {step + 1} of {steps}; a checkpoint of that point is saved: run the same command to continue")
            if int(totals.bad_step) >= 0:
                kept = f"epoch {history[-1]['epoch']}" if history else "none"
                raise TrainingDiverged(
                    f"loss became {float(totals.bad_loss)} in epoch {epoch + 1}, step {int(totals.bad_step) + 1} of {cfg.method} on {spec.name}; last good checkpoint kept: {kept}"
                )
            mean_loss = (totals.loss_sum / steps).item()
            seconds = spent + time.perf_counter() - started
            distributed.average_running_stats(model)
            history.append({"epoch": epoch + 1, "steps": steps, "loss": mean_loss, "lr": trainer.optimizer.param_groups[0]["lr"], "images_per_s": steps * p.batch_size / seconds, "seconds": seconds, **totals.hardness.summary()})
            if not main:
                continue
            write_metrics(run_dir, history)
            logger.log({f"pretrain/{metric}": value for metric, value in history[-1].items() if metric not in ("epoch", "steps")}, epoch + 1)
            progress.epoch_done(history)
            if (epoch + 1) % p.checkpoint_every == 0 or epoch + 1 == p.epochs:
                checkpoint(epoch + 1, 0, None)
    if main:
        atomic_torch_save(encoder_record(cfg, spec, model.backbone, model.projector), run_dir / ENCODER)
    return {
        "final_loss": history[-1]["loss"],
        "epochs_trained": p.epochs,
        "images_per_s": sum(h["images_per_s"] * h["seconds"] for h in history) / sum(h["seconds"] for h in history),
        "train_seconds": sum(h["seconds"] for h in history),
        "device": device_name(device),
        "processes": distributed.world_size(),
        "process_group": distributed.backend(),
        "diagnostics": [{k: h[k] for k in ("epoch", *DIAGNOSTICS) if k in h} for h in history if DIAGNOSTICS[0] in h],
    }
