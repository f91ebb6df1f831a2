"""``report --diagnostics``: how often each method's hardest negative shares the anchor's class
(its false-negative rate), against the rate of a uniformly drawn negative, and how similar that
hardest negative is, per epoch of pretraining (methods/hardness.py logs them).

Every format shows the same columns in the same units, named in their headers: the two rates in %
(2 decimals), the cosine as it is (3 decimals)."""

from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

from ..methods.hardness import DIAGNOSTICS
from .run_report import RUNS_AS

RUN = ["method", "dataset", "backbone", "epochs", "group"]
HARDEST_RATE, CHANCE_RATE, COSINE = "hardest negative same class (%)", "random negative same class (%)", "hardest negative cosine"
COLUMNS = {"hardest_same_class": HARDEST_RATE, "chance_same_class": CHANCE_RATE, "hardest_similarity": COSINE}
"""The logged diagnostics (fractions, a cosine) by the column that reports them."""
DECIMALS = {HARDEST_RATE: 2, CHANCE_RATE: 2, COSINE: 3}


def diagnostics_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per (pretraining, epoch) that logged diagnostics, rates in %; ``runs_as`` names the
    method a pretraining trained when its settings switched its own method's part off."""
    latest = {r["key"]: r for r in records if r["stage"] == "pretrain"}
    rows = [
        {**{k: r[k] for k in RUN}, "seed": r["seed"], "runs_as": (r.get("runs_as") or {}).get("method"), **entry}
        for r in latest.values()
        for entry in r["metrics"].get("diagnostics", [])
    ]
    frame = pd.DataFrame(rows, columns=[*RUN, "seed", "runs_as", "epoch", *DIAGNOSTICS])
    frame[["hardest_same_class", "chance_same_class"]] *= 100
    return frame.rename(columns=COLUMNS)


def pretrainings(frame: pd.DataFrame) -> int:
    """How many pretrainings the frame shows (the count of results the plot records)."""
    return len(frame[["group", "seed"]].drop_duplicates())


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.round(DECIMALS)


def marked(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :data:`~hardneg_bench.report.RUNS_AS` after the method of every pretraining
    that trained another method (``runs_as``)."""
    out = frame.copy()
    out["method"] = [f"{m} {RUNS_AS} (as {a})" if isinstance(a, str) else m for m, a in zip(frame["method"], frame["runs_as"])]
    return out


def last_epoch_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's final-epoch diagnostics, averaged over seeds; marked methods."""
    frame = marked(frame)
    last = frame[frame["epoch"] == frame.groupby("group")["epoch"].transform("max")]
    summary = last.groupby(RUN, sort=False)[list(COLUMNS.values())].mean().reset_index()
    summary["seeds"] = last.groupby(RUN, sort=False)["seed"].nunique().to_numpy()
    return rounded(summary).drop(columns="group")


def formatted(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` as text, each column with its own decimals."""
    out = summary.astype(object)
    for column, decimals in DECIMALS.items():
        out[column] = [f"{v:.{decimals}f}" for v in summary[column]]
    return out.astype(str)


def diagnostics_chart(frame: pd.DataFrame):
    """Per dataset: the false-negative rate and the hardest cosine over epochs, one line per
    method configuration (mean over seeds), one legend beside the plots. Returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    frame = marked(frame)
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.6 * len(datasets)), squeeze=False)
    # eleven well-separated colours (tab10 and black), one marker each; past eleven the line style changes
    colours = [*plt.get_cmap("tab10").colors, "black"]
    markers = "os^Dv<>PXph"
    styles = ("-", "--", ":", "-.")
    legend: dict = {}
    for (rate_ax, cos_ax), dataset in zip(axes, datasets):
        part = frame[frame["dataset"] == dataset]
        for i, ((method, group), lines) in enumerate(part.groupby(["method", "group"], sort=False)):
            mean = lines.groupby("epoch")[[HARDEST_RATE, COSINE]].mean()
            label = method if part[part["method"] == method]["group"].nunique() == 1 else f"{method} ({group[:6]})"
            style = {"color": colours[i % len(colours)], "marker": markers[i % len(markers)], "markersize": 4, "linestyle": styles[i // len(colours) % len(styles)]}
            rate_ax.plot(mean.index, mean[HARDEST_RATE], label=label, **style)
            cos_ax.plot(mean.index, mean[COSINE], label=label, **style)
        chance = part.groupby("epoch")[CHANCE_RATE].mean()
        rate_ax.plot(chance.index, chance.to_numpy(), color="0.55", linestyle=(0, (4, 2)), linewidth=1.5, marker="_", markersize=12, label="random negative (mean)")
        rate_ax.set(title=f"{dataset}: hardest negative shares the class", xlabel="epoch", ylabel="%")
        cos_ax.set(title=f"{dataset}: cosine of the hardest negative", xlabel="epoch", ylabel="cosine", ylim=(min(0.0, math.floor(part[COSINE].min() * 10) / 10), 1.0))
        for ax in (rate_ax, cos_ax):  # whole epochs, half an epoch of margin (one epoch is one point)
            ax.set_xlim(part["epoch"].min() - 0.5, part["epoch"].max() + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        legend.update(zip(*reversed(rate_ax.get_legend_handles_labels())))
    fig.legend(legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
