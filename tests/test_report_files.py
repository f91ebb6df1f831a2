"""Where reports write and what they never overwrite: by default under results/ in the run store;
never over a file that shows more results (or does not say how many, as the repository's shipped
results/ files); nothing for a table without a result of its own; every write and every kept file
said in one line."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from typer.testing import CliRunner

from cli_runner import files_under
from fake_ledger import table_ledger, write_ledger
from hardneg_bench.cli import app
from hardneg_bench.reports.results_files import results_in
from hardneg_bench.reports.tables import load_table

SHIPPED = Path(__file__).resolve().parents[1] / "results"


def report(*args: str, runs: Path):
    result = CliRunner().invoke(app, ["report", *args, "--runs-dir", str(runs)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


def shapes_store(root: Path, seeds: int, name: str) -> Path:
    runs = root / name
    write_ledger(runs, table_ledger(load_table("shapes"), seeds, random.Random(name))[0])
    return runs


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_fresh_run_store_never_replaces_a_fuller_results_folder(tmp_path):
    results = tmp_path / "results"
    full = shapes_store(tmp_path, 3, "full")
    first = report("--table", "shapes", "--results-dir", str(results), runs=full)
    assert f"wrote {results / 'shapes.md'} (33 results)" in first.stderr and f"wrote {results / 'shapes.png'} (33 results)" in first.stderr
    assert f"wrote {results / 'diagnostics.png'} (33 results)" in report("--diagnostics", "--results-dir", str(results), runs=full).stderr
    assert results_in(results / "shapes.md") == results_in(results / "shapes.png") == results_in(results / "diagnostics.png") == 33
    before = contents(results)

    fresh = shapes_store(tmp_path, 1, "fresh")
    second = report("--table", "shapes", "--results-dir", str(results), runs=fresh)
    diagnostics = report("--diagnostics", "--results-dir", str(results), runs=fresh)
    assert contents(results) == before
    assert f"kept {results / 'shapes.md'}: it shows 33 results, this report 11" in second.stderr
    assert f"kept {results / 'shapes.png'}: it shows 33 results, this report 11" in second.stderr
    assert f"kept {results / 'diagnostics.png'}: it shows 33 results, this report 11" in diagnostics.stderr

    # as many results (another store of three seeds) do replace them
    other = shapes_store(tmp_path, 3, "other")
    assert f"wrote {results / 'shapes.md'} (33 results)" in report("--table", "shapes", "--results-dir", str(results), runs=other).stderr
    assert (results / "shapes.md").read_bytes() != before["shapes.md"]


def test_the_shipped_results_files_are_kept(tmp_path):
    """The repository's results/ files record no count: a report named to write there keeps them."""
    results = tmp_path / "results"
    results.mkdir()
    for name in ("shapes.md", "shapes.png", "diagnostics.png"):
        shutil.copy(SHIPPED / name, results / name)
    before = contents(results)
    runs = shapes_store(tmp_path, 1, "runs")
    table = report("--table", "shapes", "--results-dir", str(results), runs=runs)
    diagnostics = report("--diagnostics", "--results-dir", str(results), runs=runs)
    assert contents(results) == before
    for name, out in (("shapes.md", table), ("shapes.png", table), ("diagnostics.png", diagnostics)):
        assert f"kept {results / name}: it does not record how many results it shows" in out.stderr


def test_a_table_without_results_writes_nothing(tmp_path):
    runs = tmp_path / "runs"
    write_ledger(runs, table_ledger(load_table("hcl-readme-stl10"), 1, random.Random(0))[0])  # results of another table only
    named = report("--table", "shapes", "--results-dir", str(tmp_path / "results"), runs=runs)
    default = report("--table", "shapes", runs=runs)
    assert "| SimCLR" in report("--table", "shapes", "--format", "markdown", "--no-write", runs=runs).stdout  # still shown
    for out in (named, default):
        assert "nothing written for table shapes: none of its cells has a result in this run store" in out.stderr
    assert files_under(tmp_path) == {runs / "ledger.jsonl"}


def test_reports_go_to_the_run_store_by_default(tmp_path, monkeypatch):
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)  # where results/ used to be written
    runs = shapes_store(tmp_path, 1, "runs")
    out = report("--table", "shapes", runs=runs)
    diagnostics = report("--diagnostics", runs=runs)
    assert f"wrote {runs / 'results' / 'shapes.md'} (11 results)" in out.stderr and f"wrote {runs / 'results' / 'diagnostics.png'}" in diagnostics.stderr
    assert {p.name for p in (runs / "results").iterdir()} == {"shapes.md", "shapes.png", "diagnostics.png"}
    assert files_under(work) == set()
    report("--table", "shapes", "--no-write", runs=shapes_store(tmp_path, 1, "quiet"))
    assert not (tmp_path / "quiet" / "results").exists()
