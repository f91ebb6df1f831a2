"""``hardneg-bench evaluate --checkpoint FILE``: the encoder in a file goes through the same probe
and kNN stages as a pretraining, cached by the file's content, recorded with its SHA-256, format
and origin, and labelled in the report as the checkpoint it is."""

import hashlib
import json
import shutil

import torch

from hardneg_bench.config import config_key
from hardneg_bench.data.registry import get_dataset
from hardneg_bench.evaluations.features import extract_features
from hardneg_bench.evaluations.linear import fast_linear_probe
from hardneg_bench.engine.pretrain import encoder_record, load_encoder
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.engine.batches import on_device
from hardneg_bench.engine.trainer import build_method
from hardneg_bench.recipes import resolve_config
from hardneg_bench.store import RunStore, atomic_torch_save
from inprocess_cli import invoke

SETTINGS = ["--set", "probe.epochs=3", "--set", "knn.k=5", "--set", "transfer=[]"]


def _encoder_file(path):
    """An encoder.pt of a (randomly initialised) tiny SimCLR model on shapes."""
    cfg, spec = resolve_config("simclr", "shapes"), get_dataset("shapes")
    torch.manual_seed(0)
    model = build_method(cfg, spec, 64)
    atomic_torch_save(encoder_record(cfg, spec, model.backbone, model.projector), path)
    return cfg


def test_a_checkpoint_is_evaluated_once_per_content_and_recorded_with_its_origin(tmp_path, monkeypatch):
    runs, first = tmp_path / "runs", tmp_path / "mine.pt"
    cfg = _encoder_file(first)
    result = invoke(monkeypatch, "evaluate", "--checkpoint", str(first), "--dataset", "shapes", *SETTINGS, runs=runs)
    assert result.exit_code == 0, result.output
    assert "mine.pt (hardneg-bench weights)" in result.output
    ledger = list(RunStore(runs).ledger())
    (imported,) = [r for r in ledger if r["stage"] == "checkpoint"]
    assert imported["metrics"]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert imported["metrics"]["format"] == "hardneg-bench" and imported["metrics"]["origin"] == str(first.resolve())
    evaluations = {r["stage"]: r for r in ledger if r["parent"] == imported["key"]}
    assert set(evaluations) == {"probe", "knn"}

    # the probe is the one a direct evaluation of the same encoder gives
    runtime = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
    spec, encoder = get_dataset("shapes"), load_encoder(first, torch.device("cpu"))
    probe_cfg = resolve_config("simclr", "shapes", overrides=["probe.epochs=3"]).probe
    features = [extract_features(encoder, on_device(spec.load(split, tmp_path, False), runtime.device), spec, probe_cfg, runtime) for split in ("train", "test")]
    direct = fast_linear_probe(*features, spec.num_classes, probe_cfg, cfg.seed)
    assert abs(evaluations["probe"]["metrics"]["test_accuracy"] - direct["test_accuracy"]) < 1e-9

    # the same bytes under another name: the same stages, nothing computed again
    stages = sorted(p.name for p in (runs / "checkpoint").iterdir())
    second = tmp_path / "renamed.pth"
    shutil.copy(first, second)
    again = invoke(monkeypatch, "evaluate", "--checkpoint", str(second), "--dataset", "shapes", *SETTINGS, runs=runs)
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in (runs / "checkpoint").iterdir()) == stages
    assert len([r for r in list(RunStore(runs).ledger()) if r["stage"] == "probe"]) == 1


def test_a_foreign_file_is_one_line_and_exit_2(tmp_path, monkeypatch):
    junk = tmp_path / "notes.pt"
    junk.write_text("not a checkpoint")
    result = invoke(monkeypatch, "evaluate", "--checkpoint", str(junk), "--dataset", "shapes", runs=tmp_path / "runs")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "notes.pt" in result.output


TABLE = """
title: released weights check
source: this test
metric: linear
datasets: [shapes]
common:
  probe: {epochs: 3}
  knn: {k: 5}
  transfer: []
rows:
  - label: SimCLR
    method: simclr
    released: {shapes: {file: mine.pt, format: hardneg-bench, url: "https://example.org/mine.pt"}}
  - label: Other
    method: simclr
    config: {method_params: {temperature: 0.2}}
    released: {shapes: {file: other.pt, format: hardneg-bench, url: "https://example.org/other.pt"}}
"""


def test_reproduce_checkpoints_evaluates_the_released_weights_it_finds_and_names_the_missing(tmp_path, monkeypatch):
    """``reproduce TABLE --checkpoints DIR``: the files found are evaluated with their cell's
    settings and shown in a "released weights" column; one line names the missing ones and
    where they are published; a folder with none of them is one error line, exit 2."""
    from hardneg_bench.reports import tables

    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "released-check.yaml").write_text(TABLE)
    monkeypatch.setattr(tables, "tables_dir", lambda: tmp_path / "tables")
    folder, runs = tmp_path / "weights", tmp_path / "runs"
    folder.mkdir()
    empty = invoke(monkeypatch, "reproduce", "released-check", "--checkpoints", str(folder), runs=runs)
    assert empty.exit_code == 2 and "none of the 2 released weights" in empty.output

    _encoder_file(folder / "mine.pt")
    result = invoke(monkeypatch, "reproduce", "released-check", "--checkpoints", str(folder), runs=runs, columns=300)
    assert result.exit_code == 0, result.output
    assert f"missing in {folder}: other.pt (https://example.org/other.pt)" in result.output
    (probe,) = [r for r in RunStore(runs).ledger() if r["stage"] == "probe"]
    assert probe["checkpoint"] == "mine.pt"
    row = next(line for line in result.output.splitlines() if line.lstrip("│ ").startswith("SimCLR"))
    assert f"{probe['metrics']['test_accuracy']:.2f} (1 seed)" in row
    assert not any(r["stage"] == "pretrain" for r in RunStore(runs).ledger())  # released weights only: nothing pretrained


def test_a_row_of_released_weights_only_is_never_pretrained_and_shows_their_evaluation(tmp_path, monkeypatch):
    """A ``released_only`` row (a supervised model's weights): ``reproduce`` pretrains nothing for
    it, ``--checkpoints`` evaluates its file, and the report shows that evaluation, no "ours"."""
    from hardneg_bench.reports import tables

    (tmp_path / "tables").mkdir()
    only = TABLE.replace("  - label: SimCLR\n    method: simclr\n", "  - label: SimCLR\n    method: simclr\n    released_only: true\n")
    (tmp_path / "tables" / "released-only.yaml").write_text(only.split("  - label: Other")[0])
    monkeypatch.setattr(tables, "tables_dir", lambda: tmp_path / "tables")
    folder, runs = tmp_path / "weights", tmp_path / "runs"
    folder.mkdir()
    plain = invoke(monkeypatch, "reproduce", "released-only", "--set", "random_init_baseline=false", runs=runs, columns=300)
    assert plain.exit_code == 0, plain.output
    assert not any(r["stage"] == "pretrain" for r in RunStore(runs).ledger())

    _encoder_file(folder / "mine.pt")
    done = invoke(monkeypatch, "reproduce", "released-only", "--checkpoints", str(folder), "--set", "random_init_baseline=false", runs=runs, columns=300)
    assert done.exit_code == 0, done.output
    (probe,) = [r for r in RunStore(runs).ledger() if r["stage"] == "probe"]
    report = invoke(monkeypatch, "report", "--table", "released-only", "--set", "random_init_baseline=false", "--format", "json", "--no-write", runs=runs)
    (cell,) = json.loads(report.stdout)
    assert (cell["method"], cell["n"], cell["released_only"]) == ("hardneg-bench weights", 0, True)
    assert cell["released_weights"] == round(probe["metrics"]["test_accuracy"], 2) and cell["released_n"] == 1
