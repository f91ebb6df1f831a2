"""`reproduce --dry-run`: what it does not know it prints as unknown (no total of nothing), it
counts ImageNet-100 in the data root, and it estimates from `bench` figures of this device when
the ledger has no comparable pretraining, saying where each estimate came from."""

from __future__ import annotations

import json
import torch

from fake_datasets import write_fake_imagenet
from hardneg_bench.config import config_key
from hardneg_bench.data.imagenet100 import class_list
from hardneg_bench.engine.runtime import device_name
from hardneg_bench.methods import get_method
from hardneg_bench.pipeline import pretrain_stage
from hardneg_bench.store import RunStore
from hardneg_bench.reports.tables import load_table
from inprocess_cli import invoke

CPU = device_name(torch.device("cpu"))


def rows_of(stdout: str) -> list[list[str]]:
    """The plan table's rows as cells (first line of each row)."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│") and line.split("│")[1].strip()]


def test_nothing_measured_is_unknown_not_zero_hours(tmp_path, monkeypatch):
    done = invoke(monkeypatch, "reproduce", "hcl-readme-stl10", "--dry-run", "--device", "cpu", runs=tmp_path / "runs")
    assert done.exit_code == 0, done.output
    assert "0.00 hours" not in done.stdout and "no estimate for the 6 to run" in done.stdout
    rows = rows_of(done.stdout)
    assert len(rows) == 6 and all(r[5] == "unknown" and r[6].startswith("nothing measured for resnet50, 32 px, batch 256") for r in rows)
    # and it says how to get a figure: the bench of the same throughput key (STL-10 at the table's 32 px)
    assert "hardneg-bench bench --method simclr --dataset stl10 --backbone resnet50 --batch-size 256 --device cpu --set pretrain.augment.crop_size=32" in done.stdout
    assert not (tmp_path / "runs").exists()


def test_imagenet100_is_counted_in_the_data_root_and_unknown_without_it(tmp_path, monkeypatch):
    table = load_table("mochi-in100")
    epochs = {row.label: table.cell_config(row, "imagenet100").pretrain.epochs for row in table.rows}
    missing = invoke(monkeypatch, "reproduce", "mochi-in100", "--dry-run", "--device", "cpu", runs=tmp_path / "runs")
    assert missing.exit_code == 0, missing.output
    assert [(r[4], r[5]) for r in rows_of(missing.stdout)] == [("unknown", "unknown")] * 2
    assert "counted when its files are in the data root" in missing.stdout

    data = tmp_path / "data"
    write_fake_imagenet(data, list(class_list()), 2)
    extra = data / "imagenet" / "train" / class_list()[0] / "one-more.JPEG"
    extra.write_bytes((data / "imagenet" / "train" / class_list()[0] / f"{class_list()[0]}_0.JPEG").read_bytes())
    (data / "imagenet" / "train" / "n99999999").mkdir()  # a class outside ImageNet-100: not counted
    (data / "imagenet" / "train" / "n99999999" / "x.JPEG").write_bytes(extra.read_bytes())
    counted = invoke(monkeypatch, "reproduce", "mochi-in100", "--dry-run", "--device", "cpu", "--data-root", str(data), runs=tmp_path / "runs")
    assert counted.exit_code == 0, counted.output
    assert {r[0]: r[4] for r in rows_of(counted.stdout)} == {label: f"{e * 201:,}" for label, e in epochs.items()}


def test_estimates_come_from_the_ledger_else_from_bench_on_this_device_and_say_which(tmp_path, monkeypatch):
    runs, batch = tmp_path / "runs", ["--set", "pretrain.batch_size=32"]
    bench = invoke(monkeypatch, "bench", "--method", "simclr", "--dataset", "shapes", "--device", "cpu", "--workers", "0", "--steps", "1", "--rounds", "1", "--warmup", "1", "--no-reference", *batch, runs=runs)
    assert bench.exit_code == 0, bench.output
    (kept,) = [json.loads(line) for line in (runs / "bench.jsonl").read_text().splitlines()]
    table = load_table("shapes")
    cells = {row.label: (row.method, table.cell_config(row, "shapes", overrides=["pretrain.batch_size=32"])) for row in table.rows}
    lab = {label for label, (method, _) in cells.items() if get_method(method).cls.lab_split}  # CMC's L and ab streams: another throughput
    assert 0 < len(lab) < len(cells)

    # 1. the bench figure (SimCLR's RGB CNN at batch 32) estimates every RGB row; CMC's rows are unknown
    done = invoke(monkeypatch, "reproduce", "shapes", "--dry-run", "--device", "cpu", *batch, runs=runs)
    assert done.exit_code == 0, done.output
    rows = {r[0]: r for r in rows_of(done.stdout)}
    for label, (method, cfg) in cells.items():
        images = cfg.pretrain.epochs * 5000
        assert rows[label][4] == f"{images:,}"
        if label in lab:
            assert rows[label][5] == "unknown"
        else:
            assert rows[label][5] == f"{images / kept['full']['images_per_s'] / 3600:.2f}" and rows[label][6].startswith(f"bench of {kept['date']} (simclr, random images")
    rgb = len(cells) - len(lab)
    assert f"estimated {sum(c.pretrain.epochs * 5000 for l, (_, c) in cells.items() if l not in lab) / kept['full']['images_per_s'] / 3600:.2f} hours" in done.stdout
    assert f"for {rgb} of the {len(cells)} to run, the other {len(lab)} unknown (not in this total)" in done.stdout

    # 2. a finished CMC pretraining on this device in the ledger: CMC's rows estimated from it
    method, cmc = next(cells[label] for label in lab)
    config, label = pretrain_stage(cmc)
    RunStore(runs).append_ledger({"stage": "pretrain", "key": config_key(config), **label, "metrics": {"images_per_s": 1000.0, "device": CPU}, "config": config})
    again = invoke(monkeypatch, "reproduce", "shapes", "--dry-run", "--device", "cpu", *batch, runs=runs)
    rows = {r[0]: r for r in rows_of(again.stdout)}
    for label in lab:
        images = cells[label][1].pretrain.epochs * 5000
        assert rows[label][5] == f"{images / 1000.0 / 3600:.2f}" and rows[label][6] == "1 finished pretraining in the ledger"
    assert f"hours of pretraining for the {len(cells)} to run." in again.stdout
