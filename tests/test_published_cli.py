"""`hardneg-bench published`: readable at 100 columns with every id whole, in every format, each
missing number citing the paper and table to read it from, and a template of the missing records
that a user fills in and passes back with --published."""

from __future__ import annotations

import io
import json
import re

import pandas as pd

from hardneg_bench.config import to_dict
from hardneg_bench.reports.published import load_published
from inprocess_cli import invoke

RECORDS = load_published()
MISSING = [r for r in RECORDS.values() if r.value is None]


def test_at_100_columns_every_id_is_printed_whole_and_no_line_is_wider(tmp_path, monkeypatch):
    done = invoke(monkeypatch, "published", runs=tmp_path / "runs", columns=100)
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    starts = [line.split()[0] for line in lines if line.strip()]
    assert all(record_id in starts for record_id in RECORDS), sorted(set(RECORDS) - set(starts))
    assert "…" not in done.stdout
    assert f"{len(RECORDS)} published numbers, {len(MISSING)} of them missing." in done.stdout


def test_every_format_holds_every_record(tmp_path, monkeypatch):
    csv = pd.read_csv(io.StringIO(invoke(monkeypatch, "published", "--format", "csv", runs=tmp_path).stdout))
    assert list(csv["id"]) == list(RECORDS)
    assert [None if pd.isna(v) else v for v in csv["value"]] == [r.value for r in RECORDS.values()]
    assert list(csv["protocol_kind"]) == [r.protocol.kind for r in RECORDS.values()] and list(csv["source"]) == [r.source for r in RECORDS.values()]
    as_json = json.loads(invoke(monkeypatch, "published", "--format", "json", "--missing", runs=tmp_path).stdout)
    assert as_json == [json.loads(json.dumps(to_dict(r))) for r in MISSING]
    markdown = invoke(monkeypatch, "published", "--format", "markdown", runs=tmp_path).stdout
    assert markdown.startswith("| id ") and all(f"| {i} " in markdown for i in RECORDS)
    bad = invoke(monkeypatch, "published", "--format", "latex", runs=tmp_path)
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1 and "latex" in bad.stderr


def test_each_missing_number_names_its_paper_and_table():
    for r in MISSING:
        assert "reference sheet" not in r.missing and "section A" not in r.missing
        assert re.search(r"arXiv:\d{4}\.\d{5}", r.missing) and re.search(r"\b(20\d\d)\b", r.missing), r.id
        first_author = re.search(r"\((\w+) et al\.", r.paper).group(1)  # "Ring / CNCE (Wu et al., ICLR 2021)"
        assert re.search(r"[Tt]able", r.missing) and r.missing.count(first_author) == 1, r.id
    ring = RECORDS["ring-table1-ring-cifar10"].missing
    assert "Table 1" in ring and "2010.02037" in ring and "ICLR 2021" in ring


def fill(text: str, record_id: str, value: float, source: str) -> str:
    """What a user does in the template for one record: the value, the source, no `missing`."""
    lines, inside, out = text.splitlines(), False, []
    for line in lines:
        if line.startswith("- id:"):
            inside = line == f"- id: {record_id}"
        if inside and line.startswith("  value:"):
            line = f"  value: {value}"
        elif inside and line.startswith("  source:"):
            line = f"  source: {source}"
        elif inside and line.startswith("  missing:"):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def test_the_missing_records_template_loads_back_with_the_users_numbers(tmp_path, monkeypatch):
    template = tmp_path / "mine.yaml"
    done = invoke(monkeypatch, "published", "--missing", "--template", str(template), runs=tmp_path / "runs")
    assert done.exit_code == 0, done.output
    unfilled = load_published(template)  # as written, it changes nothing
    assert unfilled == RECORDS
    text = template.read_text()
    assert text.startswith("#") and text.count("\n- id: ") == len(MISSING)

    filled = fill(fill(text, "ring-table1-ring-cifar10", 71.5, "Wu et al., ICLR 2021, Table 1"), "sscl-sscl-stl10", 80.25, "Dong et al., arXiv 2304.02971, Table 2")
    template.write_text(filled)
    merged = load_published(template)
    assert merged["ring-table1-ring-cifar10"].value == 71.5 and merged["ring-table1-ring-cifar10"].source == "Wu et al., ICLR 2021, Table 1"
    assert merged["sscl-sscl-stl10"].value == 80.25 and merged["sscl-sscl-stl10"].missing is None
    assert {k: v for k, v in merged.items() if k not in ("ring-table1-ring-cifar10", "sscl-sscl-stl10")} == {k: v for k, v in RECORDS.items() if k not in ("ring-table1-ring-cifar10", "sscl-sscl-stl10")}
    counted = invoke(monkeypatch, "published", "--missing", "--published", str(template), runs=tmp_path / "runs")
    assert f"{len(MISSING) - 2} of {len(RECORDS)} published numbers are missing" in counted.stdout

    # never written over an existing file
    again = invoke(monkeypatch, "published", "--missing", "--template", str(template), runs=tmp_path / "runs")
    assert again.exit_code == 2 and len(again.stderr.strip().splitlines()) == 1 and template.read_text() == filled
    # a value filled in without deleting the `missing` line: one line naming the record
    template.write_text(filled.replace("  value: null", "  value: 50.0", 1))
    half = invoke(monkeypatch, "published", "--published", str(template), runs=tmp_path / "runs")
    assert half.exit_code == 2 and len(half.stderr.strip().splitlines()) == 1 and f"records[{MISSING[0].id}].missing" in half.stderr
