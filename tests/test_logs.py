"""What `run` leaves in a log file (stderr not a terminal, as under Slurm or nohup): one plain line
per epoch, then the stage keys and the encoder's path; and what the experiment loggers receive."""

from __future__ import annotations

import csv
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli_runner import cli, ledger
from hardneg_bench.cli import app
from hardneg_bench.engine import loggers, progress

# two short epochs at 16 px, a short probe
FAST = ["--epochs", "2", "--batch-size", "256", "--set", "pretrain.augment.crop_size=16", "--set", "probe.epochs=5", "--set", "knn.k=10"]
EPOCH_LINE = re.compile(r"^simclr/shapes epoch (\d+)/2  loss (\S+)  lr (\S+)  ([\d,]+) img/s  elapsed (\d+:\d\d:\d\d)  ETA (\d+:\d\d:\d\d)$")


def test_a_log_gets_one_line_per_epoch_then_the_stage_keys_and_the_encoder(tmp_path):
    """Off a terminal there is no bar (drawn once at the end, cut at 80 columns, it told nothing):
    each epoch prints a line with the figures metrics.csv keeps; after the results, the key of
    every stage and where the encoder is. --logger tensorboard gets the same epochs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = tmp_path / "runs"
    done = cli("run", "--method", "simclr", "--dataset", "shapes", *FAST, "--logger", "tensorboard", runs=runs)
    assert done.returncode == 0, done.stderr
    records = ledger(runs)
    pretrained = next(r for r in records if r["stage"] == "pretrain" and r["method"] == "simclr")
    run_dir = runs / "pretrain" / pretrained["key"]
    epochs = list(csv.DictReader((run_dir / "metrics.csv").open()))

    lines = [EPOCH_LINE.match(line) for line in done.stderr.splitlines() if "epoch" in line]
    assert all(lines) and len(lines) == 2, done.stderr
    assert "━" not in done.stderr  # no bar
    for line, epoch in zip(lines, epochs):
        number, loss, lr, images_per_s, elapsed, eta = line.groups()
        assert number == epoch["epoch"] and float(loss) == round(float(epoch["loss"]), 4) and float(lr) == float(f"{float(epoch['lr']):.4g}")
        assert int(images_per_s.replace(",", "")) == round(float(epoch["images_per_s"]))
    assert lines[-1].group(6) == "0:00:00"

    # the stage keys: one row per stage, one column per encoder, as the ledger has them
    table = done.stdout[done.stdout.index("stage key") :].splitlines()
    assert table[0].split() == ["stage", "key", "simclr", "random-init"]
    rows = {" ".join(line.split()[:-2]): line.split()[-2:] for line in table[1:-1]}
    expected = {}
    for r in records:
        stage = r["stage"] if r["stage"] != "transfer" else f"transfer -> {r['eval_dataset']}"
        expected.setdefault(stage, ["", ""])[["simclr", "random-init"].index(r["method"])] = r["key"]
    assert rows == expected and set(rows) == {"pretrain", "probe", "knn", "transfer -> shapes-novel"}
    assert table[-1] == f"encoder: {run_dir / 'encoder.pt'}" and (run_dir / "encoder.pt").is_file()

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    for name in ("loss", "lr", "images_per_s", "seconds"):
        scalars = events.Scalars(f"pretrain/{name}")
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([float(e[name]) for e in epochs], rel=1e-6)


def test_on_a_terminal_the_live_bar_stays(monkeypatch):
    monkeypatch.setattr(progress, "console", Console(stderr=True, force_terminal=True))
    assert type(progress.training_progress(True, "simclr/shapes", 2, 10)) is progress.LiveBar
    monkeypatch.setattr(progress, "console", Console(stderr=True, force_terminal=False))
    assert type(progress.training_progress(True, "simclr/shapes", 2, 10)) is progress.EpochLines
    assert type(progress.training_progress(False, "simclr/shapes", 2, 10)) is progress.TrainingProgress


def test_a_logger_that_is_unknown_or_not_installed_is_bad_input(tmp_path, monkeypatch):
    env = {"HARDNEG_BENCH_RUNS": str(tmp_path / "runs"), "COLUMNS": "300"}
    unknown = CliRunner().invoke(app, ["run", "--method", "simclr", "--dataset", "shapes", "--logger", "mlflow"], env=env)
    assert unknown.exit_code == 2 and unknown.output.strip() == "error: unknown logger 'mlflow' (known: none, tensorboard, wandb)"
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda name: None)
    missing = CliRunner().invoke(app, ["reproduce", "shapes", "--logger", "wandb"], env=env)
    assert missing.exit_code == 2 and missing.output.strip() == "error: --logger wandb needs the wandb package: pip install 'hardneg-bench[wandb]'"
    assert not (tmp_path / "runs").exists()
