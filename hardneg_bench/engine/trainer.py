"""A method with everything one optimizer step needs: the model on its device, optimizer,
learning-rate schedule, grad scaler and autocast precision. The pretraining loop, ``bench`` and the
step-time benchmark all step through :meth:`Trainer.step`, so they time and train the same step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import distributed
from ..config import RunConfig
from ..data.base import DatasetSpec
from ..methods import Batch, Method, get_method
from ..models import EncoderSpec, build_encoder, projection_head
from ..models.backbones import backbone_stem
from .batches import crop_size_of
from .optim import build_optimizer, build_schedule
from .runtime import Runtime, autocast, autocast_dtype


def encoder_spec(cfg: RunConfig, spec: DatasetSpec) -> EncoderSpec:
    """The architecture of the encoder ``cfg`` pretrains (CMC's when its method asks for it), its
    stem as built: the same encoder is one spec whichever way the config named its stem (the
    random-init baseline's key is this spec)."""
    image_size = crop_size_of(cfg.pretrain.augment, spec)
    return EncoderSpec(
        backbone=cfg.model.backbone,
        stem=backbone_stem(cfg.model.backbone, cfg.model.stem, image_size),
        image_size=image_size,
        width=cfg.model.width,
        lab_split=get_method(cfg.method).cls.lab_split,
        input_mean=tuple(spec.mean),
        input_std=tuple(spec.std),
    )


def head_spec(cfg: RunConfig, in_dim: int) -> dict:
    """The arguments of :func:`~hardneg_bench.models.heads.projection_head` for ``cfg``'s head on
    features of width ``in_dim`` (stored with the encoder, so the head can be rebuilt)."""
    m = cfg.model
    return {"in_dim": in_dim, "hidden_dim": m.projector_hidden_dim or in_dim, "out_dim": m.projector_out_dim, "batchnorm": m.projector_batchnorm, "layers": m.projector_layers}


def build_method(cfg: RunConfig, spec: DatasetSpec, dataset_size: int) -> Method:
    """The method of ``cfg``, its BatchNorm arranged for this process's share of the batch."""
    m = cfg.model
    backbone = build_encoder(encoder_spec(cfg, spec), distributed.local_bn_splits(m.bn_splits))

    def make_projector(in_dim: int) -> torch.nn.Module:
        return projection_head(**head_spec(cfg, in_dim))

    return get_method(cfg.method).cls(backbone, make_projector, cfg.method_params, dataset_size)


@dataclass
class Trainer:
    model: Method
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    device: torch.device
    forward: Callable[[Batch], torch.Tensor]
    """The method's loss, through DistributedDataParallel when the run has several processes."""

    @classmethod
    def build(cls, cfg: RunConfig, spec: DatasetSpec, dataset_size: int, steps_per_epoch: int, runtime: Runtime) -> "Trainer":
        """The method of ``cfg`` on ``runtime.device`` in channels-last layout (its encoders compiled
        when ``runtime.compile``), with the run's optimizer and a per-step schedule."""
        device, p = runtime.device, cfg.pretrain
        if device.type == "cuda":
            # every step has the same shapes: let cuDNN time its convolution algorithms once and
            # keep the fastest (MoCo's main_moco.py does the same)
            torch.backends.cudnn.benchmark = True
        model = distributed.prepare(build_method(cfg, spec, dataset_size), device, cfg.model.bn_splits).to(device, memory_format=torch.channels_last)
        if runtime.compile:
            for module in model.children():  # encoders and heads; a bank or queue is never called
                module.compile()
        optimizer = build_optimizer(model, p.optimizer)
        amp_dtype = autocast_dtype(p.precision, device)
        return cls(
            model=model,
            optimizer=optimizer,
            schedule=build_schedule(optimizer, p.schedule, steps_per_epoch, p.epochs),
            scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
            amp_dtype=amp_dtype,
            device=device,
            forward=distributed.wrap(model, device),
        )

    def step(self, batch: Batch, after_loss: Callable[[Batch], None] | None = None) -> torch.Tensor:
        """One optimizer step on ``batch``; ``after_loss`` runs between the loss and the backward
        pass (the hardness diagnostics read what the loss left). Returns the detached loss, on
        the device: nothing here waits for the GPU."""
        with autocast(self.amp_dtype, self.device):
            loss = self.forward(batch)
        if after_loss is not None:
            after_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        self.model.after_optimizer_step()
        return loss.detach()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
