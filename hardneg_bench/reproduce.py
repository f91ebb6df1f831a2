"""``hardneg-bench reproduce TABLE``: every (row, dataset, seed) of a paper table as a run, and the
plan that ``--dry-run`` prints: which runs are cached and what the rest would cost.

Costs come from measured throughput only: the images/s of finished pretrainings in the ledger
with the same backbone, width, image size and batch size on the same device (the median of
them). Where nothing comparable was measured the cost is unknown, never guessed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from .config import ConfigError, RunConfig, config_key
from .data.registry import get_dataset
from .methods import get_method
from .pipeline import pretrain_stage, probe_stage
from .store import RunStore
from .tables import PaperTable, TableRow


@dataclass(frozen=True)
class PlannedRun:
    row: TableRow
    dataset: str
    seed: int
    cfg: RunConfig
    status: str
    """``cached`` (pretrained and probed), ``pretrained`` (probe to run) or ``to run``."""
    images: int
    """Images seen by pretraining: epochs x pretraining-split size."""
    seconds: float | None
    """Estimated pretraining time on the device, from measured throughput; None if unknown."""
    measured_on: int
    """How many ledger runs the throughput estimate comes from."""


def _throughput_key(config: dict) -> tuple | None:
    """What throughput depends on, from a pretraining stage config (plain data); None when the
    record is from an older schema or an unknown method or dataset."""
    try:
        model, pretrain = config["model"], config["pretrain"]
        crop = pretrain["augment"]["crop_size"] or get_dataset(config["dataset"]).image_size
        return (model["backbone"], model["width"], get_method(config["method"]).cls.lab_split, crop, pretrain["batch_size"])
    except (KeyError, TypeError, ConfigError):
        return None


def measured_throughput(store: RunStore, device: str) -> dict[tuple, list[float]]:
    """images/s of every finished pretraining on ``device``, by throughput key."""
    found: dict[tuple, list[float]] = {}
    for record in store.ledger():
        metrics = record.get("metrics", {})
        if record["stage"] != "pretrain" or metrics.get("device") != device or "images_per_s" not in metrics:
            continue
        key = _throughput_key(record["config"])
        if key is not None:
            found.setdefault(key, []).append(metrics["images_per_s"])
    return found


def plan(table: PaperTable, seeds: int, store: RunStore, device: str, overrides: list[str] = ()) -> list[PlannedRun]:
    throughput = measured_throughput(store, device)
    runs = []
    for row, dataset in table.cells():
        base = table.cell_config(row, dataset, overrides=overrides)
        spec = get_dataset(dataset)
        for seed in range(seeds):
            cfg = replace(base, seed=seed)
            stage_config = pretrain_stage(cfg)[0]
            pretrain_key = config_key(stage_config)
            if not store.is_done("pretrain", pretrain_key):
                status = "to run"
            elif store.is_done("probe", config_key(probe_stage(cfg, pretrain_key, dataset))):
                status = "cached"
            else:
                status = "pretrained"
            images = cfg.pretrain.epochs * spec.split_sizes.get(cfg.pretrain.split, 0)
            rates = throughput.get(_throughput_key(stage_config), [])
            if status != "to run":
                seconds: float | None = 0.0
            else:
                seconds = images / statistics.median(rates) if rates else None
            runs.append(PlannedRun(row, dataset, seed, cfg, status, images, seconds, len(rates)))
    return runs
