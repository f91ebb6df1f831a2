"""What the reports say, in every format: titles and charts name the overrides and what ran; one
seed has no spread; the diagnostics are in % everywhere; LaTeX is escaped and readable; JSON
numbers are rounded; the charts' legends cover nothing, random-init marks sit on their bars and
the diagnostics lines are told apart."""

from __future__ import annotations

import io
import itertools
import json
import random
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgb
from typer.testing import CliRunner

from fake_ledger import table_ledger, write_ledger
from hardneg_bench.cli import app
from hardneg_bench.reports.diagnostics import diagnostics_chart, diagnostics_frame
from hardneg_bench.models.colour import rgb_to_lab
from hardneg_bench.reports.published import load_published
from hardneg_bench.reports.table_report import table_cells, table_chart
from hardneg_bench.reports.tables import load_table

OVERRIDES = ["pretrain.epochs=2", "probe.epochs=5"]
SETS = [part for o in OVERRIDES for part in ("--set", o)]


def report(*args: str, runs: Path):
    result = CliRunner().invoke(app, ["report", *args, "--runs-dir", str(runs)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result


def store(tmp_path: Path, table: str, seeds, overrides=(), name: str = "runs"):
    runs = tmp_path / name
    records, truth = table_ledger(load_table(table), seeds, random.Random(name), list(overrides))
    write_ledger(runs, records)
    return runs, records, truth


def test_titles_captions_and_charts_name_the_overrides_and_what_ran(tmp_path):
    runs, records, _ = store(tmp_path, "shapes", 1, OVERRIDES)
    results = tmp_path / "results"
    shown = report("--table", "shapes", *SETS, "--results-dir", str(results), runs=runs)
    markdown = (results / "shapes.md").read_text()
    title = markdown.splitlines()[0]
    assert title.startswith("# Every method on the built-in shapes dataset") and title.endswith("— run with pretrain.epochs=2, probe.epochs=5")
    assert "Ran: tiny backbone, 2 pretraining epochs, batch 256; 1 seed per finished cell." in markdown
    assert "The table's notes, which describe its recipe without the overrides: Each row is" in markdown
    assert "hardneg-bench report --table shapes --set pretrain.epochs=2 --set probe.epochs=5" in markdown  # finds these cells again
    assert "run with pretrain.epochs=2, probe.epochs=5" in shown.stdout and "2 pretraining epochs" in shown.stdout
    table = load_table("shapes")
    figure = table_chart(table, table_cells(table, records, load_published(), OVERRIDES), OVERRIDES)
    assert "run with pretrain.epochs=2, probe.epochs=5" in figure._suptitle.get_text() and "Ran: tiny backbone, 2 pretraining epochs" in figure._suptitle.get_text()

    # without overrides the title is the table's own, and says what its recipe ran
    plain, plain_records, _ = store(tmp_path, "shapes", 1, name="plain")
    markdown = report("--table", "shapes", "--results-dir", str(tmp_path / "plain-results"), runs=plain)
    text = (tmp_path / "plain-results" / "shapes.md").read_text()
    assert text.splitlines()[0] == f"# {table.title}" and "Ran: tiny backbone, 8 pretraining epochs" in text and "run with" not in text


def _cells(markdown: str) -> list[str]:
    return [cell.strip() for line in markdown.splitlines() if line.startswith("| ") for cell in line.strip("|").split("|")]


def test_one_seed_has_no_spread_and_several_have_their_sample_std(tmp_path):
    runs, _, truth = store(tmp_path, "shapes", 1)
    cells = _cells(report("--table", "shapes", "--format", "markdown", "--no-write", runs=runs).stdout)
    ours = [c for c in cells if "seed" in c]
    assert len(ours) == 11 and all(re.fullmatch(r"\d+\.\d\d \(1 seed\)", c) for c in ours) and not any("±" in c for c in cells)
    csv = pd.read_csv(io.StringIO(report("--table", "shapes", "--format", "csv", "--no-write", runs=runs).stdout))
    assert csv["std"].isna().all() and (csv["n"] == 1).all()
    assert all(row["std"] is None for row in json.loads(report("--table", "shapes", "--format", "json", "--no-write", runs=runs).stdout))
    # the per-run report too
    runs_table = report("--runs", "--format", "markdown", runs=runs).stdout
    assert "(1 seed)" in runs_table and "±" not in runs_table
    assert all(row["std"] is None for row in json.loads(report("--runs", "--format", "json", runs=runs).stdout))
    assert "one seed each" in report("--runs", runs=runs).stdout and "± std" not in report("--runs", runs=runs).stdout
    written = tmp_path / "results"
    report("--table", "shapes", "--results-dir", str(written), runs=runs)
    assert "ours is one seed's value (no spread: that needs two seeds)" in (written / "shapes.md").read_text()

    several, _, truth = store(tmp_path, "shapes", 3, name="several")
    rows = json.loads(report("--table", "shapes", "--format", "json", "--no-write", runs=several).stdout)
    for row in rows:
        values = truth[row["row"], "shapes"]
        assert row["std"] == round(statistics.stdev(values), 2) and row["mean"] == round(statistics.fmean(values), 2)
    cells = _cells(report("--table", "shapes", "--format", "markdown", "--no-write", runs=several).stdout)
    assert sum(bool(re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d \(3 seeds\)", c)) for c in cells) == 11


def test_diagnostics_are_in_percent_in_every_format(tmp_path):
    runs, records, _ = store(tmp_path, "shapes", 2)
    logged = {(r["group"], r["seed"], d["epoch"]): d for r in records if r["stage"] == "pretrain" and r["metrics"].get("diagnostics") for d in r["metrics"]["diagnostics"]}
    csv = pd.read_csv(io.StringIO(report("--diagnostics", "--format", "csv", "--no-write", runs=runs).stdout))
    rows = json.loads(report("--diagnostics", "--format", "json", "--no-write", runs=runs).stdout)
    for row in [*csv.to_dict(orient="records"), *rows]:
        fractions = logged[row["group"], row["seed"], row["epoch"]]
        assert row["hardest negative same class (%)"] == pytest.approx(100 * fractions["hardest_same_class"], abs=0.005)
        assert row["random negative same class (%)"] == pytest.approx(100 * fractions["chance_same_class"], abs=0.005)
        assert row["hardest negative cosine"] == pytest.approx(fractions["hardest_similarity"], abs=0.0005)
    markdown = report("--diagnostics", "--format", "markdown", "--no-write", runs=runs).stdout
    header = next(line for line in markdown.splitlines() if line.startswith("| method"))
    assert "hardest negative same class (%)" in header and "random negative same class (%)" in header
    simclr = next(line for line in markdown.splitlines() if line.startswith("| simclr"))
    group = csv[csv["method"] == "simclr"]["group"].iloc[0]
    last = [100 * d["hardest_same_class"] for (g, seed, epoch), d in logged.items() if g == group and epoch == 8]  # the table's 8 epochs
    assert f"{statistics.fmean(last):.2f}" in simclr


def test_latex_is_escaped_and_readable(tmp_path):
    runs, records, _ = store(tmp_path, "shapes", 2)
    probe = next(r for r in records if r["stage"] == "probe" and r["method"] == "simclr")
    write_ledger(runs, [{**probe, "stage": "transfer", "key": "transfer-key", "eval_dataset": "shapes-novel"}])
    # rows whose labels differ (the in-batch methods and their one random-init encoder): no hash column
    in_batch = tmp_path / "in-batch"
    init_group = next(r["group"] for r in records if r["method"] == "random-init")  # SimCLR's, the first row's
    write_ledger(in_batch, [r for r in records if r["method"] in ("simclr", "dcl", "hcl", "sscl") or r["group"] == init_group])
    assert "config" not in report("--runs", "--format", "latex", runs=in_batch).stdout
    runs_latex = report("--runs", "--format", "latex", runs=runs).stdout
    assert r"transfer $\rightarrow$ shapes-novel" in runs_latex and r"\ensuremath" not in runs_latex
    assert r"$\pm$" in runs_latex and "±" not in runs_latex
    table_latex = report("--table", "shapes", "--format", "latex", "--no-write", runs=runs).stdout
    assert r"shapes $\Delta$" in table_latex and r"\ensuremath" not in table_latex and "---" in table_latex and "—" not in table_latex
    diagnostics = report("--diagnostics", "--format", "latex", "--no-write", runs=runs).stdout
    assert r"hardest negative same class (\%)" in diagnostics and "(%)" not in diagnostics.replace(r"(\%)", "")
    body = [line for line in runs_latex.splitlines() if line.endswith(r"\\")]
    assert all(line.count("&") == body[0].count("&") for line in body)  # every row has every column


def test_json_numbers_are_rounded_to_the_measurement(tmp_path):
    runs, records, _ = store(tmp_path, "shapes", 1)
    for r in records:
        if r["stage"] == "probe" and r["method"] == "simclr":
            r["metrics"]["test_accuracy"] = 301 / 2000 * 100  # 15.049999999999999: 301 of 2000 test images
    (runs / "ledger.jsonl").unlink()
    write_ledger(runs, records)
    for args in (["--runs"], ["--table", "shapes", "--no-write"]):
        text = report(*args, "--format", "json", runs=runs).stdout
        assert "15.05" in text and "15.0499" not in text
        numbers = [float(n) for n in re.findall(r":\s*(-?\d+\.\d+)", text)]
        assert numbers and all(round(n, 2) == n for n in numbers)


def _legend_labels(figure) -> list[str]:
    return [t.get_text() for legend in figure.legends for t in legend.get_texts()]


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_table_chart_marks_sit_on_their_bars_and_the_legend_covers_nothing(tmp_path):
    _, records, _ = store(tmp_path, "shapes", 2)
    table = load_table("shapes")
    figure = table_chart(table, table_cells(table, records, load_published()))
    assert "published" not in _legend_labels(figure) and {"ours", "random init"} <= set(_legend_labels(figure))
    ax = figure.axes[0]
    bars = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]
    floors = [(min(s[0][0], s[1][0]), max(s[0][0], s[1][0])) for s in ax.collections[-1].get_segments()]
    assert len(floors) == len(bars) == 11 and all(f == pytest.approx(b) for f, b in zip(floors, bars))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert not any(_overlaps(legend.get_window_extent(renderer), a.get_window_extent(renderer)) for legend in figure.legends for a in figure.axes)

    hcl = load_table("hcl-readme-stl10")
    _, hcl_records, _ = store(tmp_path, "hcl-readme-stl10", 1, name="hcl")
    assert "published" in _legend_labels(table_chart(hcl, table_cells(hcl, hcl_records, load_published())))


def _lab(colour) -> torch.Tensor:
    return rgb_to_lab(torch.tensor(to_rgb(colour)).view(1, 3, 1, 1)).view(3)


def test_diagnostics_chart_tells_eleven_methods_apart_and_the_legend_covers_nothing(tmp_path):
    _, records, _ = store(tmp_path, "shapes", 1)
    figure = diagnostics_chart(diagnostics_frame(records))
    lines = [line for line in figure.axes[0].get_lines() if line.get_label() != "random negative (mean)"]
    assert len(lines) == 11
    # CIE76 colour difference: at least 25 between any two methods (tab20's paired blues: 37, its lightest pair: 17)
    assert min((_lab(a.get_color()) - _lab(b.get_color())).norm().item() for a, b in itertools.combinations(lines, 2)) > 25
    assert len({line.get_marker() for line in lines}) == 11
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert not any(_overlaps(legend.get_window_extent(renderer), a.get_window_extent(renderer)) for legend in figure.legends for a in figure.axes)


def test_two_probe_settings_of_one_encoder_are_two_columns_not_two_seeds(tmp_path):
    """Seed 0 probed with 5 and with 100 epochs, seed 1 with 100: the 100-epoch cell is the mean
    of its two seeds, the 5-epoch one a column of its own, named by the setting that differs."""
    from dataclasses import replace as with_

    from hardneg_bench.config import config_key
    from hardneg_bench.evaluations.linear import probe_stage
    from hardneg_bench.pipeline import pretrain_stage
    from hardneg_bench.recipes import resolve_config

    records = []
    for seed, probes in ((0, {5: 30.0, 100: 40.0}), (1, {100: 44.0})):
        cfg = resolve_config("simclr", "shapes", overrides=["pretrain.epochs=1"], flags={"seed": seed})
        config, label = pretrain_stage(cfg)
        key = config_key(config)
        records.append({"stage": "pretrain", "key": key, "parent": None, **label, "config": config, "metrics": {}})
        for epochs, accuracy in probes.items():
            probe = probe_stage(with_(cfg, probe=with_(cfg.probe, epochs=epochs)), key, "shapes")
            records.append({"stage": "probe", "key": config_key(probe), "parent": key, **label, "eval_dataset": "shapes", "protocol": "fast", "config": probe, "metrics": {"test_accuracy": accuracy}})
    write_ledger(tmp_path / "runs", records)
    rows = json.loads(report("--runs", "--format", "json", runs=tmp_path / "runs").stdout)
    cells = {r["column"]: (r["mean"], r["count"]) for r in rows}
    assert cells == {"linear (fast) [probe.epochs=5]": (30.0, 1), "linear (fast) [probe.epochs=100]": (42.0, 2)}, cells
    shown = report("--runs", runs=tmp_path / "runs").stdout  # the terminal table keeps the brackets (no markup)
    assert "[probe.epochs=5]" in shown and "[probe.epochs=100]" in shown, shown
