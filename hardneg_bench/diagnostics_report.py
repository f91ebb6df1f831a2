"""``report --diagnostics``: how often each method's hardest negative shares the anchor's class
(its false-negative rate), against the rate of a uniformly drawn negative, and how similar that
hardest negative is, per epoch of pretraining (methods/hardness.py logs them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from .methods.hardness import DIAGNOSTICS

RUN = ["method", "dataset", "backbone", "epochs", "group"]


def diagnostics_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per (pretraining, epoch) that logged diagnostics."""
    latest = {r["key"]: r for r in records if r["stage"] == "pretrain"}
    rows = [
        {**{k: r[k] for k in RUN}, "seed": r["seed"], **entry}
        for r in latest.values()
        for entry in r["metrics"].get("diagnostics", [])
    ]
    return pd.DataFrame(rows, columns=[*RUN, "seed", "epoch", *DIAGNOSTICS])


def last_epoch_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's final-epoch diagnostics, averaged over seeds, in %."""
    last = frame[frame["epoch"] == frame.groupby("group")["epoch"].transform("max")]
    summary = last.groupby(RUN, sort=False)[list(DIAGNOSTICS)].mean().reset_index()
    summary["seeds"] = last.groupby(RUN, sort=False)["seed"].nunique().to_numpy()
    summary["hardest_same_class"] *= 100
    summary["chance_same_class"] *= 100
    return summary.rename(
        columns={"hardest_same_class": "hardest negative same class (%)", "chance_same_class": "random negative same class (%)", "hardest_similarity": "hardest negative cosine"}
    ).drop(columns="group")


def diagnostics_chart(frame: pd.DataFrame, path: Path) -> None:
    """Per dataset: the false-negative rate and the hardest cosine over epochs, one line per
    method configuration (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.6 * len(datasets)), squeeze=False)
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours: one per method configuration
    for (rate_ax, cos_ax), dataset in zip(axes, datasets):
        part = frame[frame["dataset"] == dataset]
        for i, ((method, group), lines) in enumerate(part.groupby(["method", "group"], sort=False)):
            mean = lines.groupby("epoch")[list(DIAGNOSTICS)].mean()
            label = method if part[part["method"] == method]["group"].nunique() == 1 else f"{method} ({group[:6]})"
            colour = colours[i % len(colours)]
            rate_ax.plot(mean.index, 100 * mean["hardest_same_class"], label=label, color=colour)
            cos_ax.plot(mean.index, mean["hardest_similarity"], label=label, color=colour)
        chance = 100 * part.groupby("epoch")["chance_same_class"].mean()
        rate_ax.plot(chance.index, chance.to_numpy(), "k--", linewidth=1, label="random negative (mean)")
        rate_ax.set(title=f"{dataset}: hardest negative shares the class", xlabel="epoch", ylabel="%")
        cos_ax.set(title=f"{dataset}: cosine of the hardest negative", xlabel="epoch", ylim=(min(0.0, math.floor(part["hardest_similarity"].min() * 10) / 10), 1.0))
        rate_ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
