"""A paper table re-run, laid out as the paper prints it: rows are methods, columns datasets, each
cell ours (mean ± std over seeds, n) beside the published number and the difference.

Every cell is recomputed from the ledger: the table's config for the cell gives the pretraining
group key (the config without its seed); every finished pretraining of that group contributes the
probe (or kNN) record whose key the same config gives. A published number whose protocol differs
from ours is marked with † and the difference is named in the footnotes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import pandas as pd
from tabulate import tabulate

from .config import ConfigError, config_key
from .pipeline import knn_stage, pretrain_stage, probe_stage, random_init_stage
from .published import Protocol, PublishedRecord
from .report import FORMATS
from .store import atomic_write_text
from .tables import PaperTable

MISSING = "—"
DIFFERENT_PROTOCOL = "†"


def our_protocol(table: PaperTable, cfg) -> Protocol:
    """How our number in ``table`` is measured: an offline probe reported at its last epoch."""
    if table.metric == "knn":
        return Protocol(kind="knn", mode="offline", epoch="last", k=cfg.knn.k, temperature=cfg.knn.temperature)
    return Protocol(kind="linear", mode="offline", epoch="last")


@dataclass(frozen=True)
class Cell:
    row: str
    method: str
    dataset: str
    values: tuple[float, ...]
    """Our test accuracies, one per finished seed (in seed order)."""
    seeds: tuple[int, ...]
    published: PublishedRecord | None
    protocol_differences: tuple[str, ...]
    random_init: tuple[float, ...] = ()
    """The same metric of the randomly initialised encoder of the same architecture, per seed."""

    @property
    def random_init_mean(self) -> float | None:
        return sum(self.random_init) / len(self.random_init) if self.random_init else None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (0 for one seed)."""
        if not self.values:
            return None
        if self.n == 1:
            return 0.0
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (self.n - 1))

    @property
    def published_value(self) -> float | None:
        return self.published.value if self.published is not None else None

    @property
    def delta(self) -> float | None:
        if self.mean is None or self.published_value is None:
            return None
        return self.mean - self.published_value


def table_cells(table: PaperTable, ledger: Iterable[dict], published: dict[str, PublishedRecord], overrides: list[str] = ()) -> list[Cell]:
    """Every cell of ``table`` (with ``overrides`` applied, as ``reproduce --set`` ran it) with our
    finished results from ``ledger``."""
    records = list(ledger)
    by_key = {(r["stage"], r["key"]): r for r in records}
    pretrainings: dict[str, list[dict]] = {}
    for r in records:
        if r["stage"] == "pretrain":
            pretrainings.setdefault(r["group"], []).append(r)
    cells = []
    for row, dataset in table.cells():
        cfg = table.cell_config(row, dataset, overrides=overrides)
        group = pretrain_stage(cfg)[1]["group"]
        found: dict[int, float] = {}
        baseline: dict[int, float] = {}
        for pretraining in pretrainings.get(group, []):
            seeded = replace(cfg, seed=pretraining["seed"])
            for encoder_key, into in ((pretraining["key"], found), (config_key(random_init_stage(seeded)[0]), baseline)):
                stage_config = knn_stage(seeded, encoder_key, dataset) if table.metric == "knn" else probe_stage(seeded, encoder_key, dataset)
                result = by_key.get(("knn" if table.metric == "knn" else "probe", config_key(stage_config)))
                if result is not None:
                    into[pretraining["seed"]] = result["metrics"]["test_accuracy"]
        record_id = row.published.get(dataset)
        record = published.get(record_id) if record_id else None
        differences = tuple(record.protocol.differences(our_protocol(table, cfg))) if record is not None and record.value is not None else ()
        seeds = tuple(sorted(found))
        cells.append(Cell(row.label, row.method, dataset, tuple(found[s] for s in seeds), seeds, record, differences, tuple(baseline[s] for s in sorted(baseline))))
    return cells


def has_results(cells: list[Cell]) -> bool:
    return any(c.values for c in cells)


# ---------------------------------------------------------------------------------------------
# Layouts


def cells_frame(table: PaperTable, cells: list[Cell]) -> pd.DataFrame:
    """One row per cell: the long form that CSV and JSON carry."""
    rows = []
    for c in cells:
        p = c.published
        rows.append(
            {
                "table": table.name,
                "row": c.row,
                "method": c.method,
                "dataset": c.dataset,
                "metric": table.metric,
                "mean": c.mean,
                "std": c.std,
                "n": c.n,
                "random_init": c.random_init_mean,
                "published": c.published_value,
                "delta": c.delta,
                "protocol_differs": bool(c.protocol_differences),
                "protocol_differences": "; ".join(c.protocol_differences),
                "published_id": p.id if p else None,
                "source": f"{p.paper}, {p.table}: {p.source}" if p else None,
                "missing": p.missing if p else None,
            }
        )
    return pd.DataFrame(rows)


def _ours(c: Cell) -> str:
    if not c.values:
        return MISSING
    return f"{c.mean:.2f} ± {c.std:.2f} ({c.n})"


def _footnotes(cells: list[Cell]) -> tuple[dict[str, int], list[str]]:
    """Footnote numbers by published id, and the footnote lines (source, protocol differences)."""
    numbers: dict[str, int] = {}
    lines = []
    for c in cells:
        p = c.published
        if p is None or p.id in numbers:
            continue
        numbers[p.id] = len(numbers) + 1
        text = f"[{numbers[p.id]}] {p.paper}, {p.table}, row \"{p.row}\": {p.source}"
        if p.value is None:
            text += f". Missing: {p.missing}"
        if c.protocol_differences:
            text += f". {DIFFERENT_PROTOCOL} protocol differs: {'; '.join(c.protocol_differences)} ({p.protocol.details})"
        lines.append(text)
    return numbers, lines


def _published(c: Cell, numbers: dict[str, int]) -> str:
    if c.published is None:
        return MISSING
    mark = DIFFERENT_PROTOCOL if c.protocol_differences else ""
    value = MISSING if c.published_value is None else f"{c.published_value:.2f}"
    return f"{value}{mark} [{numbers[c.published.id]}]"


def _delta(c: Cell) -> str:
    return MISSING if c.delta is None else f"{c.delta:+.2f}"


def wide_layout(table: PaperTable, cells: list[Cell]) -> tuple[pd.DataFrame, list[str]]:
    """The paper layout: one row per table row, (ours, published, Δ) per dataset; and footnotes."""
    numbers, notes = _footnotes(cells)
    lookup = {(c.row, c.dataset): c for c in cells}
    rows = []
    for row in table.rows:
        line = {"method": row.label}
        for dataset in table.datasets:
            c = lookup[row.label, dataset]
            line[f"{dataset} ours"] = _ours(c)
            if any(other.random_init for other in cells):
                line[f"{dataset} random init"] = MISSING if c.random_init_mean is None else f"{c.random_init_mean:.2f}"
            line[f"{dataset} published"] = _published(c, numbers)
            line[f"{dataset} Δ"] = _delta(c)
        rows.append(line)
    return pd.DataFrame(rows), notes


def render_table(table: PaperTable, cells: list[Cell], fmt: str):
    """One table in ``fmt``: a rich Table for ``table``, else a string."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "csv":
        return cells_frame(table, cells).to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(cells_frame(table, cells).to_json(orient="records")), indent=1)
    wide, notes = wide_layout(table, cells)
    if fmt == "markdown":
        return tabulate(wide, headers="keys", tablefmt="github", showindex=False, disable_numparse=True) + "\n\n" + "\n".join(f"{n}  " for n in notes)
    if fmt == "latex":
        return tabulate(wide, headers="keys", tablefmt="latex_booktabs", showindex=False, disable_numparse=True)
    from rich.table import Table

    out = Table(title=f"{table.name}: {table.title} ({table.metric} test accuracy %)", caption="\n".join(notes), caption_justify="left")
    for name in wide.columns:
        out.add_column(str(name), justify="left" if name == "method" else "right")
    for line in wide.itertuples(index=False):
        out.add_row(*(str(v) for v in line))
    return out


# ---------------------------------------------------------------------------------------------
# Files under results/


def table_markdown(table: PaperTable, cells: list[Cell], command: str) -> str:
    wide, notes = wide_layout(table, cells)
    parts = [
        f"# {table.title}",
        "",
        f"Experiment `experiments/tables/{table.name}.yaml`; published numbers: {table.source}.",
        "",
        f"Test accuracy (%, {table.metric}); ours is mean ± sample std over seeds (n); Δ = ours − published;",
        f"{MISSING} = not run yet or not published/verified; {DIFFERENT_PROTOCOL} = the published number was measured",
        "with a different protocol (see its footnote); random init = the same evaluation of the untrained",
        "encoder of the same architecture (mean over the same seeds), the floor a method must beat.",
        "",
        tabulate(wide, headers="keys", tablefmt="github", showindex=False, disable_numparse=True),
        "",
        *(f"{n}  " for n in notes),
        "",
        "Made with:",
        "",
        "```bash",
        command,
        "hardneg-bench report --table " + table.name,
        "```",
    ]
    if table.notes:
        parts[3:3] = ["", table.notes]
    return "\n".join(parts) + "\n"


def table_chart(table: PaperTable, cells: list[Cell], path: Path) -> None:
    """A bar chart per dataset: ours (with its std over seeds) beside the published number."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table.datasets), figsize=(max(4.5, 1.1 * len(table.rows)) * len(table.datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], table.datasets):
        row_cells = [c for c in cells if c.dataset == dataset]
        xs = range(len(row_cells))
        ours = [c.mean if c.mean is not None else math.nan for c in row_cells]  # nan: no bar
        ax.bar([x - 0.2 for x in xs], ours, 0.4, yerr=[c.std or 0.0 for c in row_cells], label="ours", color="tab:blue", capsize=3)
        published = [c.published_value if c.published_value is not None else math.nan for c in row_cells]
        ax.bar([x + 0.2 for x in xs], published, 0.4, label="published", color="tab:orange")
        floors = [c.random_init_mean if c.random_init_mean is not None else math.nan for c in row_cells]
        if any(not math.isnan(f) for f in floors):
            ax.scatter(list(xs), floors, marker="_", s=400, color="black", zorder=3, label="random init")
        ax.set_xticks(list(xs), [c.row for c in row_cells], rotation=30, ha="right", fontsize=8)
        ax.set_title(dataset)
        ax.set_ylabel(f"{table.metric} top-1 (%)")
        ax.legend(fontsize=8)
    fig.suptitle(table.title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_results(table: PaperTable, cells: list[Cell], results_dir: Path, command: str) -> list[Path]:
    """``results/<table>.md`` and ``results/<table>.png``, each written atomically."""
    results_dir.mkdir(parents=True, exist_ok=True)
    markdown, chart = results_dir / f"{table.name}.md", results_dir / f"{table.name}.png"
    atomic_write_text(markdown, table_markdown(table, cells, command))
    table_chart(table, cells, chart)
    return [markdown, chart]
