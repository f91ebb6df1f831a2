"""Two Gloo processes sharing each global batch train exactly as one process with that batch:
the same losses, gradients, weights, queues and memory banks, for every method, with BatchNorm
in groups and with BatchNorm over the whole batch (synchronised across the processes, on the
CPU); only process 0 writes the run store."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
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
from hardneg_bench.models.sync_batchnorm import SyncBatchNorm
from hardneg_bench.recipes import resolve_config

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
BATCH, IMAGES, EPOCHS = 8, 24, 2
SMALL = {  # parameters that fit a batch of 8 and a queue of 64
    "moco-v2": ["queue_size=64"],
    "mochi": ["queue_size=64", "n_hard=16", "n_mix=8", "n_mix_query=4", "warmup_epochs=0"],
    "ring": ["queue_size=64"],
    "sscl": ["n_hard=4", "n_synthetic=4"],
}


BATCHNORM = {  # BatchNorm in two groups (one per process with two processes), none in the heads;
    # or over the whole batch, in the heads too (synchronised across the processes)
    "groups": ["model.bn_splits=2", "model.projector_batchnorm=false"],
    "whole": ["model.bn_splits=1", "model.projector_batchnorm=true"],
}


def config(method: str, batchnorm: str = "groups"):
    """A tiny run in float32 with plain SGD, its BatchNorm as ``BATCHNORM[batchnorm]``."""
    overrides = [
        "model.backbone=tiny",
        *BATCHNORM[batchnorm],
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


def train(method: str, batchnorm: str, replay: list[dict] | None = None) -> dict:
    """Losses and gradients of every step, the trainer's state after every step and the final
    state, as the pretraining loop steps. With ``replay`` (another run's states after every step)
    each step starts from that run's state before it, so that two runs compare step by step."""
    cfg, spec, data = config(method, batchnorm), get_dataset("shapes"), images()
    steps = steps_per_epoch(len(data), BATCH, drop_last=True)
    seed_everything(derive_seed(cfg.seed, "init"))
    trainer = Trainer.build(cfg, spec, len(data), steps, CPU)
    losses, grads, states = [], [], []
    for epoch in range(EPOCHS):
        seed = derive_seed(cfg.seed, "pretrain", epoch)
        torch.manual_seed(seed)
        trainer.model.train().on_epoch_start(epoch)
        for batch in pretraining_batches(on_device(data, CPU.device), cfg.pretrain.augment, spec, BATCH, CPU.device, seed, 0, trainer.model.views):
            if replay is not None and states:
                trainer.load_state_dict(copy.deepcopy(replay[len(states) - 1]))  # the optimizer adopts the tensors it loads
            losses.append(trainer.step(batch).item())
            grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
            states.append(copy.deepcopy(trainer.state_dict()))
        distributed.average_running_stats(trainer.model)  # as the loop does at the end of an epoch
    return {"losses": losses, "grads": grads, "states": states, "buffers": {name for name, _ in trainer.model.named_buffers()},
            "state": {k: v.clone() for k, v in trainer.model.state_dict().items()}}


def worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results = {(method, batchnorm): train(method, batchnorm) for method in sorted(METHODS) for batchnorm in BATCHNORM}
        results["sync_batchnorm"] = {dims: batchnorm_steps(SyncBatchNorm.from_batchnorm(batchnorm_layer(dims)), dims, distributed.this_share()) for dims in (1, 2)}
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


def near(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> bool:
    """``b`` within ``tolerance`` of ``a``'s norm (integers: equal)."""
    if not a.is_floating_point():
        return torch.equal(a, b)
    return bool((a - b).norm() <= tolerance * a.norm())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_processes_train_as_one(two_processes, method):
    """BatchNorm in groups: each process normalises its rows as the one process normalises the
    same group, so the two runs do the same arithmetic and agree to rounding all along."""
    one = train(method, "groups")
    for rank in (0, 1):
        two = two_processes[rank][method, "groups"]
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


GRADIENT_TOLERANCE = 0.02
"""Of a gradient's norm: a ReLU input within rounding of 0 may fall on the other side in one of
two runs (hcl, last step: 0.9% of the gradient of a BatchNorm bias); a backward pass of the
synchronised BatchNorm without its gradient all-reduce is off by 90% to 310%."""


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_processes_with_whole_batch_batchnorm_step_as_one(two_processes, method):
    """BatchNorm over the whole batch: two processes sum its statistics in another order than one
    process does, and SGD at this rate makes that rounding difference grow from step to step; so
    each step of the one process starts from the two-process run's state before it. What the
    forward pass computes (loss, running statistics, queue, banks) agrees to rounding; gradients,
    and the weights and momenta they move, to GRADIENT_TOLERANCE."""
    for rank in (0, 1):
        two = two_processes[rank][method, "whole"]
        one = train(method, "whole", replay=two["states"])
        assert torch.allclose(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-5, atol=1e-6)
        assert len(two["grads"]) == len(one["grads"]) == len(one["states"]) == EPOCHS * (IMAGES // BATCH)
        for step, (step_two, step_one) in enumerate(zip(two["grads"], one["grads"])):
            assert step_two.keys() == step_one.keys()
            for name in step_one:
                assert near(step_one[name], step_two[name], GRADIENT_TOLERANCE), (rank, step, name)
        for step, (state_two, state_one) in enumerate(zip(two["states"], one["states"])):
            assert state_two["model"].keys() == state_one["model"].keys()
            for name, value in state_one["model"].items():
                if name in one["buffers"]:
                    assert close(state_two["model"][name], value), (rank, step, name)
                else:
                    assert near(value, state_two["model"][name], GRADIENT_TOLERANCE), (rank, step, name)
            for index, slots in state_one["optimizer"]["state"].items():
                for slot, value in slots.items():
                    assert near(value, state_two["optimizer"]["state"][index][slot], GRADIENT_TOLERANCE), (rank, step, index, slot)


def batchnorm_layer(dims: int) -> torch.nn.Module:
    """BatchNorm2d with the default momentum, BatchNorm1d with the cumulative average (momentum
    None); weights and biases not 1 and 0, so that their gradients reach the input's."""
    torch.manual_seed(0)
    layer = torch.nn.BatchNorm2d(3) if dims == 2 else torch.nn.BatchNorm1d(3, momentum=None)
    torch.nn.init.normal_(layer.weight)
    torch.nn.init.normal_(layer.bias)
    return layer


def batchnorm_steps(layer: torch.nn.Module, dims: int, share: distributed.Share) -> list[dict]:
    """Two training steps of ``layer`` on ``share``'s rows of fixed batches, each followed by the
    backward of a fixed, uneven upstream gradient: outputs, input gradients, parameter
    gradients (of these rows) and running statistics after each step."""
    generator = torch.Generator().manual_seed(1)
    shape = (8, 3, 4, 4) if dims == 2 else (8, 3)
    steps = []
    for _ in range(2):
        batch = torch.randn(shape, generator=generator) * 3 + 2
        upstream = torch.randn(shape, generator=generator) + 0.5
        x = distributed.rows(batch, share).requires_grad_()
        y = layer(x)
        (y * distributed.rows(upstream, share)).sum().backward()
        steps.append({"y": y.detach(), "x_grad": x.grad, "weight_grad": layer.weight.grad.clone(), "bias_grad": layer.bias.grad.clone(),
                      "running_mean": layer.running_mean.clone(), "running_var": layer.running_var.clone(), "num_batches_tracked": layer.num_batches_tracked.clone()})
        layer.zero_grad()
    return steps


@pytest.mark.parametrize("dims", [1, 2])
def test_synchronised_batchnorm_is_batchnorm_over_the_whole_batch(two_processes, dims):
    """Two Gloo processes each holding half the rows compute what nn.BatchNorm computes on the
    whole batch: its outputs and input gradients row for row, its weight and bias gradients as the
    sum of the processes' (DDP averages them), its running statistics."""
    one = batchnorm_steps(batchnorm_layer(dims), dims, distributed.WHOLE)
    ranks = [two_processes[rank]["sync_batchnorm"][dims] for rank in (0, 1)]
    for step, reference in enumerate(one):
        for rank, two in enumerate(ranks):
            for name in ("y", "x_grad"):
                assert torch.allclose(two[step][name], distributed.rows(reference[name], (rank, 2)), rtol=1e-5, atol=1e-6), (step, rank, name)
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                assert torch.allclose(two[step][name], reference[name], rtol=1e-6, atol=1e-7), (step, rank, name)
        for name in ("weight_grad", "bias_grad"):
            assert torch.allclose(ranks[0][step][name] + ranks[1][step][name], reference[name], rtol=1e-5, atol=1e-6), (step, name)


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


def test_whole_batch_batchnorm_is_synchronised_on_the_cpu(monkeypatch):
    """On the CPU (where PyTorch's SyncBatchNorm cannot run) the layers that normalise over the
    whole batch become ours, with the same parameters and running statistics; the groups of split
    BatchNorm stay per process."""
    monkeypatch.setattr(distributed, "world_size", lambda: 2)

    def model():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))

    grouped = model()
    head = grouped[4]
    distributed.prepare(grouped, torch.device("cpu"), bn_splits=2)
    assert type(grouped[1]) is torch.nn.BatchNorm2d and isinstance(grouped[4], SyncBatchNorm)
    assert grouped[4].weight is head.weight and grouped[4].running_var is head.running_var
    whole = distributed.prepare(model(), torch.device("cpu"), bn_splits=1)
    assert isinstance(whole[1], SyncBatchNorm) and isinstance(whole[4], SyncBatchNorm)


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


README_TORCHRUN = "torchrun --standalone --nproc_per_node=2 -m hardneg_bench run --method simclr --dataset shapes --epochs 1"
"""The README's CPU command (section "Several GPUs: torchrun and Slurm")."""


def torchrun(command: str, runs: Path) -> subprocess.CompletedProcess:
    """``command`` (a torchrun line) with this Python's torchrun, the checkout and a private run store."""
    torchrun_script = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun_script)] if torchrun_script.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "HARDNEG_BENCH_RUNS": str(runs), "PYTHONPATH": str(Path(__file__).parents[1]), "COLUMNS": "200"}
    return subprocess.run(launcher + command.split()[1:], capture_output=True, text=True, env=env, timeout=600)


def test_the_readme_torchrun_command_runs_on_the_cpu(tmp_path):
    """The README's two-process command as written, on the CPU (Gloo, BatchNorm over the whole batch
    synchronised): both processes pretrain, process 0 alone evaluates, writes and prints; the
    ledger holds each stage once."""
    assert README_TORCHRUN in (Path(__file__).parents[1] / "README.md").read_text()
    runs = tmp_path / "runs"
    done = torchrun(README_TORCHRUN, runs)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (runs / "ledger.jsonl").read_text().splitlines()]
    stages = sorted((r["stage"], r["method"]) for r in records)
    assert stages == sorted({(r["stage"], r["method"]) for r in records}) and len(stages) == 8  # pretrain, probe, knn, transfer; simclr and random-init
    pretrained = next(r for r in records if r["stage"] == "pretrain" and r["method"] == "simclr")
    assert pretrained["metrics"]["processes"] == 2 and pretrained["metrics"]["process_group"] == "gloo"
    assert pretrained["config"]["model"]["bn_splits"] == 1 and pretrained["config"]["model"]["projector_batchnorm"]
    assert done.stdout.count("random-init") == 2  # the results table and the stage keys, once each
    assert done.stderr.count("simclr/shapes epoch 1/1") == 1  # the log line of process 0 alone


def test_torchrun_refusal_is_one_line_from_process_zero(tmp_path):
    """A run the processes cannot share (a batch of 255 for 2) is refused by every process at once:
    process 0 prints one line naming the setting, no process prints a traceback, each exits 2.
    What remains is torchrun's own report of failed processes (its log line, its traceback and a
    summary with each exit code), which the README shows."""
    runs = tmp_path / "runs"
    done = torchrun(README_TORCHRUN + " --batch-size 255", runs)
    assert done.returncode == 1  # torchrun's code when a process failed
    ours = [line for line in done.stderr.splitlines() if "hardneg_bench" in line or line.startswith("error:")]
    assert ours == ["error: pretrain.batch_size 255 cannot be shared equally among 2 processes: use a multiple of 2", "hardneg_bench FAILED"], done.stderr
    codes = re.findall(r"rank\s+: (\d) \(local_rank: \d\)\n\s+exitcode\s+: (-?\d+)", done.stderr)
    assert ("0", "2") in codes and all(code in ("2", str(-signal.SIGTERM)) for _, code in codes)  # torchrun may stop a slower one
    assert done.stdout == "" and not runs.exists()


@pytest.mark.parametrize("args", [["--set", "model.bn_splits=3"], ["--epochs", "many"]], ids=["config", "usage"])
def test_bad_input_under_torchrun_is_shown_by_process_zero_alone(tmp_path, args):
    """Refused before the processes form their group (a bad config, a bad option), from
    torchrun's environment: process 0 shows it, the others exit 2 in silence."""
    out = {}
    for rank in ("0", "1"):
        env = {**os.environ, "TORCHELASTIC_RUN_ID": "test", "RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": "2", "HARDNEG_BENCH_RUNS": str(tmp_path / "runs"), "COLUMNS": "200"}
        out[rank] = subprocess.run([sys.executable, "-m", "hardneg_bench", "run", "--method", "simclr", "--dataset", "shapes", *args], capture_output=True, text=True, env=env, timeout=120)
    assert out["0"].returncode == out["1"].returncode == 2
    assert out["0"].stderr.strip() and "Traceback" not in out["0"].stderr
    assert out["1"].stderr == out["1"].stdout == ""


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
