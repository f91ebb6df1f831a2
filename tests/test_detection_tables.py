"""Detection paper tables (``metric: detection``): their YAML checked, one ConfigError line per
mistake; their cells recomputed from fake detection records written in the agreed stage format
(mean ± sample std over every trial of every seed, one cell per measure); every report format and
the chart; and the dry-run's detection hours against a hand computation."""

from __future__ import annotations

import io
import json
import random
import re
import statistics

import pandas as pd
import pytest
import torch
import yaml
from torchvision.models import ResNet50_Weights

from fake_ledger import detection_ledger, released_detection_records, write_ledger
from hardneg_bench.config import ConfigError, config_key, to_dict
from hardneg_bench.engine.runtime import device_name
from hardneg_bench.pipeline import pretrain_stage, random_init_stage
from hardneg_bench.reports import tables as tables_module
from hardneg_bench.reports.published import load_published
from hardneg_bench.reports.results_files import results_in
from hardneg_bench.reports.table_report import render_table, table_cells, table_chart, write_results
from hardneg_bench.reports.tables import check_table, load_table
from hardneg_bench.store import RunStore
from inprocess_cli import invoke

PUBLISHED = load_published()
CPU = device_name(torch.device("cpu"))

MEASURES = {
    "voc0712": ("AP50", "AP", "AP75"),  # the MoCo detection README's columns, in its order
    "coco2017:masks": ("AP", "AP50", "AP75", "mask_AP", "mask_AP50", "mask_AP75"),
    "coco2017:keypoints": ("keypoint_AP", "keypoint_AP50", "keypoint_AP75"),
}

README_VOC = {  # facebookresearch/moco@132aea9 detection/README.md, Results: AP50, AP, AP75 (means of 5 trials)
    "ImageNet-1M, supervised": (81.3, 53.5, 58.8),
    "MoCo v1, 200 epochs": (81.5, 55.9, 62.6),
    "MoCo v2, 200 epochs": (82.4, 57.0, 63.6),
    "MoCo v2, 800 epochs": (82.5, 57.4, 64.0),
}


def test_moco_voc_compares_each_row_with_the_readmes_three_numbers_and_its_released_weights():
    table = load_table("moco-voc")
    check_table(table, PUBLISHED)
    assert table.datasets == ("imagenet",) and table.columns == ("voc0712",)
    assert {row.label: tuple(PUBLISHED[row.published["voc0712"][m]].value for m in ("AP50", "AP", "AP75")) for row in table.rows} == README_VOC
    linear = {row.label: row for row in load_table("moco-readme-in1k").rows}
    for row in table.rows[1:]:  # the MoCo rows: the README's released checkpoints, as the linear table lists them
        assert not row.released_only and row.released["voc0712"] == linear[row.label].released["imagenet"]
        assert pretrain_stage(table.cell_config(row, "voc0712")) == pretrain_stage(load_table("moco-readme-in1k").cell_config(linear[row.label], "imagenet"))  # the same pretrainings
    supervised = table.rows[0]
    weights = supervised.released["voc0712"]
    assert supervised.released_only and weights.format == "torchvision" and weights.url == ResNet50_Weights.IMAGENET1K_V1.url and weights.url.endswith(weights.file)
    d = table.cell_config(table.rows[2], "voc0712").detection  # pascal_voc_R_50_C4_24k.yaml, Base-RCNN-C4-BN.yaml, README's 5 trials
    assert (d.arch, d.task, d.schedule, d.trials, d.batch_size, d.lr) == ("c4", "boxes", "voc-24k", 5, 16, 0.02)


@pytest.mark.parametrize("name, arxiv", [("mochi-detection", "arXiv:2010.01028"), ("ring-detection", "arXiv:2010.02037")])
def test_unverified_detection_tables_name_a_null_record_per_measure_and_where_to_read_it(name, arxiv):
    table = load_table(name)
    check_table(table, PUBLISHED)
    for row, column in table.cells():
        assert table.measures(column) == MEASURES[column] and tuple(row.published[column]) == MEASURES[column]
        for measure, record_id in row.published[column].items():
            record = PUBLISHED[record_id]
            assert record.value is None and arxiv in record.missing and record.metric == measure and record.protocol.kind == "detection"
            assert record.method == row.method and record.dataset == {"voc0712": "voc07", "coco2017": "coco2017"}[column.partition(":")[0]]  # VOC: tested on VOC07, as moco-voc-*


BASE = {
    "title": "t",
    "metric": "detection",
    "datasets": ["imagenet"],
    "targets": ["voc0712"],
    "rows": [{"label": "MoCo v2", "method": "moco-v2", "published": {"voc0712": {"AP50": "moco-voc-v2-200-ap50"}}}],
}


def _with(**changes):
    table = json.loads(json.dumps(BASE))
    row = changes.pop("row", {})
    table["rows"][0].update(row)
    table.update(changes)
    return table


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (_with(targets=["cifar10"]), "target 'cifar10' is not a detection dataset (known: voc0712, coco2017"),
        (_with(targets=["voc0712:masks"]), "target 'voc0712:masks': voc0712 has no task 'masks' (tasks: boxes)"),
        (_with(targets=None), "a detection table needs targets"),
        (_with(row={"published": {"voc0712": "moco-voc-v2-200-ap50"}}), "row 'MoCo v2' published.voc0712 must map measures (AP50, AP, AP75) to published record ids"),
        (_with(row={"published": {"voc0712": {"AP90": "moco-voc-v2-200-ap50"}}}), "published.voc0712: 'AP90' is not a measure of this column (its measures: AP50, AP, AP75)"),
        (_with(row={"published": {"coco2017": {"AP": "x"}}}), "published number or released weights for 'coco2017', which is not one of its targets"),
        (_with(row={"published": {"voc0712": {"AP50": "moco-voc-v2-200-ap"}}}), "published record 'moco-voc-v2-200-ap' gives AP, not AP50"),
        (_with(row={"published": {"voc0712": {"AP": "no-such-record"}}}), "unknown published record 'no-such-record'"),
        (_with(row={"released_only": True}), "row 'MoCo v2' is released_only but lists no released weights"),
        (_with(row={"released_only": "yes"}), "released_only must be true or false, got 'yes'"),
        (_with(metric="linear", targets=None, row={"published": {"imagenet": {"AP50": "moco-voc-v2-200-ap50"}}}), "published.imagenet must be a published record id"),
    ],
)
def test_a_bad_detection_table_is_a_one_line_config_error(tmp_path, monkeypatch, raw, fragment):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({k: v for k, v in raw.items() if v is not None}))
    monkeypatch.setattr(tables_module, "tables_dir", lambda: tmp_path)
    with pytest.raises(ConfigError) as err:
        check_table(load_table("bad"), PUBLISHED)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def _spread(pairs) -> str:
    """Our cell as the report must print it, computed here from (seed, value) pairs."""
    values = [v for _, v in pairs]
    seeds = len({s for s, _ in pairs})
    count = f"{len(values)} trial{'s' if len(values) > 1 else ''}" + (f", {seeds} seeds" if seeds > 1 else "")
    return f"{statistics.fmean(values):.2f} ({count})" if len(values) == 1 else f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f} ({count})"


@pytest.mark.parametrize("name, overrides", [("moco-voc", []), ("mochi-detection", ["detection.trials=2"]), ("ring-detection", ["detection.trials=3"])])
def test_detection_cells_agree_with_the_raw_ledger_records(tmp_path, name, overrides):
    rng = random.Random(name)
    table = load_table(name)
    seeds = {row.label: rng.randint(0, 2) for row in table.rows}
    seeds[table.rows[-1].label] = 2
    if name == "moco-voc":
        seeds["MoCo v2, 200 epochs"] = 2  # the supervised row's config is this row's: it must not show its results
    records, truth, floors = detection_ledger(table, seeds, rng, CPU, overrides)
    released = {}
    for row in table.rows:
        for column in row.released:
            found, released[row.label, column] = released_detection_records(table, row, column, 2, rng, CPU, overrides)
            records += found
    rng.shuffle(records)
    cells = table_cells(table, records, PUBLISHED, overrides)

    assert [(c.row, c.dataset, c.measure) for c in cells] == [(row.label, column, m) for row, column in table.cells() for m in MEASURES[column]]
    rows = {row.label: row for row in table.rows}
    for cell in cells:
        pairs = truth.get((cell.row, cell.dataset, cell.measure), [])
        values = [v for _, v in pairs]
        assert rows[cell.row].released_only == cell.released_only
        assert cell.values == pytest.approx(values) and cell.seed_count == len({s for s, _ in pairs})
        assert cell.std == (pytest.approx(statistics.stdev(values)) if len(values) > 1 else None)
        if values:
            assert cell.mean == pytest.approx(statistics.fmean(values))
        assert cell.random_init == pytest.approx([v for _, v in floors.get((cell.row, cell.dataset, cell.measure), [])])
        assert cell.released == pytest.approx([v for _, v in released.get((cell.row, cell.dataset), {}).get(cell.measure, [])])
        record = PUBLISHED[rows[cell.row].published[cell.dataset][cell.measure]]
        assert cell.published is record
        if record.value is not None and values:
            assert cell.delta == pytest.approx(statistics.fmean(values) - record.value)
    assert all(c.n == 0 for c in cells if c.released_only) and any(c.released for c in cells) == bool(released)

    markdown = render_table(table, cells, "markdown")
    lines = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line}
    for (label, column, measure), pairs in truth.items():
        if measure in MEASURES[column]:
            assert _spread(pairs) in lines[label]
    for (label, column), by_measure in released.items():
        assert all(_spread(by_measure[m]) in lines[label] for m in MEASURES[column])
    if name == "moco-voc":  # the README's numbers beside ours, and the difference computed from the raw values
        v2 = truth["MoCo v2, 200 epochs", "voc0712", "AP"]
        assert f"{statistics.fmean(v for _, v in v2) - 57.0:+.2f}" in lines["MoCo v2, 200 epochs"] and "57.00 [" in lines["MoCo v2, 200 epochs"]
        assert "Ran: resnet50 backbone, 200 / 800 pretraining epochs, batch 256; " in markdown and "detection: c4 boxes, schedule voc-24k, batch 16, 5 trials per seed" in markdown

    frame = pd.read_csv(io.StringIO(render_table(table, cells, "csv")))
    assert list(zip(frame["row"], frame["dataset"], frame["measure"])) == [(c.row, c.dataset, c.measure) for c in cells]
    assert frame["mean"].tolist() == pytest.approx([round(c.mean, 2) if c.values else float("nan") for c in cells], nan_ok=True)
    as_json = json.loads(render_table(table, cells, "json"))
    assert [(r["n"], r["seeds"], r["released_only"]) for r in as_json] == [(c.n, c.seed_count, c.released_only) for c in cells]
    latex = render_table(table, cells, "latex")
    header = next(line for line in latex.splitlines() if "&" in line)
    per_measure = 3 + 1 + bool(released)  # ours, published, Δ; random init; released weights
    assert header.count("&") == per_measure * sum(len(MEASURES[c]) for c in table.columns) and "AP50 ours" in header.replace("\\", "")

    figure = table_chart(table, cells)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [f"{column} {m}" for column in table.columns for m in MEASURES[column]]
    for ax, (column, measure) in zip(figure.axes, [(c, m) for c in table.columns for m in MEASURES[c]]):
        ours = [c.mean for c in cells if (c.dataset, c.measure) == (column, measure)]
        heights = [bar.get_height() for bar in ax.containers[0]]
        assert heights == pytest.approx([float("nan") if m is None else m for m in ours], nan_ok=True)
    outcomes = write_results(table, cells, tmp_path, seeds=2, overrides=overrides)
    assert all(o.written for o in outcomes) and (tmp_path / f"{name}.md").is_file() and (tmp_path / f"{name}.png").stat().st_size > 0
    assert results_in(tmp_path / f"{name}.md") == results_in(tmp_path / f"{name}.png") == sum(c.n for c in cells)  # one result per (cell, seed, trial)


def test_the_report_command_shows_a_detection_table_from_the_ledger(tmp_path, monkeypatch):
    table = load_table("moco-voc")
    records, truth, _ = detection_ledger(table, 2, random.Random(1), CPU)
    write_ledger(tmp_path / "runs", records)
    done = invoke(monkeypatch, "report", "--table", "moco-voc", "--format", "markdown", "--results-dir", str(tmp_path / "results"), runs=tmp_path / "runs", columns=400)
    assert done.exit_code == 0, done.output
    assert _spread(truth["MoCo v2, 800 epochs", "voc0712", "AP75"]) in done.stdout
    markdown = (tmp_path / "results" / "moco-voc.md").read_text()
    assert "hardneg-bench reproduce moco-voc --seeds 2" in markdown  # seeds, not trials x seeds
    assert "Detection AP (%" in markdown and "mean ± sample std over every trial of every seed" in markdown


# --- reproduce --dry-run ------------------------------------------------------------------------


def _plan_rows(stdout: str) -> dict[tuple[str, str, str], list[str]]:
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│") and line.split("│")[1].strip()]
    return {(r[0], r[1], r[2]): r for r in rows}


def _detection_result(cfg, encoder_key: str, dataset: str, trial: int, seconds: float, device: str, processes: int = 1) -> dict:
    """A finished detection stage in the agreed format, as the store keeps it."""
    config = {"parent": encoder_key, "dataset": dataset, "seed": cfg.seed, "trial": trial, "detection": to_dict(cfg.detection, keyed=True)}
    return {"stage": "detection", "key": config_key(config), "parent": encoder_key, "seed": cfg.seed, "trial": trial, "config": config, "metrics": {"AP50": 80.0, "AP": 55.0, "AP75": 60.0, "test_accuracy": 80.0, "iterations": 100, "seconds_per_iteration": seconds, "device": device, "processes": processes}}


def test_dry_run_hours_are_iterations_times_trials_times_a_measured_seconds_per_iteration(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    store = RunStore(runs)
    table = load_table("mochi-detection")
    moco = table.rows[0]
    voc, coco = table.cell_config(moco, "voc0712", seed=0), table.cell_config(moco, "coco2017:masks", seed=0)
    # timings: three finished VOC stages of another encoder on this CPU, one elsewhere (ignored)
    for seconds in (0.5, 0.9, 0.7):
        store.finish(_detection_result(voc, f"elsewhere-{seconds}", "voc0712", 0, seconds, CPU))
    store.finish(_detection_result(voc, "on-a-gpu", "voc0712", 0, 100.0, "NVIDIA H100"))
    store.finish(_detection_result(voc, "on-8-processes", "voc0712", 0, 50.0, CPU, processes=8))  # ignored: one process is estimated
    # a GPU check's COCO Mask R-CNN timing (the latest one counts), and one of another device
    for seconds, device in ((9.0, CPU), (1.25, CPU), (0.1, "NVIDIA H100")):
        store.append_bench({"stage": "detection", "device": device, "date": "2026-11-28", "detection": to_dict(coco.detection), "seconds_per_iteration": seconds})
    # MoCo-v2 seed 0 is pretrained and 2 of its 5 VOC trials are done (timed too: 0.5, 0.7, 0.8, 0.9, 1.0 s/it, median 0.8)
    config, label = pretrain_stage(voc)
    encoder = config_key(config)
    store.finish({"stage": "pretrain", "key": encoder, "parent": None, **label, "config": config, "metrics": {}})
    for trial, seconds in ((0, 0.8), (1, 1.0)):
        store.finish(_detection_result(voc, encoder, "voc0712", trial, seconds, CPU))

    done = invoke(monkeypatch, "reproduce", "mochi-detection", "--dry-run", "--seeds", "2", "--device", "cpu", runs=runs, columns=400)
    assert done.exit_code == 0, done.output
    rows = _plan_rows(done.stdout)
    voc_hours, coco_hours = 24_000 * 0.8 / 3600, 180_000 * 1.25 / 3600  # voc-24k and coco-2x iterations, one fine-tuning each
    expected = {
        ("MoCo-v2", "voc0712", "0"): ("pretrained", 3, voc_hours),
        ("MoCo-v2", "voc0712", "1"): ("to run", 5, voc_hours),
        ("MoCo-v2", "coco2017:masks", "0"): ("pretrained", 1, coco_hours),
        ("MoCo-v2", "coco2017:masks", "1"): ("shared", 1, coco_hours),
        ("MoCHi (1024, 256, 256)", "voc0712", "0"): ("to run", 5, voc_hours),
        ("MoCHi (1024, 256, 256)", "voc0712", "1"): ("to run", 5, voc_hours),
        ("MoCHi (1024, 256, 256)", "coco2017:masks", "0"): ("shared", 1, coco_hours),
        ("MoCHi (1024, 256, 256)", "coco2017:masks", "1"): ("shared", 1, coco_hours),
    }
    assert set(rows) == set(expected)
    for key, (status, trainings, hours) in expected.items():
        row = rows[key]
        iterations = "24,000" if key[1] == "voc0712" else "180,000"
        source = "0.800 s/it: 5 finished detection stages in the ledger" if key[1] == "voc0712" else "1.250 s/it: GPU check of 2026-11-28"
        assert row[3:4] + row[7:] == [status, f"{trainings} × {iterations} it", f"{trainings * hours:.2f}", source], row
    total = sum(t for _, t, _ in expected.values())
    hours = sum(t * h for _, t, h in expected.values())
    assert f"{total} detection fine-tunings to run: estimated {hours:.2f} hours" in done.stdout and total == 22

    # with the random-init baseline each encoder's architecture is fine-tuned too, once (MoCHi's is MoCo-v2's)
    assert random_init_stage(voc) == random_init_stage(table.cell_config(table.rows[1], "voc0712", seed=0))
    baseline = invoke(monkeypatch, "reproduce", "mochi-detection", "--dry-run", "--seeds", "2", "--device", "cpu", "--set", "random_init_baseline=true", runs=runs, columns=400)
    counts = {key: int(row[7].split(" × ")[0]) for key, row in _plan_rows(baseline.stdout).items()}
    assert counts == {key: trainings + (5 if key[1] == "voc0712" else 1) * (key[0] == "MoCo-v2") for key, (_, trainings, _) in expected.items()}


def test_dry_run_of_released_weights_and_of_an_untimed_detector(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    table = load_table("moco-voc")
    supervised = table.rows[0]
    found, _ = released_detection_records(table, supervised, "voc0712", 1, random.Random(0), "NVIDIA H100")  # timed on another device
    write_ledger(runs, [r for r in found if r["stage"] == "checkpoint" or r["trial"] < 2])  # 2 of the 5 trials of seed 0
    done = invoke(monkeypatch, "reproduce", "moco-voc", "--dry-run", "--seeds", "2", "--device", "cpu", runs=runs, columns=400)
    assert done.exit_code == 0, done.output
    rows = _plan_rows(done.stdout)
    assert [rows[supervised.label, "voc0712", s][3:8] for s in "01"] == [["released weights", "—", "—", "the authors' weights: reproduce --checkpoints DIR evaluates them", f"{n} × 24,000 it"] for n in (3, 5)]
    assert all(rows[key][8] == "unknown" and rows[key][9] == "nothing timed for the c4 boxes detector, batch 16 on this device" for key in rows)
    assert "0 of 6 runs cached" in done.stdout and "30 detection fine-tunings to run: no estimate" in done.stdout
    assert "8 detection fine-tunings to run on the released weights (with reproduce --checkpoints DIR): no estimate" in done.stdout
    assert "`python benchmarks/gpu_check.py --only detection`" in done.stdout
    assert not (runs / "pretrain").exists()


def test_the_dry_runs_dataset_list_checks_detection_targets_in_their_own_layouts(tmp_path):
    """A detection table's targets are looked for where the detection loaders read them: absent,
    each carries its loader's one line (the archive to get, or pycocotools); VOC written in its
    released layout is present, at ``VOCdevkit``."""
    from hardneg_bench.detection.datasets import DETECTION_DATASETS
    from hardneg_bench.reports.reproduce import dataset_presence
    from voc_squares import squares_voc

    table = load_table("mochi-detection")
    found = {f.dataset: f for f in dataset_presence(table, tmp_path)}
    assert set(found) == {"imagenet", "voc0712", "coco2017:masks"}
    assert not found["voc0712"].present and "VOCtest_06-Nov-2007.tar" in found["voc0712"].detail and "\n" not in found["voc0712"].detail
    coco = found["coco2017:masks"]
    assert not coco.present and ("instances_val2017.json" in coco.detail or "pycocotools" in coco.detail)
    squares_voc(tmp_path, 2)
    voc = {f.dataset: f for f in dataset_presence(table, tmp_path)}["voc0712"]
    assert voc.present and voc.detail == str(tmp_path / DETECTION_DATASETS["voc0712"].location)
