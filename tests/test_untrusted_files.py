"""Files of the run store stay data: a checkpoint or ``encoder.pt`` planted to run code when
unpickled (on a shared filesystem, say) is refused in one line and nothing in it runs; real
checkpoints still load, their RNG states restored exactly."""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from inprocess_cli import invoke

from hardneg_bench.config import config_key
from hardneg_bench.data.shapes import SHAPES
from hardneg_bench.engine.pretrain import CHECKPOINT, ENCODER, load_encoder, load_encoder_with_head, pretrain
from hardneg_bench.engine.runtime import Runtime, rng_state, set_rng_state
from hardneg_bench.pipeline import pretrain_stage
from hardneg_bench.recipes import resolve_config
from hardneg_bench.store import StoreError, atomic_torch_save, load_checkpoint, save_checkpoint

CPU = torch.device("cpu")
FAST = ["model.backbone=tiny", "pretrain.epochs=1", "pretrain.batch_size=32", "random_init_baseline=false"]


class Planted:
    """Unpickling it calls ``call(argument)``, which creates the marker file."""

    def __init__(self, call, argument: str) -> None:
        self.call, self.argument = call, argument

    def __reduce__(self):
        return self.call, (self.argument,)


def planted(kind: str, marker: Path) -> tuple[Planted, str]:
    """A planted object of ``kind`` and the global it asks for, as the unpickler names it."""
    if kind == "os.system":
        return Planted(os.system, f"touch {marker}"), f"{os.system.__module__}.system"
    return Planted(builtins.exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"


def assert_refused(err: pytest.ExceptionInfo, path: Path, asks_for: str) -> None:
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"refusing to load {path}: it asks to unpickle {asks_for}")
    assert "could run arbitrary code" in message


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
def test_a_planted_checkpoint_with_a_correct_checksum_is_refused_and_never_runs(tmp_path, kind):
    marker, path = tmp_path / "MARKER", tmp_path / "abc" / CHECKPOINT
    payload, asks_for = planted(kind, marker)
    save_checkpoint(path, {"epoch": 3, "rng": payload}, "abc")  # the store's own writer: key and SHA-256 are right
    with pytest.raises(StoreError) as err:
        load_checkpoint(path, "abc", CPU)
    assert_refused(err, path, asks_for)
    assert not marker.exists()
    record = torch.load(path, weights_only=True)  # the file really is the exploit:
    torch.load(io.BytesIO(record["state"].numpy().tobytes()), weights_only=False)  # unpickled freely, it runs
    assert marker.exists()


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_planted_encoder_is_refused_and_never_runs(tmp_path, kind, writer):
    marker, path = tmp_path / "MARKER", tmp_path / ENCODER
    payload, asks_for = planted(kind, marker)
    record = {"encoder": payload, "state_dict": {}}
    if writer == "torch.save":
        atomic_torch_save(record, path)
    else:  # a bare pickle: its globals cannot be listed, so the line says what kind of thing it asks for
        path.write_bytes(pickle.dumps(record, protocol=2))
        asks_for = "objects other than tensors and plain data"
    for load in (load_encoder, load_encoder_with_head):
        with pytest.raises(StoreError) as err:
            load(path, CPU)
        assert_refused(err, path, asks_for)
    assert not marker.exists()


def test_the_cli_stops_on_a_planted_checkpoint_in_one_line(tmp_path, monkeypatch):
    runs, marker = tmp_path / "runs", tmp_path / "MARKER"
    key = config_key(pretrain_stage(resolve_config("simclr", "shapes", overrides=FAST))[0])
    path = runs / "pretrain" / key / CHECKPOINT
    save_checkpoint(path, {"epoch": 0, "rng": planted("os.system", marker)[0]}, key)
    sets = [arg for override in FAST for arg in ("--set", override)]
    result = invoke(monkeypatch, "run", "-m", "simclr", "-d", "shapes", *sets, "--device", "cpu", "--no-progress", runs=runs)
    assert result.exit_code == 1 and not marker.exists()
    assert result.stderr.strip().startswith(f"error: refusing to load {path}") and len(result.stderr.strip().splitlines()) == 1


def test_a_checkpoint_of_an_older_version_is_refused_naming_the_stage_folder(tmp_path):
    """Before, numpy's RNG state was stored as a numpy array, which ``weights_only`` refuses."""
    path = tmp_path / "abc" / CHECKPOINT
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "rng": {"numpy": np.random.get_state()}}, buffer)
    payload = buffer.getvalue()
    atomic_torch_save({"key": "abc", "sha256": hashlib.sha256(payload).hexdigest(), "state": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}, path)
    with pytest.raises(StoreError, match=f"written by an older hardneg-bench.*remove {path.parent} to run that stage again") as err:
        load_checkpoint(path, "abc", CPU)
    assert "\n" not in str(err.value)


def draws() -> tuple:
    """The next numbers of Python's, numpy's and torch's generators (gaussians use their caches)."""
    return random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.standard_normal(), torch.rand(3).tolist()


def test_a_real_checkpoint_loads_as_data_and_restores_the_rng_states_exactly(tmp_path):
    cfg = resolve_config("simclr", "shapes", overrides=[*FAST, "pretrain.batch_size=16"])
    data = SHAPES.load("train", None, False)
    data = type(data)(data.images[:32], data.labels[:32])
    pretrain(cfg, SHAPES, data, tmp_path / "run", Runtime(CPU, num_workers=0, show_progress=False))
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT, "run", CPU)
    assert {"model", "optimizer", "schedule", "scaler", "rng", "history", "epoch"} <= set(state) and state["epoch"] == 1
    random.gauss(0, 1), np.random.standard_normal()  # both generators now hold a cached gaussian
    save_checkpoint(tmp_path / "rng" / CHECKPOINT, {"rng": rng_state()}, "rng")
    expected = draws()
    set_rng_state(load_checkpoint(tmp_path / "rng" / CHECKPOINT, "rng", CPU)["rng"])
    assert draws() == expected


@pytest.mark.parametrize("call", [os.system, builtins.exec], ids=["os.system", "builtins.exec"])
def test_a_planted_cifar_batch_is_refused_and_never_runs(tmp_path, call):
    """The data root may be shared too: a CIFAR batch file that names anything but numpy's array
    reconstruction is refused in one line before it runs; the fake archive's real pickles load."""
    from fake_datasets import write_fake_cifar10

    from hardneg_bench.data.base import DatasetMissingError
    from hardneg_bench.data.cifar import CIFAR10

    written = write_fake_cifar10(tmp_path, 20, 10)
    assert np.array_equal(CIFAR10.load("test", tmp_path, False).images.numpy(), written["test_images"])
    marker = tmp_path / "MARKER"
    payload = f"touch {marker}" if call is os.system else f"open({str(marker)!r}, 'w').close()"
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": Planted(call, payload), "labels": [0]}, f)
    with pytest.raises(DatasetMissingError) as refused:
        CIFAR10.load("test", tmp_path, False)
    assert len(str(refused.value).splitlines()) == 1 and "could run code" in str(refused.value)
    assert not marker.exists()
