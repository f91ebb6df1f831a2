"""``reproduce`` and the table report end to end on the built-in dataset: the plan, the runs, the
report formats and the files under results/, all read back from the ledger."""

import io
import json

import pandas as pd
import pytest

from typer.testing import CliRunner

from cli_runner import cli, files_under, ledger
from hardneg_bench.cli import app
from hardneg_bench.reports.tables import table_names

QUICK = ["--set", "pretrain.epochs=1", "--set", "probe.epochs=5"]


def test_every_table_prints_its_plan_and_runs_nothing(tmp_path):
    runs = tmp_path / "runs"
    for name in table_names():
        result = CliRunner().invoke(app, ["reproduce", name, "--dry-run", "--seeds", "2"], env={"HARDNEG_BENCH_RUNS": str(runs), "COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "to run" in result.output and "runs cached" in result.output
    assert files_under(runs) == set()


def test_reproduce_runs_a_table_and_the_report_agrees_with_the_ledger(tmp_path):
    runs = tmp_path / "runs"
    done = cli("reproduce", "shapes", *QUICK, "--no-progress", runs=runs, timeout=900)
    assert done.returncode == 0, done.stderr
    results = runs / "results"  # by default next to the run store, never the checkout's results/
    assert f"wrote {results / 'shapes.md'} (11 results)" in done.stdout and f"wrote {results / 'shapes.png'} (11 results)" in done.stdout
    markdown = (results / "shapes.md").read_text()
    assert markdown.startswith("# Every method") and markdown.splitlines()[0].endswith("run with pretrain.epochs=1, probe.epochs=5")
    assert (results / "shapes.png").stat().st_size > 0

    # one epoch is inside MoCHi's 3-epoch warm-up on shapes: it trains MoCo-v2, and says so
    assert "note: this mochi run trains moco-v2's objective: its 3-epoch warm-up covers the whole 1-epoch run" in done.stdout
    mochi = next(line for line in markdown.splitlines() if line.startswith("| MoCHi "))
    assert "(1 seed) ‡" in mochi and "‡ MoCHi on shapes trained as moco-v2" in markdown
    assert sum("‡" in line for line in markdown.splitlines() if line.startswith("| ")) == 1

    # the report's cells are the ledger's probe records of the table's pretrainings
    records = ledger(runs)
    probes = {r["method"]: r["metrics"]["test_accuracy"] for r in records if r["stage"] == "probe" and r["method"] != "random-init"}
    assert len(probes) == 11
    csv = pd.read_csv(io.StringIO(cli("report", "--table", "shapes", *QUICK, "--format", "csv", "--no-write", runs=runs).stdout))
    assert dict(zip(csv["method"], csv["mean"])) == pytest.approx(probes, abs=0.005)  # rounded to 2 decimals
    assert set(csv["n"]) == {1} and csv["std"].isna().all()
    assert dict(zip(csv["method"], csv["runs_as"].fillna(""))) == {m: "moco-v2" if m == "mochi" else "" for m in probes}
    runs_report = cli("report", "--runs", "--format", "markdown", runs=runs).stdout
    assert runs_report.count("mochi ‡") == 1 and "‡ mochi on shapes, 1 epoch, trained as moco-v2" in runs_report
    floors = {round(r["metrics"]["test_accuracy"], 6) for r in records if r["stage"] == "probe" and r["method"] == "random-init"}
    assert {round(v, 2) for v in csv["random_init"]} <= {round(f, 2) for f in floors} and len(floors) == 2  # the RGB CNN, and CMC's Lab streams
    rows = json.loads(cli("report", "--table", "shapes", *QUICK, "--format", "json", "--no-write", runs=runs).stdout)
    assert {r["method"] for r in rows} == set(probes)
    latex = cli("report", "--table", "shapes", *QUICK, "--format", "latex", "--no-write", runs=runs).stdout
    assert latex.count("\\begin{tabular}") == 1 and "\\end{tabular}" in latex

    # a second reproduce trains nothing; the plan says every run is cached
    again = cli("reproduce", "shapes", *QUICK, "--dry-run", runs=runs)
    assert "11 of 11 runs cached" in again.stdout
    diagnostics = cli("report", "--diagnostics", "--format", "csv", runs=runs)
    frame = pd.read_csv(io.StringIO(diagnostics.stdout))
    assert set(frame["method"]) == set(probes) and frame["hardest negative same class (%)"].between(0, 100).all()
    assert f"wrote {results / 'diagnostics.png'}" in diagnostics.stderr and (results / "diagnostics.png").is_file()
