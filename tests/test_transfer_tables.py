"""Transfer tables (``targets:``): one pretraining per row, each column a target domain evaluated
with the table's metric; the row's average over domains; few-shot cells with their 95% interval;
what ``reproduce --dry-run`` says of shared pretrainings and of the datasets under the data root."""

from __future__ import annotations

import random
import statistics

import pytest

from fake_ledger import table_ledger
from hardneg_bench.config import ConfigError
from hardneg_bench.data.base import DatasetMissingError
from hardneg_bench.data.registry import DATASETS
from hardneg_bench.reports.published import load_published
from hardneg_bench.reports.reproduce import dataset_presence, plan
from hardneg_bench.reports.run_report import MISSING
from hardneg_bench.reports.table_report import AVERAGE, table_cells, wide_layout
from hardneg_bench.reports import tables as tables_module
from hardneg_bench.reports.tables import check_table, load_table
from hardneg_bench.store import RunStore

PUBLISHED = load_published()


def test_a_transfer_row_averages_its_domains_only_when_every_domain_has_a_value():
    table = load_table("ring-transfer")
    records, truth = table_ledger(table, 1, random.Random(3))
    first = table.rows[0].label
    dropped = (table.rows[1].label, table.targets[2])
    records = [r for r in records if not (r.get("eval_dataset") == dropped[1] and r["stage"] == "transfer" and r["method"] == table.rows[1].method)]
    wide, _ = wide_layout(table, table_cells(table, records, PUBLISHED))
    rows = {line["method"]: line for line in wide.to_dict("records")}
    expected = statistics.fmean(truth[first, d][0] for d in table.targets)
    assert rows[first][f"{AVERAGE} ours"] == f"{expected:.2f}"
    assert rows[dropped[0]][f"{AVERAGE} ours"] == MISSING  # one domain missing: no average
    assert rows[first][f"{AVERAGE} published"] == MISSING  # the paper's numbers are null records
    assert rows[dropped[0]][f"{dropped[1]} ours"] == MISSING


def test_a_fewshot_cell_of_one_seed_shows_its_interval_over_episodes():
    table = load_table("shapes-fewshot")
    records, truth = table_ledger(table, 1, random.Random(5))
    cells = table_cells(table, records, PUBLISHED)
    wide, _ = wide_layout(table, cells)
    line = wide.to_dict("records")[0]
    value = truth[table.rows[0].label, "shapes-novel"][0]
    assert line["shapes-novel ours"] == f"{value:.2f} ± {value / 50:.2f} (95% CI, 1 seed)"  # fake_ledger's ci95 is accuracy / 50


@pytest.fixture
def tables_in(tmp_path, monkeypatch):
    """A tables folder of the test's own (load_table reads it)."""
    monkeypatch.setattr(tables_module, "tables_dir", lambda: tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "text, message",
    [
        ("metric: linear\ndatasets: [shapes, cifar10]\ntargets: [shapes-novel]\nrows: [{label: A, method: simclr}]\n", "pretrains on one dataset"),
        ("metric: linear\ndatasets: [shapes]\ntargets: []\nrows: [{label: A, method: simclr}]\n", "targets must be a non-empty"),
        ("metric: linear\ndatasets: [shapes]\ntargets: [shapes-novel]\nrows: [{label: A, method: simclr, published: {shapes: x}}]\n", "not one of its targets"),
    ],
)
def test_a_bad_transfer_table_is_a_one_line_error(tables_in, text, message):
    (tables_in / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_table("bad")
    assert "\n" not in str(err.value)


def test_a_fewshot_cell_must_be_one_number(tables_in):
    (tables_in / "fewshot.yaml").write_text("metric: fewshot\ndatasets: [shapes]\ntargets: [shapes-novel]\nrows: [{label: A, method: simclr}]\n")
    with pytest.raises(ConfigError, match="fewshot evaluation has 4 stages"):  # 2 shots x 2 heads by default
        check_table(load_table("fewshot"), PUBLISHED)


def test_the_dry_run_counts_a_rows_pretraining_once(tmp_path):
    table = load_table("ring-transfer")
    planned = plan(table, 2, RunStore(tmp_path / "runs"), "cpu")
    assert len(planned) == len(table.rows) * len(table.targets) * 2
    to_run = [p for p in planned if p.status == "to run"]
    assert sorted((p.row.label, p.seed) for p in to_run) == sorted((r.label, s) for r in table.rows for s in range(2))
    assert all(p.status == "shared" and p.seconds is None for p in planned if p not in to_run)


def test_every_dataset_says_where_its_files_go_and_its_loader_looks_there(tmp_path):
    """``location`` (what the dry-run looks for) is where the loader looks: loading from an empty
    root fails in one line naming a path inside it."""
    for name, spec in DATASETS.items():
        if spec.builtin:
            assert spec.location is None
            continue
        with pytest.raises(DatasetMissingError) as err:
            spec.load("test", tmp_path, False)
        assert str(tmp_path / spec.location) in str(err.value), name
        assert "\n" not in str(err.value)


def test_the_dry_run_lists_the_datasets_present_and_how_to_get_the_others(tmp_path):
    table = load_table("ring-transfer")
    (tmp_path / DATASETS["dtd"].location).mkdir(parents=True)
    found = {f.dataset: f for f in dataset_presence(table, tmp_path)}
    assert list(found) == ["imagenet", *table.targets]
    assert found["dtd"].present and found["dtd"].detail == str(tmp_path / "dtd" / "dtd")
    absent = [f for f in found.values() if not f.present]
    assert {f.dataset for f in absent} == set(found) - {"dtd"}
    assert all(str(tmp_path) in f.detail and ("download" in f.detail or "get" in f.detail) for f in absent)
    assert all(f.present and f.detail == "built in" for f in dataset_presence(load_table("shapes-transfer"), tmp_path))


def _record(stage: str, method: str, domain: str, accuracy: float, seed: int = 0, **extra) -> dict:
    label = {"method": method, "dataset": "shapes", "backbone": "tiny", "epochs": 8, "seed": seed, "group": f"group-{method}"}
    return {"stage": stage, "key": f"{stage}-{method}-{domain}-{seed}-{extra}", "parent": f"pretrain-{method}-{seed}", **label, "eval_dataset": domain, "protocol": "fast", **extra, "metrics": {"test_accuracy": accuracy, **({"ci95": accuracy / 40} if stage == "fewshot" else {})}}


def test_the_run_report_averages_each_protocol_over_its_domains_and_shows_few_shot_intervals():
    from hardneg_bench.reports.run_report import results_frame, wide_table

    shot = {"fewshot": {"ways": 5, "shots": 5, "head": "nearest_mean"}}
    records = [
        _record("transfer", "simclr", "dtd", 40.0), _record("transfer", "simclr", "cub", 20.0), _record("transfer", "simclr", "aircraft", 30.0),
        _record("transfer", "hcl", "dtd", 50.0), _record("transfer", "hcl", "cub", 24.0),  # no aircraft
        _record("fewshot", "simclr", "dtd", 60.0, **shot), _record("fewshot", "simclr", "cub", 70.0, **shot),
        _record("fewshot", "hcl", "dtd", 62.0, seed=0, **shot), _record("fewshot", "hcl", "dtd", 66.0, seed=1, **shot), _record("fewshot", "hcl", "cub", 68.0, **shot),
    ]
    wide = wide_table(results_frame(records)).set_index("method")
    assert wide.loc["simclr", "transfer -> average of 3 domains"] == "30.00"
    assert wide.loc["hcl", "transfer -> average of 3 domains"] == MISSING  # aircraft missing: no average
    assert wide.loc["simclr", "5-way 5-shot nearest-mean -> dtd"] == "60.00 ± 1.50 (95% CI, 1 seed)"
    assert wide.loc["hcl", "5-way 5-shot nearest-mean -> dtd"] == f"64.00 ± {statistics.stdev([62.0, 66.0]):.2f} (2 seeds)"  # seeds: their spread
    assert wide.loc["hcl", "5-way 5-shot nearest-mean -> average of 2 domains"] == f"{(64.0 + 68.0) / 2:.2f}"
