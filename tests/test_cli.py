"""The command line end to end on the built-in dataset: run, cache, resume, report, list, errors."""

import json
import time
from pathlib import Path

from cli_runner import cli, ledger
from inprocess_cli import invoke

FAST = ["--epochs", "2", "--batch-size", "128", "--set", "probe.epochs=20", "--no-progress"]


def test_missing_dataset_says_where_it_looked(tmp_path):
    result = cli("run", "--method", "simclr", "--dataset", "cifar10", "--no-download", runs=tmp_path / "runs", data=tmp_path / "data")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert str(tmp_path / "data") in message.replace("\n", "")


def test_run_caches_every_stage_and_report_reads_the_ledger(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    first = cli("run", "--method", "simclr", "--dataset", "shapes", *FAST, runs=runs)
    assert first.returncode == 0, first.stderr
    records = ledger(runs)
    stages = sorted((r["stage"], r["method"]) for r in records)
    assert stages == sorted(
        [("pretrain", "simclr"), ("probe", "simclr"), ("knn", "simclr"), ("transfer", "simclr"),
         ("pretrain", "random-init"), ("probe", "random-init"), ("knn", "random-init"), ("transfer", "random-init")]
    )
    for column in ("linear (fast)", "kNN", "transfer -> shapes-novel", "random-init", "simclr"):
        assert column in first.stdout
    pretrain = next(r for r in records if r["stage"] == "pretrain" and r["method"] == "simclr")
    run_dir = runs / "pretrain" / pretrain["key"]
    assert {"config.yaml", "checkpoint.pt", "encoder.pt", "metrics.csv", "result.json"} <= {p.name for p in run_dir.iterdir()}
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 2
    assert pretrain["metrics"]["images_per_s"] > 0 and pretrain["environment"]["torch"]

    started = time.perf_counter()
    second = cli("run", "--method", "simclr", "--dataset", "shapes", *FAST, runs=runs)
    assert second.returncode == 0 and time.perf_counter() - started < 15
    assert len(ledger(runs)) == len(records)  # nothing recomputed

    report = invoke(monkeypatch, "report", "--format", "json", runs=runs)  # in this process: the report only reads
    rows = json.loads(report.stdout)
    assert {r["method"] for r in rows} == {"simclr", "random-init"}
    markdown = invoke(monkeypatch, "report", "--format", "markdown", runs=runs).stdout
    assert "| method" in markdown and "simclr" in markdown
    assert "\\begin{tabular}" in invoke(monkeypatch, "report", "--format", "latex", runs=runs).stdout
    assert invoke(monkeypatch, "report", "--format", "csv", runs=runs).stdout.startswith("method,dataset,backbone,epochs")

    changed = cli("run", "--method", "simclr", "--dataset", "shapes", *FAST, "--set", "knn.k=5", runs=runs)
    assert changed.returncode == 0
    new = ledger(runs)[len(records):]
    assert sorted(r["stage"] for r in new) == ["knn", "knn"]  # only what depends on knn.k


def test_list_commands(tmp_path, monkeypatch):
    methods = invoke(monkeypatch, "list", "methods", runs=tmp_path)
    assert methods.exit_code == 0 and "simclr" in methods.stdout and "temperature=0.5" in methods.stdout
    datasets = invoke(monkeypatch, "list", "datasets", runs=tmp_path).stdout
    for name in ("shapes", "shapes-novel", "cifar10", "cifar100", "stl10", "imagenet100"):
        assert name in datasets
    assert invoke(monkeypatch, "list", "runs", runs=tmp_path).exit_code == 0


def test_quickstart_recipe_beats_random_init_by_ten_points(tmp_path):
    """The README's main job, as written: SimCLR's linear probe on shapes beats a randomly
    initialised encoder of the same architecture by at least 10 points (about 2 min on 2 cores),
    and the command prints the table the README shows, number for number."""
    runs = tmp_path / "runs"
    result = cli("run", "--method", "simclr", "--dataset", "shapes", runs=runs)
    assert result.returncode == 0, result.stderr
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = readme[readme.index("pip install -e . && hardneg-bench run --method simclr --dataset shapes") :]
    rows = [line for line in shown[shown.index("| method") :].splitlines()[2:4]]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        printed = next(line for line in result.stdout.splitlines() if line.strip("│ ").startswith(cells[0] + " "))
        assert [cell.strip() for cell in printed.strip("│ ").split("│")] == cells, (row, printed)
    linear = {r["method"]: r["metrics"]["test_accuracy"] for r in ledger(runs) if r["stage"] == "probe"}
    transfer = {r["method"]: r["metrics"]["test_accuracy"] for r in ledger(runs) if r["stage"] == "transfer"}
    assert linear["simclr"] >= linear["random-init"] + 10, linear
    assert transfer["simclr"] > transfer["random-init"], transfer
