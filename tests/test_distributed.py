"""Two Gloo processes sharing each global batch train exactly as one process with that batch:
the same losses, gradients, weights, queues and memory banks, for every method; only process 0
writes the run store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hardneg_bench import distributed
from hardneg_bench.config import ConfigError
from hardneg_bench.data.base import ImageTensorSet
from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.batches import on_device, pretraining_batches, steps_per_epoch
from hardneg_bench.engine.pretrain import ENCODER, pretrain
from hardneg_bench.engine.runtime import Runtime, derive_seed, seed_everything
from hardneg_bench.engine.trainer import Trainer
from hardneg_bench.methods import METHODS
from hardneg_bench.recipes import resolve_config

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
BATCH, IMAGES, EPOCHS = 8, 24, 2
SMALL = {  # parameters that fit a batch of 8 and a queue of 64
    "moco-v2": ["queue_size=64"],
    "mochi": ["queue_size=64", "n_hard=16", "n_mix=8", "n_mix_query=4", "warmup_epochs=0"],
    "ring": ["queue_size=64"],
    "sscl": ["n_hard=4", "n_synthetic=4"],
}


def config(method: str):
    """A tiny run: BatchNorm in two groups over the batch (per process with two processes), no
    BatchNorm in the heads, float32, plain SGD."""
    overrides = [
        "model.backbone=tiny",
        "model.bn_splits=2",
        "model.projector_batchnorm=false",
        f"pretrain.batch_size={BATCH}",
        f"pretrain.epochs={EPOCHS}",
        "pretrain.precision=fp32",
        "pretrain.augment.crop_size=16",
        "pretrain.optimizer.name=sgd",
        "pretrain.optimizer.lr=0.5",
        *(f"method_params.{o}" for o in SMALL.get(method, [])),
    ]
    return resolve_config(method, "shapes", overrides=overrides)


def images() -> ImageTensorSet:
    generator = torch.Generator().manual_seed(0)
    return ImageTensorSet(torch.randint(0, 256, (IMAGES, 3, 16, 16), dtype=torch.uint8, generator=generator), torch.arange(IMAGES) % 3)


def train(method: str) -> dict:
    """Losses and gradients of every step and the final state, as the pretraining loop steps."""
    cfg, spec, data = config(method), get_dataset("shapes"), images()
    steps = steps_per_epoch(len(data), BATCH, drop_last=True)
    seed_everything(derive_seed(cfg.seed, "init"))
    trainer = Trainer.build(cfg, spec, len(data), steps, CPU)
    losses, grads = [], []
    for epoch in range(EPOCHS):
        seed = derive_seed(cfg.seed, "pretrain", epoch)
        torch.manual_seed(seed)
        trainer.model.train().on_epoch_start(epoch)
        for batch in pretraining_batches(on_device(data, CPU.device), cfg.pretrain.augment, spec, BATCH, CPU.device, seed, 0, trainer.model.views):
            losses.append(trainer.step(batch).item())
            grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
        distributed.average_running_stats(trainer.model)  # as the loop does at the end of an epoch
    return {"losses": losses, "grads": grads, "state": {k: v.clone() for k, v in trainer.model.state_dict().items()}}


def worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results = {method: train(method) for method in sorted(METHODS)}
        run_dir = Path(out) / f"run-{rank}"
        run_dir.mkdir()
        results["pretrain"] = pretrain(config("simclr"), get_dataset("shapes"), images(), run_dir, CPU)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(str(out / "init"), str(out)), nprocs=2)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)] + [out]


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not a.is_floating_point():
        return torch.equal(a, b)
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_processes_train_as_one(two_processes, method):
    one = train(method)
    for rank in (0, 1):
        two = two_processes[rank][method]
        assert torch.allclose(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-5, atol=1e-6)
        assert len(two["grads"]) == len(one["grads"]) == EPOCHS * (IMAGES // BATCH)
        for step_two, step_one in zip(two["grads"], one["grads"]):
            assert step_two.keys() == step_one.keys()
            for name in step_one:
                assert close(step_two[name], step_one[name]), (rank, name)
        # weights, key encoder, queue and its pointer, memory banks: the same in every process
        assert two["state"].keys() == one["state"].keys()
        for name in one["state"]:
            assert close(two["state"][name], one["state"][name]), (rank, name)


def test_only_process_zero_writes(two_processes):
    rank0, rank1, out = two_processes
    assert (out / "run-0" / ENCODER).is_file() and (out / "run-0" / "metrics.csv").is_file()
    assert list((out / "run-1").iterdir()) == []
    assert rank0["pretrain"]["final_loss"] == rank1["pretrain"]["final_loss"] and rank0["pretrain"]["processes"] == 2


def test_batch_norm_groups_must_divide_among_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    assert distributed.local_bn_splits(8) == 2 and distributed.local_bn_splits(4) == 1 and distributed.local_bn_splits(1) == 1
    with pytest.raises(ConfigError, match="bn_splits 6 cannot be shared among 4"):
        distributed.local_bn_splits(6)
    with pytest.raises(ConfigError, match="batch_size 10 cannot be shared equally among 4"):
        distributed.check_batch(10)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with pytest.raises(ConfigError, match="SyncBatchNorm, which PyTorch runs on GPUs only"):
        distributed.prepare(model, torch.device("cpu"), bn_splits=2)


def test_launched_reads_torchrun_environment(monkeypatch):
    """Several processes, or one that torchrun started (it sets TORCHELASTIC_RUN_ID): the
    process group is formed; a plain one-process command forms none."""
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched() and distributed.init_from_env(torch.device("cpu")) == torch.device("cpu")
    assert not dist.is_initialized() and distributed.backend() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "one-process-run")
    assert distributed.launched()


def test_torchrun_runs_the_command_with_two_processes(tmp_path):
    """`torchrun --nproc_per_node=2 -m hardneg_bench run ...`: both processes pretrain, process 0
    alone evaluates and writes; the ledger holds each stage once."""
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hardneg_bench", "run", "--method", "simclr", "--dataset", "shapes", "--device", "cpu",
               "--runs-dir", str(runs), "--no-progress", "--set", "pretrain.epochs=1", "--set", "model.bn_splits=2", "--set", "model.projector_batchnorm=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (runs / "ledger.jsonl").read_text().splitlines()]
    stages = sorted((r["stage"], r["method"]) for r in records)
    assert stages == sorted({(r["stage"], r["method"]) for r in records}) and len(stages) == 8  # pretrain, probe, knn, transfer; simclr and random-init
    pretrained = next(r for r in records if r["stage"] == "pretrain" and r["method"] == "simclr")
    assert pretrained["metrics"]["processes"] == 2 and done.stdout.count("random-init") == 1


def test_image_folder_batches_are_shared_row_by_row():
    """The DataLoader path (image folders) gives process r the rows r, r + 2, ... of the very
    batches one process loads."""
    from hardneg_bench.engine.batches import _loader

    data = images()

    def batches(share):
        loader = _loader(data, lambda image: image.float(), 1, BATCH, True, True, 7, 0, share)
        return [idx for _, idx, _ in loader]

    whole, first, second = batches((0, 1)), batches((0, 2)), batches((1, 2))
    assert len(whole) == len(first) == len(second) == IMAGES // BATCH
    for w, a, b in zip(whole, first, second):
        assert torch.equal(torch.stack([a, b], 1).flatten(), w)
