"""The pretraining loop itself: precision, schedule in the checkpoint, a method's loss decreasing."""

from dataclasses import replace

import pytest
import torch

from hardneg_bench.config import AugmentConfig, ModelConfig, PretrainConfig, RunConfig, ScheduleConfig
from hardneg_bench.data.shapes import SHAPES
from hardneg_bench.engine.pretrain import CHECKPOINT, ENCODER, load_encoder, pretrain
from hardneg_bench.store import load_checkpoint
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.methods import METHODS
from hardneg_bench.methods.simclr import SimCLRParams
from hardneg_bench.recipes import resolve_config

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)



def read_checkpoint(run_dir):
    """The checkpoint of the stage whose folder is ``run_dir`` (its name is the stage key)."""
    return load_checkpoint(run_dir / CHECKPOINT, run_dir.name, torch.device("cpu"))

def small_config(**pretrain_changes) -> RunConfig:
    p = PretrainConfig(epochs=2, batch_size=64, augment=AugmentConfig(crop_scale=(0.2, 1.0)), checkpoint_every=1)
    return RunConfig(method="simclr", dataset="shapes", model=ModelConfig(backbone="tiny", projector_hidden_dim=64), method_params=SimCLRParams(), pretrain=replace(p, **pretrain_changes))


def subset(n: int):
    data = SHAPES.load("train", None, False)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
    return type(data)(data.images[order], data.labels[order])


def test_bf16_autocast_tracks_fp32(tmp_path):
    data = subset(256)
    fp32 = pretrain(small_config(precision="fp32"), SHAPES, data, tmp_path / "a", CPU)
    bf16 = pretrain(small_config(precision="bf16"), SHAPES, data, tmp_path / "b", CPU)
    assert torch.isfinite(torch.tensor(bf16["final_loss"]))
    assert abs(bf16["final_loss"] - fp32["final_loss"]) < 0.1


def test_checkpoint_holds_the_schedule_and_the_encoder_is_the_backbone(tmp_path):
    cfg = small_config(schedule=ScheduleConfig(name="cosine", warmup_epochs=1, warmup_start_factor=0.1))
    metrics = pretrain(cfg, SHAPES, subset(128), tmp_path, CPU)
    state = read_checkpoint(tmp_path)
    assert state["epoch"] == 2 and state["schedule"]["last_epoch"] == 4  # 2 epochs x 2 steps
    assert [round(h["lr"], 6) for h in state["history"]] == [0.001, 0.0]  # warm-up done, cosine at its end
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    encoder = load_encoder(tmp_path / ENCODER, torch.device("cpu"))
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert metrics["epochs_trained"] == 2


def method_config(method: str, **pretrain_changes) -> RunConfig:
    """The small config with ``method``'s shapes recipe for its parameters and model options."""
    recipe = resolve_config(method, "shapes")
    model = replace(small_config().model, width=recipe.model.width, bn_splits=recipe.model.bn_splits, projector_layers=recipe.model.projector_layers)
    return replace(small_config(**pretrain_changes), method=method, method_params=recipe.method_params, model=model)


KNOWN_NOT_LEARNING = {
    # Open in issue 3: on this 512-image subset CMC's loss falls for two epochs, then climbs back
    # towards 2 log(256); on the full shapes set it falls (16.64 -> 14.01, results/shapes.md).
    "cmc": "CMC's loss rises again after epoch 3 on the 512-image subset (open, issue 3)",
}


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.xfail(reason=KNOWN_NOT_LEARNING[m], strict=True)) if m in KNOWN_NOT_LEARNING else m for m in sorted(METHODS)])
def test_every_method_trains_and_its_loss_decreases(tmp_path, method):
    cfg = method_config(method, epochs=6)
    if hasattr(cfg.method_params, "queue_size"):  # a queue the 512 images fill in the first epoch
        cfg = replace(cfg, method_params=replace(cfg.method_params, queue_size=512))
    if hasattr(cfg.method_params, "n_negatives"):  # bank draws in proportion to a 512-entry bank
        cfg = replace(cfg, method_params=replace(cfg.method_params, n_negatives=255))
    if hasattr(cfg.method_params, "warmup_epochs"):  # MoCHi's extra negatives raise the loss when they start
        cfg = replace(cfg, method_params=replace(cfg.method_params, warmup_epochs=0))
    pretrain(cfg, SHAPES, subset(512), tmp_path, CPU)
    losses = [h["loss"] for h in read_checkpoint(tmp_path)["history"]]
    # from epoch 2: during the first, queues and banks still hold random vectors (easy negatives)
    assert losses[-1] < losses[1] - 0.05, losses


@pytest.mark.parametrize("method", ["moco-v2", "ir-ring", "cmc"])
def test_queue_key_encoder_and_banks_resume_exactly(tmp_path, method):
    """An interrupted run (1 epoch, then resumed from its checkpoint to 2) ends with the very same
    state as an uninterrupted one: encoders, key encoder, queue and pointer, memory banks."""
    data = subset(256)
    pretrain(method_config(method, epochs=2), SHAPES, data, tmp_path / "straight", CPU)
    pretrain(method_config(method, epochs=1), SHAPES, data, tmp_path / "resumed", CPU)
    pretrain(method_config(method, epochs=2), SHAPES, data, tmp_path / "resumed", CPU)
    straight = read_checkpoint(tmp_path / "straight")["model"]
    resumed = read_checkpoint(tmp_path / "resumed")["model"]
    stateful = [k for k in straight if k.startswith(("queue", "key_", "bank"))]
    assert stateful and straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
