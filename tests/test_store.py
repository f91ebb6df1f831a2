"""The run store: atomic files, result markers, the append-only ledger."""

import json
import os

import torch

from hardneg_bench.store import RunStore, atomic_torch_save, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["file.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"x": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    try:
        atomic_torch_save({"x": Unpicklable()}, target)
    except RuntimeError:
        pass
    assert torch.load(target, weights_only=False) == {"x": 1}
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_finish_writes_result_then_ledger(tmp_path):
    store = RunStore(tmp_path)
    assert not store.is_done("probe", "k1")
    store.finish({"stage": "probe", "key": "k1", "metrics": {"test_accuracy": 50.0}})
    store.finish({"stage": "knn", "key": "k2", "metrics": {"test_accuracy": 40.0}})
    assert store.is_done("probe", "k1")
    assert store.read_result("probe", "k1")["metrics"]["test_accuracy"] == 50.0
    assert [r["key"] for r in store.ledger()] == ["k1", "k2"]


def test_ledger_skips_a_torn_last_line(tmp_path):
    store = RunStore(tmp_path)
    store.finish({"stage": "probe", "key": "k1", "metrics": {}})
    with store.ledger_path.open("a") as f:
        f.write(json.dumps({"stage": "knn", "key": "k2"})[:10])
    assert [r["key"] for r in store.ledger()] == ["k1"]
