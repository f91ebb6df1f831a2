"""On a GPU only (skipped elsewhere): the training step and the batched augmentation never make
the host wait for the GPU, and bf16 training keeps its objective in float32."""

from __future__ import annotations

import pytest
import torch

from hardneg_bench.data.base import ImageTensorSet
from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.batches import on_device, pretraining_batches
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.engine.trainer import Trainer
from hardneg_bench.methods import METHODS
from hardneg_bench.recipes import resolve_config

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_steps_make_no_host_synchronisation(method):
    cfg = resolve_config(method, "cifar10", overrides=["model.backbone=resnet18", "pretrain.batch_size=64"])
    spec, runtime = get_dataset("cifar10"), Runtime(torch.device("cuda"), num_workers=0, show_progress=False)
    generator = torch.Generator().manual_seed(0)
    data = ImageTensorSet(torch.randint(0, 256, (640, 3, 32, 32), dtype=torch.uint8, generator=generator), torch.randint(0, 10, (640,), generator=generator))
    trainer = Trainer.build(cfg, spec, 50_000, 10, runtime)
    trainer.model.on_epoch_start(10**6)  # past warm-ups: the full objective
    batches = pretraining_batches(on_device(data, runtime.device), cfg.pretrain.augment, spec, 64, runtime.device, 0, 0, trainer.model.views)
    for _ in range(3):  # first steps: cuDNN autotuning, allocations
        trainer.step(next(batches))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [trainer.step(next(batches)) for _ in range(5)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.amp_dtype == torch.bfloat16 and all(loss.dtype == torch.float32 for loss in losses)
    assert torch.isfinite(torch.stack(losses)).all()
