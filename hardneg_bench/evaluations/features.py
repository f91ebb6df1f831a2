"""Frozen features of a dataset split, as every evaluation on frozen features computes them."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ProbeConfig, RunConfig
from ..data.base import DatasetSpec
from ..engine.batches import eval_batches
from ..engine.runtime import Runtime, autocast, autocast_dtype

Features = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def extract_features(encoder: nn.Module, data, spec: DatasetSpec, probe: ProbeConfig, runtime: Runtime, batch_size: int = 512) -> Features:
    """Features (float32) and labels of every image of ``data``, in order, with the test
    transform of ``probe`` (:func:`~hardneg_bench.engine.batches.test_geometry`); ``encoder`` is
    put in eval mode."""
    encoder.eval()
    amp = autocast_dtype("auto", runtime.device)
    features, labels = [], []
    for images, y in eval_batches(data, spec, probe, batch_size, runtime.device, runtime.num_workers):
        with autocast(amp, runtime.device):
            features.append(encoder(images).float())
        labels.append(y)
    return torch.cat(features), torch.cat(labels)


def test_transform(cfg: RunConfig) -> dict:
    """The probe's test transform as the stage configs of evaluations on frozen features record it
    (``test_resize`` only when set: keys made before it existed stay valid)."""
    resize = {} if cfg.probe.test_resize is None else {"test_resize": cfg.probe.test_resize}
    return {"image_size": cfg.probe.image_size, **resize}
