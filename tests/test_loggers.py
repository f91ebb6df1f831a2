"""Weights & Biases, offline by default: the pretraining's run, keyed by its stage key, with the
resolved config and every epoch's scalars as W&B stored them (read back from its run file)."""

from __future__ import annotations

import csv
import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hardneg_bench.config import to_dict
from hardneg_bench.data.shapes import SHAPES
from hardneg_bench.engine.pretrain import pretrain
from hardneg_bench.engine.runtime import Runtime

from test_pretrain import small_config, subset


def wandb_records(path: Path):
    """The records of a W&B run file (``run-<id>.wandb``): LevelDB's log format (32 KiB blocks of
    chunks, each with a 7-byte header: checksum, length, type) after a 7-byte file header, each
    record a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    block, header = 32768, 7
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = header, b""
    while position + header <= len(data):
        if block - position % block < header:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + header])
        pending += data[position + header : position + header + length]
        position += header + length
        if kind in (1, 4):  # a full record, or a record's last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def key(item) -> str:
    """A W&B config or history item's key (newer versions write it as a one-part nested key)."""
    return item.key or ".".join(item.nested_key)


def test_wandb_run_gets_the_config_and_every_epochs_scalars_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):  # nothing in the home folder
        monkeypatch.setenv(name, str(tmp_path / name))
    cfg = small_config()
    run_dir = tmp_path / "0123456789abcdef"  # the stage key
    pretrain(cfg, SHAPES, subset(128), run_dir, Runtime(torch.device("cpu"), num_workers=0, show_progress=False, logger="wandb"))
    epochs = list(csv.DictReader((run_dir / "metrics.csv").open()))

    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-0123456789abcdef.wandb")  # offline: a file, nothing sent
    records = list(wandb_records(run_file))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_id == "0123456789abcdef" and run.display_name == "simclr-shapes-0123456789abcdef" and run.project == "hardneg-bench"
    config = {key(item): json.loads(item.value_json) for item in run.config.update if key(item) != "_wandb"}
    assert config == json.loads(json.dumps(to_dict(cfg)))

    history = [{key(item): json.loads(item.value_json) for item in r.history.item} for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["_step"] for h in history] == [1, 2]
    for logged, epoch in zip(history, epochs):
        scalars = {k.removeprefix("pretrain/"): v for k, v in logged.items() if k.startswith("pretrain/")}
        assert scalars.keys() == epoch.keys() - {"epoch", "steps"}
        assert scalars == pytest.approx({k: float(epoch[k]) for k in scalars}, rel=1e-12)


def test_no_logger_writes_nothing_beside_the_run_store(tmp_path):
    pretrain(replace(small_config(), pretrain=replace(small_config().pretrain, epochs=1)), SHAPES, subset(64), tmp_path, Runtime(torch.device("cpu"), num_workers=0, show_progress=False))
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", "encoder.pt", "metrics.csv"}
