"""Tables of results, read from the ledger only.

One row per pretrained encoder configuration (method, dataset, backbone, epochs; seeds
aggregated), one column per evaluation: linear probe and kNN on the pretraining dataset,
linear probe on each transfer dataset. A cell is ``mean ± std (n)`` over seeds, test accuracy in %.
"""

from __future__ import annotations

import json
from typing import Iterable

import pandas as pd
from rich.table import Table
from tabulate import tabulate

from .config import ConfigError
from .provenance import encoder_changes

FORMATS = ("table", "markdown", "csv", "latex", "json")
ROW = ["method", "dataset", "backbone", "epochs"]


def _column(record: dict) -> str | None:
    if record["stage"] == "probe":
        return f"linear ({record['protocol']})"
    if record["stage"] == "knn":
        return "kNN"
    if record["stage"] == "transfer":
        return f"transfer -> {record['eval_dataset']}"
    return None


def results_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per evaluation record (the last record of each stage key wins); ``changes``: how
    its encoder's pretraining differs from the recipe (:mod:`hardneg_bench.provenance`)."""
    latest = {(r["stage"], r["key"]): r for r in records}
    changes = encoder_changes(latest.values())
    rows = [
        {**{k: r[k] for k in ROW}, "group": r["group"], "changes": changes.get(r.get("parent"), ""), "seed": r["seed"], "column": _column(r), "accuracy": r["metrics"]["test_accuracy"]}
        for r in latest.values()
        if _column(r)
    ]
    return pd.DataFrame(rows, columns=[*ROW, "group", "changes", "seed", "column", "accuracy"])


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over seeds for every (row, column)."""
    stats = frame.groupby([*ROW, "group", "column"], sort=False)["accuracy"].agg(["mean", "std", "count"]).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    return stats


def _cell(mean: float, std: float, count: int) -> str:
    return f"{mean:.2f} ± {std:.2f} ({count})" if count > 1 else f"{mean:.2f}"


def wide_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows = encoder configurations, columns = evaluations, cells = formatted accuracies. A
    method that ran with keys changed from its recipe names them, ``hcl (method_params.beta=2.0)``;
    when two configurations still share a label, a ``config`` column (the hash) tells them apart."""
    stats = summary(frame)
    stats["cell"] = [_cell(m, s, n) for m, s, n in zip(stats["mean"], stats["std"], stats["count"])]
    wide = stats.pivot_table(index=[*ROW, "group"], columns="column", values="cell", aggfunc="first", sort=False).reset_index()
    wide.columns.name = None
    columns = sorted(c for c in wide.columns if c not in [*ROW, "group"])
    changes = wide["group"].map(frame.drop_duplicates("group").set_index("group")["changes"])
    wide["method"] = [f"{method} ({changed})" if changed else method for method, changed in zip(wide["method"], changes)]
    ambiguous = wide.duplicated(subset=ROW, keep=False).any()
    keep = [*ROW, *(["group"] if ambiguous else []), *columns]
    return wide[keep].rename(columns={"group": "config"}).fillna("—")


def render(frame: pd.DataFrame, fmt: str):
    """The report in ``fmt``: a rich Table for ``table``, else a string."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "json":
        return json.dumps(summary(frame).to_dict(orient="records"), indent=1)
    if fmt == "csv":
        return summary(frame).to_csv(index=False)
    wide = wide_table(frame)
    if fmt == "markdown":
        return tabulate(wide, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)
    if fmt == "latex":
        return tabulate(wide, headers="keys", tablefmt="latex_booktabs", showindex=False, disable_numparse=True)
    table = Table(title="hardneg-bench results (test accuracy %, mean ± std (seeds))")
    for name in wide.columns:
        table.add_column(str(name), justify="left" if name in ROW or name == "config" else "right")
    for row in wide.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    return table
