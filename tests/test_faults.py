"""Faults: runs killed anywhere finish with the uninterrupted run's numbers, signals checkpoint
mid-epoch, a non-finite loss fails the run cleanly, locks and full disks leave the store whole."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hardneg_bench import faults
from hardneg_bench.cli import app
from hardneg_bench.config import ConfigError
from hardneg_bench.data import registry
from hardneg_bench.data.base import ImageTensorSet
from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.preemption import Interrupted
from hardneg_bench.engine.pretrain import CHECKPOINT, TrainingDiverged
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.methods.simclr import SimCLR
from hardneg_bench.pipeline import Pipeline, pretrain_stage
from hardneg_bench.recipes import resolve_config
from hardneg_bench.store import RunStore, StageBusy, StoreError, atomic_write_text, load_checkpoint, save_checkpoint

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
SIZES = {"pretrain": 192, "train": 192, "test": 64}
FAST = ["model.backbone=tiny", "pretrain.epochs=12", "pretrain.batch_size=64", "probe.epochs=5", "knn.k=10", "pretrain.diagnostics_every=2", "pretrain.checkpoint_every=1"]


@pytest.fixture(scope="module", autouse=True)
def tiny_dataset():
    """`faults-tiny`: the first images of `shapes` (192 to pretrain and probe, 64 to test)."""
    shapes = get_dataset("shapes")

    def load(split, root, download):
        full = shapes.load("train" if split == "pretrain" else split, root, download)
        return ImageTensorSet(full.images[: SIZES[split]], full.labels[: SIZES[split]])

    for split in ("train", "test"):
        load(split, Path("."), False)  # generated once here; forked children inherit the cache
    registry.DATASETS["faults-tiny"] = replace(shapes, name="faults-tiny", load=load, split_sizes=SIZES, transfer_target=None)
    yield
    del registry.DATASETS["faults-tiny"]


def config(*overrides: str):
    return resolve_config("simclr", "faults-tiny", overrides=[*FAST, *overrides])


def _child(root: str, target: str) -> None:
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
    faults.arm(target)
    try:
        Pipeline(config(), RunStore(Path(root)), CPU, Path(root) / "data", False).run()
    except Interrupted as err:
        sys.exit(err.exit_code)


def run_child(root: Path, target: str = "") -> int:
    process = multiprocessing.get_context("fork").Process(target=_child, args=(str(root), target))
    process.start()
    process.join(120)
    return process.exitcode


def results(root: Path) -> dict:
    """Each finished stage's numbers (times left out), by (stage, key)."""
    out = {}
    for r in RunStore(root).ledger():
        assert (r["stage"], r["key"]) not in out, "a stage recorded twice"
        out[r["stage"], r["key"]] = {k: v for k, v in r["metrics"].items() if k in ("final_loss", "test_accuracy", "train_accuracy", "diagnostics", "epochs_trained")}
    return out


def assert_readable(root: Path) -> None:
    """Every file a reader opens parses: the ledger, each result.json, each checkpoint."""
    list(RunStore(root).ledger())
    for result in root.glob("*/*/result.json"):
        json.loads(result.read_text())
    for checkpoint in root.glob("pretrain/*/" + CHECKPOINT):
        assert load_checkpoint(checkpoint, checkpoint.parent.name, torch.device("cpu")) is not None


def test_killed_anywhere_the_run_finishes_with_the_uninterrupted_numbers(tmp_path):
    assert run_child(tmp_path / "straight") == 0
    expected = results(tmp_path / "straight")
    assert len(expected) == 6  # pretrain, probe, knn for simclr and for the random-init encoder
    killed_root, rng, kills = tmp_path / "killed", random.Random(0), []
    # While pretraining: kills after an optimizer step or halfway through a store write
    # (config, metrics, checkpoint), each at most one epoch past the last checkpoint. Then, for
    # the evaluation stages: halfway through a write or through the second ledger line of a child
    # (its first restores the line the previous kill tore).
    for attempt in range(60):
        if len(kills) < 14:
            target = f"{rng.choice(['step', 'write'])}:{rng.randint(1, 3)}"
        else:
            target = rng.choice(["ledger:2", "ledger:2", "write:1", "write:2"])
        code = run_child(killed_root, target)
        assert code in (0, -9), (target, code)
        assert_readable(killed_root)
        if code == 0:
            break
        kills.append(target.split(":")[0])
    assert len(kills) >= 20 and {"step", "write", "ledger"} <= set(kills), kills
    assert run_child(killed_root) == 0
    assert results(killed_root) == expected


@pytest.mark.parametrize("signal_name,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_saves_a_checkpoint_mid_epoch_and_the_run_continues_exactly(tmp_path, signal_name, code):
    assert run_child(tmp_path / "straight") == 0
    assert run_child(tmp_path / "stopped", f"step:5:{signal_name}") == code  # epoch 2, step 2 of 3
    key = pretrain_stage(config())[0]
    from hardneg_bench.config import config_key

    run_dir = tmp_path / "stopped" / "pretrain" / config_key(key)
    state = load_checkpoint(run_dir / CHECKPOINT, run_dir.name, torch.device("cpu"))
    assert (state["epoch"], state["step"]) == (1, 2) and not (run_dir / "result.json").exists()
    assert run_child(tmp_path / "stopped") == 0
    assert results(tmp_path / "stopped") == results(tmp_path / "straight")


def test_a_non_finite_loss_fails_the_run_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    objective, calls = SimCLR.objective, []

    def poisoned(self, z1, z2):
        calls.append(1)
        loss = objective(self, z1, z2)
        return loss * float("nan") if len(calls) == 5 else loss  # epoch 2, step 2

    monkeypatch.setattr(SimCLR, "objective", poisoned)
    store = RunStore(tmp_path)
    with pytest.raises(TrainingDiverged, match=r"loss became nan in epoch 2, step 2 of simclr on faults-tiny; last good checkpoint kept: epoch 1"):
        Pipeline(config(), store, CPU, tmp_path / "data", False).run()
    (failed,) = list(store.ledger(failed=True))
    assert failed["status"] == "failed" and "epoch 2, step 2" in failed["error"] and list(store.ledger()) == []
    run_dir = store.stage_dir("pretrain", failed["key"])
    assert load_checkpoint(run_dir / CHECKPOINT, failed["key"], torch.device("cpu"))["epoch"] == 1
    listed = CliRunner().invoke(app, ["list", "runs", "--runs-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert listed.exit_code == 0 and failed["key"] in listed.output and "failed" in listed.output
    report = CliRunner().invoke(app, ["report", "--runs", "--runs-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert report.exit_code == 1 and "no finished results" in report.output  # the failed run is not a result
    monkeypatch.setattr(SimCLR, "objective", objective)
    records = Pipeline(config(), store, CPU, tmp_path / "data", False).run()
    assert {r["stage"] for r in records} == {"pretrain", "probe", "knn"} and len(list(store.ledger())) == 6


def test_damaged_and_foreign_checkpoints_are_never_loaded(tmp_path, capsys):
    path = tmp_path / "abc" / CHECKPOINT
    save_checkpoint(path, {"epoch": 1}, "abc")
    save_checkpoint(path, {"epoch": 2}, "abc")  # epoch 1 becomes the previous checkpoint
    assert load_checkpoint(path, "abc", torch.device("cpu"))["epoch"] == 2
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    assert load_checkpoint(path, "abc", torch.device("cpu"))["epoch"] == 1
    assert "ignoring checkpoint" in capsys.readouterr().err
    assert load_checkpoint(path, "other-stage", torch.device("cpu")) is None
    assert "belongs to stage abc" in capsys.readouterr().err
    record = torch.load(path.with_name(CHECKPOINT + ".prev"), weights_only=True)
    record["state"][-1] ^= 1  # one flipped bit
    torch.save(record, path)
    path.with_name(CHECKPOINT + ".prev").unlink()
    assert load_checkpoint(path, "abc", torch.device("cpu")) is None
    assert "checksum" in capsys.readouterr().err


def test_the_ledger_survives_a_torn_last_line(tmp_path):
    store = RunStore(tmp_path)
    store.append_ledger({"stage": "probe", "key": "a", "metrics": {}})
    with store.ledger_path.open("a") as f:
        f.write('{"stage": "probe", "key": "b", "met')  # a writer killed mid-line
    store.append_ledger({"stage": "probe", "key": "c", "metrics": {}})
    assert [r["key"] for r in store.ledger()] == ["a", "c"]


def _hold_lock_then_die(root: str, key: str, ready) -> None:
    with RunStore(Path(root)).stage_lock("pretrain", key):
        ready.set()
        os.kill(os.getpid(), 9)


def test_one_stage_is_computed_by_one_process_and_a_dead_holder_frees_it(tmp_path):
    store = RunStore(tmp_path)
    with store.stage_lock("pretrain", "k"):
        with pytest.raises(StageBusy, match="being computed by another process"):
            with RunStore(tmp_path).stage_lock("pretrain", "k"):
                pass
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    holder = context.Process(target=_hold_lock_then_die, args=(str(tmp_path), "j", ready))
    holder.start()
    holder.join(30)
    assert ready.is_set() and holder.exitcode == -9
    with store.stage_lock("pretrain", "j"):  # the killed holder's lock is free
        pass


@pytest.mark.parametrize("code,reason", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "the file system is read-only")])
def test_a_full_or_read_only_disk_fails_in_one_line_and_keeps_the_store(tmp_path, monkeypatch, code, reason):
    store = RunStore(tmp_path)
    atomic_write_text(tmp_path / "probe" / "a" / "result.json", "{}")
    store.append_ledger({"stage": "probe", "key": "a", "metrics": {}})
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def no_space(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(StoreError, match=f"cannot write .*result.json: {reason}"):
        atomic_write_text(tmp_path / "probe" / "a" / "result.json", '{"new": 1}')
    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(StoreError, match=f"cannot write .*ledger.jsonl: {reason}"):
        store.append_ledger({"stage": "probe", "key": "b", "metrics": {}})
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # no temporary file left, nothing changed


def test_checks_across_keys_stop_bad_configs_before_any_work():
    with pytest.raises(ConfigError, match="queue_size': 64 is smaller than the batch of 128"):
        resolve_config("moco-v2", "shapes", overrides=["method_params.queue_size=64", "pretrain.batch_size=128"])
    with pytest.raises(ConfigError, match="bn_splits': 3 BatchNorm groups do not divide the batch of 128"):
        resolve_config("simclr", "shapes", overrides=["model.bn_splits=3", "pretrain.batch_size=128"])
    with pytest.raises(ConfigError, match="batch_size': 6000 is larger than the 5000 pretrain images of shapes"):
        resolve_config("simclr", "shapes", overrides=["pretrain.batch_size=6000"])


def _append_many(root: str, tag: str) -> None:
    store = RunStore(Path(root))
    for i in range(150):
        store.append_ledger({"stage": "probe", "key": f"{tag}{i}", "metrics": {"test_accuracy": float(i)}, "padding": "x" * 3000})


def test_two_processes_append_to_one_ledger_without_corrupting_it(tmp_path):
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(str(tmp_path), tag)) for tag in "ab"]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    keys = [r["key"] for r in RunStore(tmp_path).ledger()]
    assert sorted(keys) == sorted(f"{t}{i}" for t in "ab" for i in range(150))
    assert len(RunStore(tmp_path).ledger_path.read_text().splitlines()) == 300


def test_a_finished_run_is_read_back_from_a_read_only_store(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    first = Pipeline(config(), store, CPU, tmp_path / "data", False).run()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    for name in ("replace", "mkdir", "write"):
        monkeypatch.setattr(os, name, read_only)
    monkeypatch.setattr("filelock.FileLock.acquire", read_only)
    again = Pipeline(config(), store, CPU, tmp_path / "data", False).run()
    assert [(r["stage"], r["key"], r["metrics"]) for r in again] == [(r["stage"], r["key"], r["metrics"]) for r in first]
