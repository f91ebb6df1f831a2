"""Tables of results, read from the ledger only.

One row per pretrained encoder configuration (method, dataset, backbone, epochs; seeds
aggregated), one column per evaluation: linear probe and kNN on the pretraining dataset,
linear probe on each transfer dataset, and AP50, AP and AP75 of a detection transfer (COCO's
mask and keypoint AP beside them). A cell is test accuracy (or AP) in %: ``mean ± std (n seeds)``
over seeds, or ``value (1 seed)`` (one seed has no spread: its std is null in CSV and JSON); the
trials of a detection transfer are repeats like seeds, and its cells say so (``(5 trials)``,
``(2 seeds × 5 trials)``; CSV and JSON give their number in ``trials``). A run whose
settings switch its method's distinctive part off (its ledger label's ``runs_as``) is marked ‡.
Numbers in CSV and JSON are rounded to 2 decimals, the resolution of an accuracy in % on 10,000 test
images.
"""

from __future__ import annotations

import json
from typing import Iterable, Sequence

import pandas as pd
from rich.markup import escape
from rich.table import Table
from tabulate import tabulate

from ..config import ConfigError, flatten
from ..provenance import encoder_changes, format_value

FORMATS = ("table", "markdown", "csv", "latex", "json")
ROW = ["method", "dataset", "backbone", "epochs"]
MISSING = "—"
RUNS_AS = "‡"
"""Marks a result whose run trained another method's objective (see its note)."""
DECIMALS = 2
"""Accuracies (%) in CSV and JSON: 0.01 points is one image in 10,000."""


def _column(record: dict) -> str | None:
    if record["stage"] == "probe":
        return f"linear ({record['protocol']})"
    if record["stage"] == "knn":
        return "kNN" if record.get("eval_dataset", record["dataset"]) == record["dataset"] else f"kNN -> {record['eval_dataset']}"
    if record["stage"] == "transfer":
        return f"transfer -> {record['eval_dataset']}"
    if record["stage"] == "fewshot":
        f = record["fewshot"]
        return f"{f['ways']}-way {f['shots']}-shot {f['head'].replace('_', '-')} -> {record['eval_dataset']}"
    if record["stage"] == "detection":
        return f"detection -> {record['eval_dataset']}"
    return None


DETECTION_COLUMNS = tuple((f"{prefix}{metric}", f"{prefix.replace('_', ' ')}{metric}") for prefix in ("", "mask_", "keypoint_") for metric in ("AP50", "AP", "AP75"))
"""(metric, column name) of each figure of a detection record the report shows, where it has it."""


def _cells(record: dict) -> list[tuple[str, float]]:
    """(column, value) of each number ``record`` puts in the report: a detection record's AP
    figures, each as ``AP50 -> voc0712``, else its test accuracy under its :func:`_column`."""
    if record["stage"] != "detection":
        return [(_column(record), record["metrics"]["test_accuracy"])]
    found = [(name, record["metrics"].get(metric)) for metric, name in DETECTION_COLUMNS]
    return [(f"{name} -> {record['eval_dataset']}", value) for name, value in found if value is not None]


def _runs_as(record: dict) -> dict:
    found = record.get("runs_as") or {}  # absent in records written before the label had it
    return {"runs_as": found.get("method"), "runs_as_why": found.get("why")}


EVALUATION_IDENTITY = ("parent", "seed", "trial")
"""Keys of an evaluation's config that say which encoder, seed and trial it evaluated, not how."""


def evaluation_variants(records: Iterable[dict]) -> dict[str, str]:
    """For every evaluation record's key: the settings in which its evaluation differs from the
    other evaluations of the same encoder configuration and column (``probe.epochs=5``), "" where
    they agree. Seeds are aggregated within one variant only: two probe settings of one encoder
    configuration are two columns, never two seeds of one cell."""
    by_cell: dict[tuple[str, str], dict[str, dict]] = {}
    for r in records:
        column = _column(r)
        if column is not None:
            config = {k: v for k, v in (r.get("config") or {}).items() if k not in EVALUATION_IDENTITY}
            by_cell.setdefault((r["group"], column), {})[r["key"]] = flatten(json.loads(json.dumps(config)))
    variants: dict[str, str] = {}
    for configs in by_cell.values():
        keys = sorted({k for c in configs.values() for k in c})
        differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]
        for key, config in configs.items():
            variants[key] = ", ".join(f"{k}={format_value(config.get(k))}" for k in differing)
    return variants


def results_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per figure of each evaluation record (a detection record has several: :func:`_cells`;
    the last record of each stage key wins); ``trial``: a detection record's trial; ``changes``: how
    its encoder's pretraining differs from the recipe (:mod:`hardneg_bench.provenance`); a column
    that holds evaluations with different settings is split by them (:func:`evaluation_variants`)."""
    latest = {(r["stage"], r["key"]): r for r in records}
    changes = encoder_changes(latest.values())
    variants = evaluation_variants(latest.values())

    def variant(r: dict) -> str:
        settings = variants.get(r["key"])
        return f" [{settings}]" if settings else ""

    rows = [
        {**{k: r[k] for k in ROW}, "group": r["group"], "changes": changes.get(r.get("parent"), ""), "seed": r["seed"], "trial": r.get("trial"), "column": name + variant(r), "accuracy": value, "ci95": r["metrics"].get("ci95"), **_runs_as(r)}
        for r in latest.values()
        if _column(r)
        for name, value in _cells(r)
    ]
    return pd.DataFrame(rows, columns=[*ROW, "group", "changes", "seed", "trial", "column", "accuracy", "ci95", "runs_as", "runs_as_why"])


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (NaN for one value) and count over seeds (and trials: their number in
    ``trials``, 0 for an evaluation without) for every (row, column), and a few-shot cell's 95%
    interval over its episodes (``ci95``: the mean over seeds of each seed's), rounded to
    :data:`DECIMALS`, with the configuration's changes from its recipe and its ``runs_as``."""
    groups = frame.groupby([*ROW, "group", "column"], sort=False)
    stats = groups["accuracy"].agg(["mean", "std", "count"]).reset_index()
    stats["trials"] = groups["trial"].nunique().to_numpy()
    stats["ci95"] = groups["ci95"].mean().to_numpy()
    stats[["mean", "std", "ci95"]] = stats[["mean", "std", "ci95"]].round(DECIMALS)
    per_group = frame.drop_duplicates("group").set_index("group")
    for name in ("changes", "runs_as", "runs_as_why"):
        stats[name] = stats["group"].map(per_group[name])
    return stats


def accuracy_cell(mean: float | None, std: float | None, n: int, trials: int = 0, ci95: float | None = None) -> str:
    """``mean ± std (n seeds)``; one seed has no spread: ``mean (1 seed)``, or, for a few-shot mean
    over episodes, ``mean ± the half-width of its 95% interval (95% CI, 1 seed)``. With ``trials``
    (a detection transfer's, repeats like seeds), the ``n`` values are counted as ``(5 trials)``,
    ``(2 seeds × 5 trials)``, or ``(7 runs over 5 trials)`` when some seed lacks some trial."""
    if not n or mean is None:
        return MISSING
    repeats = f"{n} seed{'s' if n > 1 else ''}"
    if trials:
        seeds, uneven = divmod(n, trials)
        repeats = f"{n} runs over {trials} trials" if uneven else f"{trials} trial{'s' if trials > 1 else ''}" if seeds == 1 else f"{seeds} seeds × {trials} trials"
    if n == 1:
        return f"{mean:.2f} ({repeats})" if ci95 is None or pd.isna(ci95) else f"{mean:.2f} ± {ci95:.2f} (95% CI, {repeats})"
    return f"{mean:.2f} ± {std:.2f} ({repeats})"


def domain_averages(stats: pd.DataFrame) -> pd.DataFrame:
    """For every evaluation measured on several transfer domains (``transfer -> dtd``,
    ``transfer -> cub``, ...): per encoder configuration, the mean of its cells over those domains,
    as a column ``transfer -> average of N domains``; only where the configuration has every
    domain the report shows for it (else missing: an average over some domains is another number)."""
    by_family = stats.assign(family=stats["column"].str.rpartition(" -> ")[0], domain=stats["column"].str.rpartition(" -> ")[2])
    by_family = by_family[(by_family["family"] != "") & ~by_family["domain"].str.contains(r"\[")]
    rows = []
    for family, part in by_family.groupby("family", sort=False):
        domains = set(part["domain"])
        if len(domains) < 2:
            continue
        for group, cells in part.groupby("group", sort=False):
            complete = set(cells["domain"]) == domains
            rows.append({**cells.iloc[0][[*ROW, "group"]].to_dict(), "column": f"{family} -> average of {len(domains)} domains", "cell": f"{cells['mean'].mean():.2f}" if complete else MISSING})
    return pd.DataFrame(rows, columns=[*ROW, "group", "column", "cell"])


def accuracy_description(counts: Iterable[int], trials: bool = False) -> str:
    """What the cells of a table with these counts of values are (``trials``: some are over
    detection trials)."""
    over = "seeds and trials" if trials else "seeds"
    return f"mean ± sample std over {over}" if max(counts, default=0) > 1 else "one value each" if trials else "one seed each"


def runs_as_notes(frame: pd.DataFrame) -> list[str]:
    """One line per configuration marked :data:`RUNS_AS`: which method it trained, and why."""
    marked = frame[frame["runs_as"].notna()].drop_duplicates("group")
    return [f"{RUNS_AS} {r.method} on {r.dataset}, {r.epochs} epoch{'s' if r.epochs != 1 else ''}, trained as {r.runs_as}: {r.runs_as_why}" for r in marked.itertuples()]


def runs_as_line(method: str, runs_as: dict) -> str:
    """What ``run`` and ``reproduce`` print before training a configuration that ``runs_as``."""
    return f"note: this {method} run trains {runs_as['method']}'s objective: {runs_as['why']}; reports mark its results {RUNS_AS}"


def _marked(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :data:`RUNS_AS` after the method of every marked configuration."""
    out = frame.copy()
    out["method"] = [f"{m} {RUNS_AS}" if isinstance(a, str) else m for m, a in zip(out["method"], out["runs_as"])]
    return out


def json_records(frame: pd.DataFrame) -> str:
    """``frame`` as a JSON list of records, NaN as null."""
    return json.dumps(json.loads(frame.to_json(orient="records")), indent=1, ensure_ascii=False)


# LaTeX: the characters it reserves, then the symbols the reports use, as LaTeX writes them
_LATEX_RESERVED = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"->": r"$\rightarrow$", "→": r"$\rightarrow$", "±": r"$\pm$", "Δ": r"$\Delta$", "−": "$-$", "—": "---", "†": r"\dag{}", "‡": r"\ddag{}"}


def latex_text(text: str) -> str:
    escaped = "".join(_LATEX_RESERVED.get(ch, ch) for ch in str(text))
    for symbol, latex in _LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, latex)
    return escaped


def latex_table(frame: pd.DataFrame, left: Sequence[str] = (), notes: Sequence[str] = ()) -> str:
    """A booktabs ``tabular`` of ``frame`` (columns in ``left`` left-aligned, the others right),
    every header and cell escaped for LaTeX, and ``notes`` as paragraphs after it."""
    spec = "".join("l" if c in left else "r" for c in frame.columns)
    row = lambda values: " & ".join(latex_text(v) for v in values) + r" \\"  # noqa: E731
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", row(frame.columns), r"\midrule", *(row(values) for values in frame.itertuples(index=False)), r"\bottomrule", r"\end{tabular}"]
    return "\n".join([*lines, *(f"\n{latex_text(n)}" for n in notes)]) + "\n"


def wide_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows = encoder configurations, columns = evaluations, cells = formatted accuracies. A
    method that ran with keys changed from its recipe names them, ``hcl (method_params.beta=2.0)``;
    when two configurations still share a label, a ``config`` column (the hash) tells them apart."""
    stats = summary(frame)
    stats["cell"] = [accuracy_cell(m, s, n, trials, c) for m, s, n, trials, c in zip(stats["mean"], stats["std"], stats["count"], stats["trials"], stats["ci95"])]
    stats = pd.concat([stats, domain_averages(stats)], ignore_index=True)
    wide = stats.pivot_table(index=[*ROW, "group"], columns="column", values="cell", aggfunc="first", sort=False).reset_index()
    wide.columns.name = None
    columns = sorted(c for c in wide.columns if c not in [*ROW, "group"])
    changes = wide["group"].map(frame.drop_duplicates("group").set_index("group")["changes"])
    wide["method"] = [f"{method} ({changed})" if changed else method for method, changed in zip(wide["method"], changes)]
    ambiguous = wide.duplicated(subset=ROW, keep=False).any()
    keep = [*ROW, *(["group"] if ambiguous else []), *columns]
    return wide[keep].rename(columns={"group": "config"}).fillna(MISSING)


def render(frame: pd.DataFrame, fmt: str):
    """The report in ``fmt``: a rich Table for ``table``, else a string."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "json":
        return json_records(summary(frame))
    if fmt == "csv":
        return summary(frame).to_csv(index=False)
    wide, notes = wide_table(_marked(frame)), runs_as_notes(frame)
    left = [*ROW, "config"]
    if fmt == "markdown":
        return "\n\n".join([tabulate(wide, headers="keys", tablefmt="github", showindex=False, disable_numparse=True), *notes])
    if fmt == "latex":
        return latex_table(wide, left, notes)
    counts, trials = frame.groupby([*ROW, "group", "column"])["seed"].count(), frame["trial"].notna().any()
    table = Table(title=f"hardneg-bench results (test accuracy{' and detection AP' if trials else ''} %, {accuracy_description(counts, trials)})", caption="\n".join(notes) or None, caption_justify="left")
    for name in wide.columns:
        table.add_column(escape(str(name)), justify="left" if name in left else "right")
    for row in wide.itertuples(index=False):
        table.add_row(*(escape(str(v)) for v in row))
    return table
