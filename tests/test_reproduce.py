"""``reproduce`` and the table report end to end on the built-in dataset: the plan, the runs, the
report formats and the files under results/, all read back from the ledger."""

import io
import json

import pandas as pd
import pytest

from typer.testing import CliRunner

from cli_runner import cli, files_under, ledger
from hardneg_bench.cli import app
from hardneg_bench.tables import table_names

QUICK = ["--set", "pretrain.epochs=1", "--set", "probe.epochs=5"]


def test_every_table_prints_its_plan_and_runs_nothing(tmp_path):
    runs = tmp_path / "runs"
    for name in table_names():
        result = CliRunner().invoke(app, ["reproduce", name, "--dry-run", "--seeds", "2"], env={"HARDNEG_BENCH_RUNS": str(runs), "COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "to run" in result.output and "runs cached" in result.output
    assert files_under(runs) == set()


def test_reproduce_runs_a_table_and_the_report_agrees_with_the_ledger(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    done = cli("reproduce", "shapes", *QUICK, "--no-progress", "--results-dir", str(results), runs=runs, timeout=900)
    assert done.returncode == 0, done.stderr
    assert (results / "shapes.md").read_text().startswith("# Every method") and (results / "shapes.png").stat().st_size > 0

    # the report's cells are the ledger's probe records of the table's pretrainings
    records = ledger(runs)
    probes = {r["method"]: r["metrics"]["test_accuracy"] for r in records if r["stage"] == "probe" and r["method"] != "random-init"}
    assert len(probes) == 11
    csv = pd.read_csv(io.StringIO(cli("report", "--table", "shapes", *QUICK, "--format", "csv", "--no-write", runs=runs).stdout))
    assert dict(zip(csv["method"], csv["mean"])) == pytest.approx(probes)
    assert set(csv["n"]) == {1}
    floors = {round(r["metrics"]["test_accuracy"], 6) for r in records if r["stage"] == "probe" and r["method"] == "random-init"}
    assert {round(v, 6) for v in csv["random_init"]} <= floors and len(floors) == 2  # the RGB CNN, and CMC's Lab streams
    rows = json.loads(cli("report", "--table", "shapes", *QUICK, "--format", "json", "--no-write", runs=runs).stdout)
    assert {r["method"] for r in rows} == set(probes)
    latex = cli("report", "--table", "shapes", *QUICK, "--format", "latex", "--no-write", runs=runs).stdout
    assert latex.count("\\begin{tabular}") == 1 and "\\end{tabular}" in latex

    # a second reproduce trains nothing; the plan says every run is cached
    again = cli("reproduce", "shapes", *QUICK, "--dry-run", runs=runs)
    assert "11 of 11 runs cached" in again.stdout
    diagnostics = cli("report", "--diagnostics", "--format", "csv", "--results-dir", str(results), runs=runs)
    frame = pd.read_csv(io.StringIO(diagnostics.stdout))
    assert set(frame["method"]) == set(probes) and frame["hardest_same_class"].between(0, 1).all()
    assert (results / "diagnostics.png").is_file()
