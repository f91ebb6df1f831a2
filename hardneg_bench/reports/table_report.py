"""A paper table re-run, laid out as the paper prints it: rows are methods, columns datasets (or a
transfer table's target domains, with their average), each cell ours (mean ± sample std over
seeds, or one seed's value; a few-shot cell of one seed: mean ± its 95% interval over episodes)
beside the published number and the difference. A detection column has one cell per measure
(AP50, AP, AP75, ...), each the mean ± sample std over every trial of every seed.

Every cell is recomputed from the ledger: the table's config for the cell (with the overrides it
was reproduced with) gives the pretraining group key (the config without its seed); every finished
pretraining of that group contributes the record of the table's evaluation (its metric) whose key
the same config gives. A
published number whose protocol differs from ours is marked with † and the difference is named in
the footnotes; a cell whose config switches its method's distinctive part off is marked ‡ and the
notes name the method it trained. Titles name the overrides and say what ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import pandas as pd
from tabulate import tabulate

from ..config import ConfigError, RunConfig, config_key
from ..evaluations.registry import EVALUATIONS
from ..pipeline import pretrain_stage, random_init_stage, runs_as_label
from .protocols import SETTINGS, our_settings
from .published import OUR_MODE, Protocol, PublishedRecord
from .run_report import DECIMALS, FORMATS, MISSING, RUNS_AS, accuracy_cell, json_records, latex_table
from .results_files import Outcome, markdown_with_count, save_figure, write_unless_fewer
from ..store import atomic_write_text
from .tables import TEST_ACCURACY, PaperTable, TableRow

DIFFERENT_PROTOCOL = "†"
AVERAGE = "average"
"""A transfer table's last column: the mean of a row's cells over its target domains."""


def cell_stages(table: PaperTable, cfg: RunConfig, encoder_key: str, column: str) -> list[tuple[str, str]]:
    """The ledger stage and key of every evaluation a cell of ``column`` reads for the encoder
    ``encoder_key`` (its config ``cfg``): the table's metric on the column's dataset; one stage,
    or for detection one per trial (in trial order)."""
    stages = EVALUATIONS[table.metric].stages(cfg, encoder_key, table.evaluated_on(column), table.transfer(column))
    return [(stage.stage, config_key(stage.config)) for stage in stages]


def our_protocol(table: PaperTable, cfg: RunConfig) -> Protocol:
    """How our number in ``table`` is measured: offline, with every setting of the table's metric
    as the cell's config ``cfg`` applies it (a detection protocol states none)."""
    return Protocol(kind=table.metric, mode=OUR_MODE, settings=our_settings(cfg, table.metric) if table.metric in SETTINGS else {})


def count_cell(mean: float | None, std: float | None, seeds: tuple[int, ...], detection: bool) -> str:
    """``mean ± std (n seeds)``; a detection cell counts its trials (``(5 trials)``, and
    ``(10 trials, 2 seeds)`` over several seeds); one value has no spread."""
    if not detection:
        return accuracy_cell(mean, std, len(seeds))
    if not seeds or mean is None:
        return MISSING
    several = len(set(seeds))
    count = f"{len(seeds)} trial{'s' if len(seeds) > 1 else ''}" + (f", {several} seeds" if several > 1 else "")
    return f"{mean:.2f} ({count})" if std is None else f"{mean:.2f} ± {std:.2f} ({count})"


def _mean(values: tuple[float, ...]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(values: tuple[float, ...]) -> float | None:
    """The sample standard deviation; None for fewer than two values (a spread needs two)."""
    if len(values) < 2:
        return None
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Cell:
    row: str
    method: str
    dataset: str
    values: tuple[float, ...]
    """Our values of :attr:`measure`, one per finished seed (in seed order), or for detection one
    per finished (seed, trial), in that order."""
    seeds: tuple[int, ...]
    """The seed of each value."""
    published: PublishedRecord | None
    protocol_differences: tuple[str, ...]
    random_init: tuple[float, ...] = ()
    """The same metric of the randomly initialised encoder of the same architecture, per seed."""
    config: RunConfig | None = None
    """The cell's run config (seed 0), as the overrides left it."""
    runs_as: dict | None = None
    """``{"method", "why"}`` when the config switches its method's distinctive part off
    (:func:`~hardneg_bench.pipeline.runs_as_label`)."""
    released: tuple[float, ...] = ()
    """The same evaluation of the authors' released weights (``reproduce --checkpoints``), one
    per evaluation seed."""
    ci95: tuple[float, ...] = ()
    """Per seed, the half-width of the 95% interval of a few-shot mean over its episodes."""
    measure: str = TEST_ACCURACY
    """The key of the evaluation records' metrics the cell shows (``AP50`` of a detection column)."""
    released_seeds: tuple[int, ...] = ()
    """The evaluation seed of each :attr:`released` value."""
    released_only: bool = False
    """The row is the authors' released weights alone (nothing of ours is pretrained)."""

    @property
    def detection(self) -> bool:
        return self.measure != TEST_ACCURACY

    @property
    def random_init_mean(self) -> float | None:
        return _mean(self.random_init)

    @property
    def released_mean(self) -> float | None:
        return _mean(self.released)

    @property
    def released_std(self) -> float | None:
        return _std(self.released)

    @property
    def ci95_mean(self) -> float | None:
        return _mean(self.ci95)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def seed_count(self) -> int:
        """How many seeds the values come from (a detection cell has several values per seed)."""
        return len(set(self.seeds))

    @property
    def mean(self) -> float | None:
        return _mean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the values (seeds, or trials of every seed); None for
        one value (a spread needs two)."""
        return _std(self.values)

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
    for row, column in table.cells():
        cfg = table.cell_config(row, column, overrides=overrides)
        group = pretrain_stage(cfg)[1]["group"]
        found: dict[tuple[int, int], dict] = {}
        baseline: dict[tuple[int, int], dict] = {}
        for pretraining in [] if row.released_only else pretrainings.get(group, []):
            seeded = replace(cfg, seed=pretraining["seed"])
            for encoder_key, into in ((pretraining["key"], found), (config_key(random_init_stage(seeded)[0]), baseline)):
                for trial, stage in enumerate(cell_stages(table, seeded, encoder_key, column)):
                    result = by_key.get(stage)
                    if result is not None:
                        into[pretraining["seed"], trial] = result["metrics"]
        released = released_results(table, row, column, cfg, records)
        weights = row.released.get(column)
        method = f"{weights.format} weights" if row.released_only and weights else row.method
        ci95 = tuple(m["ci95"] for _, m in sorted(found.items()) if "ci95" in m)
        for measure in table.measures(column):
            record_id = row.record_id(column, measure)
            record = published.get(record_id) if record_id else None
            differences = tuple(record.protocol.differences(our_protocol(table, cfg))) if record is not None and record.value is not None else ()
            values, seeds = _measured(found, measure)
            theirs, released_seeds = _measured(released, measure)
            runs_as = None if row.released_only else runs_as_label(cfg)
            cells.append(
                Cell(row.label, method, column, values, seeds, record, differences, _measured(baseline, measure)[0], cfg, runs_as, theirs, ci95, measure=measure, released_seeds=released_seeds, released_only=row.released_only)
            )
    return cells


def _measured(results: dict[tuple[int, int], dict], measure: str) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The values of ``measure`` in ``results`` (by (seed, trial), in that order; a None, which
    COCO's evaluation gives for a size with no object, is no value) and the seed of each."""
    given = [(seed, metrics[measure]) for (seed, _), metrics in sorted(results.items()) if metrics.get(measure) is not None]
    return tuple(v for _, v in given), tuple(s for s, _ in given)


def released_results(table: PaperTable, row: TableRow, column: str, cfg: RunConfig, records: list[dict]) -> dict[tuple[int, int], dict]:
    """The metrics of the cell's evaluations of its released weights, by (evaluation seed,
    trial): evaluations of an encoder read from a file of that name and format, with the cell's
    settings."""
    weights = row.released.get(column)
    if weights is None:
        return {}
    found: dict[tuple[int, int], dict] = {}
    for r in records:
        if r.get("checkpoint") != weights.file or r.get("format") != weights.format or r["stage"] == "checkpoint":
            continue
        stages = cell_stages(table, replace(cfg, seed=r["seed"]), r["parent"], column)
        if (r["stage"], r["key"]) in stages:
            found[r["seed"], stages.index((r["stage"], r["key"]))] = r["metrics"]
    return found


def has_results(cells: list[Cell]) -> bool:
    return any(c.values for c in cells)


def result_count(cells: list[Cell]) -> int:
    """How many results the table shows: one per finished (cell, seed), or (cell, seed, trial)."""
    return sum(c.n for c in cells)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, DECIMALS)


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
                "pretrained_on": table.pretrain_dataset(c.dataset),
                "metric": table.metric,
                "measure": c.measure,
                "mean": _rounded(c.mean),
                "std": _rounded(c.std),
                "n": c.n,
                "seeds": c.seed_count,
                "ci95": _rounded(c.ci95_mean),
                "random_init": _rounded(c.random_init_mean),
                "released_weights": _rounded(c.released_mean),
                "released_n": len(c.released),
                "released_only": c.released_only,
                "published": c.published_value,
                "delta": _rounded(c.delta),
                "protocol_differs": bool(c.protocol_differences),
                "protocol_differences": "; ".join(c.protocol_differences),
                "published_id": p.id if p else None,
                "source": f"{p.paper}, {p.table}: {p.source}" if p else None,
                "missing": p.missing if p else None,
                "runs_as": c.runs_as["method"] if c.runs_as else None,
                "runs_as_why": c.runs_as["why"] if c.runs_as else None,
            }
        )
    return pd.DataFrame(rows)


def _ours(c: Cell) -> str:
    cell = f"{c.mean:.2f} ± {c.ci95[0]:.2f} (95% CI, 1 seed)" if c.n == 1 and c.ci95 else count_cell(c.mean, c.std, c.seeds, c.detection)
    return f"{cell} {RUNS_AS}" if c.runs_as and c.values else cell


def _runs_as_notes(cells: list[Cell]) -> list[str]:
    return [f"{RUNS_AS} {c.row} on {c.dataset} trained as {c.runs_as['method']}: {c.runs_as['why']}" for c in cells if c.runs_as and c.values]


def _footnote(c: Cell) -> str:
    """What the footnote of ``c``'s published number says: its source, why it is missing, and how
    the cell's protocol differs from it. Cells whose footnotes say the same share one (the AP50,
    AP and AP75 records of one row of a detection table); two cells compared with one record under
    different settings get one each."""
    p = c.published
    text = f"{p.paper}, {p.table}, row \"{p.row}\": {p.source}"
    if p.value is None:
        text += f". Missing: {p.missing}"
    if c.protocol_differences:
        text += f". {DIFFERENT_PROTOCOL} protocol differs: {'; '.join(c.protocol_differences)} ({p.protocol.details})"
    return text


def _footnotes(cells: list[Cell]) -> tuple[dict[str, int], list[str]]:
    """Footnote numbers by :func:`_footnote` text, and the footnote lines (then the cells marked
    :data:`~hardneg_bench.report.RUNS_AS`)."""
    numbers: dict[str, int] = {}
    for c in cells:
        if c.published is not None:
            numbers.setdefault(_footnote(c), len(numbers) + 1)
    return numbers, [f"[{n}] {text}" for text, n in numbers.items()] + _runs_as_notes(cells)


def _published(c: Cell, numbers: dict[str, int]) -> str:
    if c.published is None:
        return MISSING
    mark = DIFFERENT_PROTOCOL if c.protocol_differences else ""
    value = MISSING if c.published_value is None else f"{c.published_value:.2f}"
    return f"{value}{mark} [{numbers[_footnote(c)]}]"


def _delta(c: Cell) -> str:
    return MISSING if c.delta is None else f"{c.delta:+.2f}"


def wide_layout(table: PaperTable, cells: list[Cell]) -> tuple[pd.DataFrame, list[str]]:
    """The paper layout: one row per table row, (ours, published, Δ) per dataset — ours: our
    pretraining, our evaluation; once the authors' released weights of a cell were evaluated, their
    column beside it: the released weights, our evaluation — and footnotes."""
    numbers, notes = _footnotes(cells)
    lookup = {(c.row, c.dataset, c.measure): c for c in cells}
    rows = []
    for row in table.rows:
        line = {"method": row.label}
        for column, measure in panels(table):
            c = lookup[row.label, column, measure]
            head = panel_title(table, column, measure)
            line[f"{head} ours"] = _ours(c)
            if any(other.released for other in cells):
                line[f"{head} released weights"] = count_cell(c.released_mean, c.released_std, c.released_seeds, c.detection)
            if any(other.random_init for other in cells):
                line[f"{head} random init"] = MISSING if c.random_init_mean is None else f"{c.random_init_mean:.2f}"
            line[f"{head} published"] = _published(c, numbers)
            line[f"{head} Δ"] = _delta(c)
        if len(table.targets) > 1 and not table.detection:  # an average of VOC and COCO APs means nothing
            line.update(_average(table, [lookup[row.label, column, TEST_ACCURACY] for column in table.columns]))
        rows.append(line)
    return pd.DataFrame(rows), notes


def panels(table: PaperTable) -> list[tuple[str, str]]:
    """Every (column, measure) the table shows, in order: a detection column has several."""
    return [(column, measure) for column in table.columns for measure in table.measures(column)]


def panel_title(table: PaperTable, column: str, measure: str) -> str:
    return f"{column} {measure}" if table.detection else column


def _unit(table: PaperTable) -> str:
    return "detection AP %" if table.detection else f"{table.metric} test accuracy %"


def _mean_of(values: list[float | None]) -> str:
    return MISSING if not values or any(v is None for v in values) else f"{sum(values) / len(values):.2f}"


def _average(table: PaperTable, row_cells: list[Cell]) -> dict[str, str]:
    """A transfer table row's average over its domains, ours and published, each only when every
    domain has one (an average over some domains would not compare with the paper's)."""
    return {f"{AVERAGE} ours": _mean_of([c.mean for c in row_cells]), f"{AVERAGE} published": _mean_of([c.published_value for c in row_cells])}


def table_title(table: PaperTable, overrides: list[str] = ()) -> str:
    """The table's title, naming the overrides it was run with (its YAML title describes the
    recipe without them)."""
    return f"{table.title} — run with {', '.join(overrides)}" if overrides else table.title


def _spread(values) -> str:
    return " / ".join(str(v) for v in sorted(set(values)))


def what_ran(cells: list[Cell], overrides: list[str] = ()) -> str:
    """One line from the cells' own configs: backbone, pretraining epochs and batch, seeds, and
    ``overrides`` (where no title names them)."""
    configs = [c.config for c in cells if c.config is not None and not c.released_only]
    epochs = {cfg.pretrain.epochs for cfg in configs}
    counts = sorted({c.seed_count for c in cells if c.n})
    if not counts:
        seeds = "no finished seed yet"
    else:
        seeds = f"{counts[0]}{f' to {counts[-1]}' if len(counts) > 1 else ''} seed{'s' if counts[-1] > 1 else ''} per finished cell"
    ran = f"{'Ran' if counts else 'Configured'}: {_spread(cfg.model.backbone for cfg in configs)} backbone, {_spread(epochs)} pretraining epoch{'s' if max(epochs, default=1) > 1 else ''}, batch {_spread(cfg.pretrain.batch_size for cfg in configs)}; {seeds}"
    if any(c.detection for c in cells):
        ran += f"; detection: {_spread(_detector(c.config) for c in cells if c.config is not None)}"
    return ran + (f"; overrides: {', '.join(f'--set {o}' for o in overrides)}." if overrides else ".")


def _detector(cfg: RunConfig) -> str:
    d = cfg.detection
    iterations = f" cut to {d.iterations:,} iterations" if d.iterations is not None else ""
    return f"{d.arch} {d.task}, schedule {d.schedule}{iterations}, batch {d.batch_size}, {d.trials} trial{'s' if d.trials > 1 else ''} per seed"


def render_table(table: PaperTable, cells: list[Cell], fmt: str, overrides: list[str] = ()):
    """One table in ``fmt``: a rich Table for ``table``, else a string."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "csv":
        return cells_frame(table, cells).to_csv(index=False)
    if fmt == "json":
        return json_records(cells_frame(table, cells))
    wide, notes = wide_layout(table, cells)
    ran = what_ran(cells, overrides)
    if fmt == "markdown":
        return "\n\n".join([tabulate(wide, headers="keys", tablefmt="github", showindex=False, disable_numparse=True), ran, "\n".join(f"{n}  " for n in notes)]).rstrip() + "\n"
    if fmt == "latex":
        return latex_table(wide, ["method"], [ran, *notes])
    from rich.markup import escape
    from rich.table import Table

    out = Table(title=f"{table.name}: {table_title(table, overrides)} ({_unit(table)})", caption="\n".join([what_ran(cells), *notes]), caption_justify="left")
    for name in wide.columns:
        out.add_column(escape(str(name)), justify="left" if name == "method" else "right")
    for line in wide.itertuples(index=False):
        out.add_row(*(escape(str(v)) for v in line))
    return out


# ---------------------------------------------------------------------------------------------
# Files under a results folder


def made_with(table: PaperTable, seeds: int, overrides: list[str] = ()) -> list[str]:
    """The commands that reproduce the table and report it (with the same overrides)."""
    sets = "".join(f" --set {o}" for o in overrides)
    return [f"hardneg-bench reproduce {table.name} --seeds {seeds}{sets}", f"hardneg-bench report --table {table.name}{sets}"]


def table_markdown(table: PaperTable, cells: list[Cell], seeds: int, overrides: list[str] = ()) -> str:
    wide, notes = wide_layout(table, cells)
    several = any(c.n > 1 for c in cells)
    ours = "the mean ± sample std over seeds (n seeds), or one seed's value" if several else "one seed's value (no spread: that needs two seeds)"
    measured = f"Test accuracy (%, {table.metric})"
    if table.detection:
        ours = "the mean ± sample std over every trial of every seed (n trials: each a detector fine-tuned from the seed's encoder), or one trial's value"
        measured = "Detection AP (%: AP averaged over IoU 0.50:0.95, AP50 and AP75 at IoU 0.50 and 0.75; mask_ and keypoint_ the same for masks and keypoints)"
    parts = [
        f"# {table_title(table, overrides)}",
        "",
        f"Experiment `experiments/tables/{table.name}.yaml`; published numbers: {table.source}.",
        "",
        what_ran(cells),
        "",
        f"{measured}; ours is {ours}; Δ = ours − published;",
        f"{MISSING} = not run yet or not published/verified; {DIFFERENT_PROTOCOL} = the published number was measured",
        "with a different protocol (see its footnote); random init = the same evaluation of the untrained",
        "encoder of the same architecture (mean over the same seeds), the floor a method must beat.",
        *([f"{RUNS_AS} = the run's settings switch its method's distinctive part off: it trained the method its note names."] if _runs_as_notes(cells) else []),
        *([f"Few-shot cells of one seed: mean ± the half-width of its 95% interval over the episodes (1.96 std / sqrt(episodes))."] if any(c.ci95 for c in cells) else []),
        *([f"Pretrained on {table.datasets[0]}; each column is a target domain; {AVERAGE} = the mean over the domains, shown only when every domain has a value."] if table.targets and not table.detection else []),
        *([f"Pretrained on {table.datasets[0]}; each column is a detection dataset (DATASET:TASK for a task other than boxes), fine-tuned from each encoder."] if table.detection else []),
        *(["A row of released weights only is the authors' encoder, which we evaluate but do not pretrain (ours: —)."] if any(c.released_only for c in cells) else []),
        "",
        tabulate(wide, headers="keys", tablefmt="github", showindex=False, disable_numparse=True),
        "",
        *(f"{n}  " for n in notes),
        "",
        "Made with:",
        "",
        "```bash",
        *made_with(table, seeds, overrides),
        "```",
    ]
    if table.notes:
        recipe = "The table's notes, which describe its recipe without the overrides: " if overrides else ""
        parts[4:4] = [recipe + table.notes, ""]
    return "\n".join(parts) + "\n"


def table_chart(table: PaperTable, cells: list[Cell], overrides: list[str] = ()):
    """A bar chart per dataset (per measure of a detection column): ours (with its sample std
    where there are several seeds, or trials), the random-init floor across our bar, our
    evaluation of the released weights as a diamond on it, and the published number beside it
    where there is one. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    published_any = any(c.published_value is not None for c in cells)
    width = 0.4 if published_any else 0.6
    offset = width / 2 if published_any else 0.0
    shown = panels(table)
    fig, axes = plt.subplots(1, len(shown), figsize=(max(4.5, 1.0 * len(table.rows)) * len(shown), 4.2), squeeze=False)
    legend: dict = {}
    for ax, (column, measure) in zip(axes[0], shown):
        row_cells = [c for c in cells if c.dataset == column and c.measure == measure]
        ours_x = [x - offset for x in range(len(row_cells))]
        ax.bar(ours_x, [math.nan if c.mean is None else c.mean for c in row_cells], width, label="ours", color="tab:blue")  # nan: no bar
        spread = [(x, c) for x, c in zip(ours_x, row_cells) if c.std is not None]
        if spread:
            ax.errorbar([x for x, _ in spread], [c.mean for _, c in spread], yerr=[c.std for _, c in spread], fmt="none", ecolor="black", capsize=3, label=f"sample std over {'trials' if table.detection else 'seeds'}")
        if published_any:
            ax.bar([x + offset for x in range(len(row_cells))], [math.nan if c.published_value is None else c.published_value for c in row_cells], width, label="published", color="tab:orange")
        released = [(x, c.released_mean) for x, c in zip(ours_x, row_cells) if c.released_mean is not None]
        if released:
            ax.plot([x for x, _ in released], [m for _, m in released], "D", color="tab:green", zorder=4, label="released weights, our evaluation")
        floors = [(x, c.random_init_mean) for x, c in zip(ours_x, row_cells) if c.random_init_mean is not None]
        if floors:
            ax.hlines([f for _, f in floors], [x - width / 2 for x, _ in floors], [x + width / 2 for x, _ in floors], colors="black", linewidth=2, zorder=3, label="random init")
        ax.set_xticks(range(len(row_cells)), [f"{c.row} {RUNS_AS}" if c.runs_as and c.values else c.row for c in row_cells], rotation=30, ha="right", fontsize=8)
        ax.set_title(panel_title(table, column, measure))
        ax.set_ylabel(f"{measure} (%)" if table.detection else f"{table.metric} top-1 (%)")
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.88), fontsize=8, frameon=False)
    fig.suptitle(f"{table_title(table, overrides)}\n{what_ran(cells)}", fontsize=9)
    notes = _runs_as_notes(cells)
    if notes:
        fig.text(0.01, 0.0, "\n".join(notes), fontsize=7, va="top")
    fig.tight_layout()
    return fig


def write_results(table: PaperTable, cells: list[Cell], results_dir: Path, seeds: int, overrides: list[str] = ()) -> list[Outcome]:
    """``<table>.md`` and ``<table>.png`` under ``results_dir``, each written atomically unless the
    file there shows more results (:func:`~hardneg_bench.results_files.write_unless_fewer`); nothing
    for a table without a result of its own."""
    count = result_count(cells)
    if count == 0:
        return [Outcome(results_dir, False, f"nothing written for table {table.name}: none of its cells has a result in this run store")]
    markdown = markdown_with_count(table_markdown(table, cells, seeds, overrides), count)
    return [
        write_unless_fewer(results_dir / f"{table.name}.md", count, lambda path: atomic_write_text(path, markdown)),
        write_unless_fewer(results_dir / f"{table.name}.png", count, lambda path: save_figure(table_chart(table, cells, overrides), path, count)),
    ]
