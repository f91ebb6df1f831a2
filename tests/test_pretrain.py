"""The pretraining loop itself: precision, schedule in the checkpoint, a method's loss decreasing
(CMC's: as CMC's own loop has it, which is not monotone)."""

import math
from dataclasses import replace

import pytest
import torch

from hardneg_bench.config import AugmentConfig, ModelConfig, PretrainConfig, RunConfig, ScheduleConfig
from hardneg_bench.data.shapes import SHAPES
from hardneg_bench.engine.pretrain import CHECKPOINT, ENCODER, load_encoder, pretrain
from hardneg_bench.store import load_checkpoint
from hardneg_bench.engine.batches import on_device, pretraining_batches
from hardneg_bench.engine.runtime import Runtime, derive_seed, seed_everything
from hardneg_bench.engine.trainer import Trainer
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


def small_run_config(method: str, epochs: int) -> RunConfig:
    """``method`` on the 512-image subset: queues and banks sized for it, warm-ups off."""
    cfg = method_config(method, epochs=epochs)
    if hasattr(cfg.method_params, "queue_size"):  # a queue the 512 images fill in the first epoch
        cfg = replace(cfg, method_params=replace(cfg.method_params, queue_size=512))
    if hasattr(cfg.method_params, "n_negatives"):  # bank draws in proportion to a 512-entry bank
        cfg = replace(cfg, method_params=replace(cfg.method_params, n_negatives=255))
    if hasattr(cfg.method_params, "warmup_epochs"):  # MoCHi's extra negatives raise the loss when they start
        cfg = replace(cfg, method_params=replace(cfg.method_params, warmup_epochs=0))
    return cfg


def epoch_losses(cfg: RunConfig, data, run_dir) -> list[float]:
    pretrain(cfg, SHAPES, data, run_dir, CPU)
    return [h["loss"] for h in read_checkpoint(run_dir)["history"]]


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"cmc"}))  # CMC: the next two tests
def test_every_method_trains_and_its_loss_decreases(tmp_path, method):
    losses = epoch_losses(small_run_config(method, 6), subset(512), tmp_path)
    # from epoch 2: during the first, queues and banks still hold random vectors (easy negatives)
    assert losses[-1] < losses[1] - 0.05, losses


def test_cmc_loss_dips_below_its_chance_level_then_returns_towards_it(tmp_path):
    """CMC's training loss is not monotone on this subset, and the official objective's is not
    either (next test; README "CMC's training loss is not monotone"). Each stream's anchor is
    contrasted with 256 entries of the other stream's bank, so a loss of 2 log 256 is chance.
    While the two streams' embeddings drift apart fast (epochs 1-3), the entries rewritten earlier
    in an epoch are easier negatives than the positive, which is always one epoch old: the loss
    falls below chance. As the drift slows that advantage goes and the loss climbs back (seeds
    0-3 measured: minimum 10.57-10.62 at epoch 3, epoch 6 at 10.93-11.03; chance 11.09)."""
    cfg = small_run_config("cmc", 6)
    losses = epoch_losses(cfg, subset(512), tmp_path)
    chance = 2 * math.log(cfg.method_params.n_negatives + 1)
    lowest = min(range(6), key=losses.__getitem__)
    assert losses[0] > chance, losses  # from random banks
    assert 1 <= lowest <= 3 and losses[lowest] < chance - 0.3, losses
    assert losses[-1] > losses[lowest] + 0.15, losses


def official_cmc_epoch_losses(cfg: RunConfig, data, epochs: int) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    """HobbitLong/CMC@7b227be's training loop, rewritten from train_CMC.py, NCE/NCEAverage.py
    (softmax branch) and NCE/NCECriterion.py (NCESoftmaxLoss), driving the encoders and heads our
    trainer builds from ``cfg`` (same initial weights, optimiser and batches): per step, embed the
    batch (the model L2-normalises both streams), gather the positive's memory row and the
    negatives' rows of the OTHER stream's memory (the same rows for both streams), score them,
    then update both memories with momentum from this step's embeddings, then cross-entropy with
    the positive as class 0 for each stream, summed, backward, step. Two things are taken from
    ours so that the runs can be compared exactly: the memories start as our banks do (CMC leaves
    its uniform entries unnormalised) and the negatives are drawn as ours draws them (CMC draws
    K + 1 uniform indices and overwrites the first with the positive). Returns the epochs' mean
    losses and the final L and ab memories."""
    seed_everything(derive_seed(cfg.seed, "init"))
    trainer = Trainer.build(cfg, SHAPES, len(data), 1, CPU)
    model, optimizer = trainer.model, trainer.optimizer
    memory_l, memory_ab = model.bank_l.entries.clone(), model.bank_ab.entries.clone()
    k, t, m = cfg.method_params.n_negatives, cfg.method_params.temperature, cfg.method_params.bank_momentum
    images, history = on_device(data, CPU.device), []
    for epoch in range(epochs):
        model.train()
        seed = derive_seed(cfg.seed, "pretrain", epoch)
        torch.manual_seed(seed)
        total, steps = 0.0, 0
        for batch in pretraining_batches(images, cfg.pretrain.augment, SHAPES, cfg.pretrain.batch_size, CPU.device, seed, 0, 1):
            features_l, features_ab = model.backbone.streams(batch.view1)
            l = torch.nn.functional.normalize(model.projector[0](features_l), dim=1)
            ab = torch.nn.functional.normalize(model.projector[1](features_ab), dim=1)
            rows = torch.cat([batch.indices.view(-1, 1), torch.randint(0, len(data), (len(batch.indices), k))], dim=1)
            out_l = torch.bmm(memory_ab[rows].detach(), l.unsqueeze(2)).squeeze(2) / t  # L anchors, ab memory
            out_ab = torch.bmm(memory_l[rows].detach(), ab.unsqueeze(2)).squeeze(2) / t
            with torch.no_grad():
                for memory, z in ((memory_l, l), (memory_ab, ab)):
                    mixed = memory[batch.indices] * m + z * (1 - m)
                    memory.index_copy_(0, batch.indices, mixed / mixed.pow(2).sum(1, keepdim=True).sqrt())
            target = torch.zeros(len(batch.indices), dtype=torch.long)
            loss = torch.nn.functional.cross_entropy(out_l, target) + torch.nn.functional.cross_entropy(out_ab, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        history.append(total / steps)
    return history, memory_l, memory_ab


def test_cmc_trains_as_the_official_cmc_loop(tmp_path):
    """Ours and CMC's own loop from the same weights, batches and negatives: the same losses and
    the same memory banks after two epochs (the second reads positives written in the first)."""
    cfg = small_run_config("cmc", 2)
    data = subset(256)
    ours = epoch_losses(cfg, data, tmp_path)
    banks = read_checkpoint(tmp_path)["model"]
    official, memory_l, memory_ab = official_cmc_epoch_losses(cfg, data, 2)
    assert ours == pytest.approx(official, rel=1e-4), (ours, official)
    assert torch.allclose(banks["bank_l.entries"], memory_l, atol=1e-4) and torch.allclose(banks["bank_ab.entries"], memory_ab, atol=1e-4)


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
