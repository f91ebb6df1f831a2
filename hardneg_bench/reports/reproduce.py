"""``hardneg-bench reproduce TABLE``: every (row, dataset, seed) of a paper table as a run, and the
plan that ``--dry-run`` prints: which runs are cached and what the rest would cost.

A cost is pretraining images (epochs x the pretraining split's size) over a measured throughput,
and says where the throughput came from:

1. the images/s of finished pretrainings in the ledger with the same throughput key (backbone,
   width, RGB or Lab streams, crop size, batch size) on the same device: their median;
2. else the latest ``hardneg-bench bench`` figure with that key on the same device (the full
   pipeline's images/s, kept in the run store's ``bench.jsonl``).

A split size the dataset does not fix (ImageNet-100's training split, 732 to 1,300 images per
class) is counted in the data root when the dataset is there. Whatever is not known is unknown,
never guessed: no images count or no throughput, no estimate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import ConfigError, RunConfig, config_key
from ..data.base import DatasetMissingError, DatasetSpec
from ..data.registry import get_dataset
from ..methods import get_method
from ..pipeline import pretrain_stage
from ..recipes import resolve_config
from ..store import RunStore
from .table_report import cell_stage
from .tables import PaperTable, TableRow


@dataclass(frozen=True)
class Throughput:
    images_per_s: float
    source: str
    """Where the figure comes from, in words (the ledger's runs or a bench run)."""


@dataclass(frozen=True)
class PlannedRun:
    row: TableRow
    dataset: str
    seed: int
    cfg: RunConfig
    status: str
    """``cached`` (pretrained and evaluated), ``pretrained`` (evaluation to run), ``to run``, or
    ``shared`` (to run, on the pretraining of an earlier cell of the plan: a transfer table's
    columns share one)."""
    images: int | None
    """Images seen by pretraining: epochs x pretraining-split size; None if the split's size is unknown."""
    throughput: Throughput | None
    """The measured images/s the estimate uses; None if nothing comparable was measured."""

    @property
    def seconds(self) -> float | None:
        """Estimated pretraining time of a run to run; None when unknown or nothing is to pretrain."""
        if self.status != "to run" or self.images is None or self.throughput is None:
            return None
        return self.images / self.throughput.images_per_s


def throughput_key(config: dict) -> tuple | None:
    """What throughput depends on, from a pretraining stage config (plain data); None when the
    record is from an older schema or an unknown method or dataset."""
    try:
        model, pretrain = config["model"], config["pretrain"]
        crop = pretrain["augment"]["crop_size"] or get_dataset(config["dataset"]).image_size
        return (model["backbone"], model["width"], get_method(config["method"]).cls.lab_split, crop, pretrain["batch_size"])
    except (KeyError, TypeError, ConfigError):
        return None


def describe_key(key: tuple) -> str:
    backbone, width, lab_split, crop, batch = key
    return f"{backbone}{'' if width == 1 else f' x{width:g}'}{' (L and ab streams)' if lab_split else ''}, {crop} px, batch {batch}"


def measured_throughput(store: RunStore, device: str) -> dict[tuple, list[float]]:
    """images/s of every finished pretraining on ``device``, by throughput key."""
    found: dict[tuple, list[float]] = {}
    for record in store.ledger():
        metrics = record.get("metrics", {})
        if record["stage"] != "pretrain" or metrics.get("device") != device or "images_per_s" not in metrics:
            continue
        key = throughput_key(record["config"])
        if key is not None:
            found.setdefault(key, []).append(metrics["images_per_s"])
    return found


def bench_throughput(store: RunStore, device: str) -> dict[tuple, Throughput]:
    """The latest ``bench`` figure of the full pipeline on ``device``, by throughput key."""
    found: dict[tuple, Throughput] = {}
    for record in store.bench_records():
        key = throughput_key(record.get("config") or {})
        if record.get("device") != device or key is None or "full" not in record:
            continue
        data = "its files" if record.get("data") == "real" else "random images in memory"
        found[key] = Throughput(record["full"]["images_per_s"], f"bench of {record.get('date', '?')} ({record.get('method')}, {data})")
    return found


def split_images(spec: DatasetSpec, split: str, data_root: Path | None) -> int | None:
    """The size of ``split``: fixed by the dataset, else counted in ``data_root`` (image folders,
    listed without reading an image); None when neither."""
    if split in spec.split_sizes:
        return spec.split_sizes[split]
    if data_root is None:
        return None
    try:
        return len(spec.load(split, data_root, False))
    except DatasetMissingError:
        return None


def plan(table: PaperTable, seeds: int, store: RunStore, device: str, overrides: list[str] = (), data_root: Path | None = None) -> list[PlannedRun]:
    ledger_rates, bench_rates = measured_throughput(store, device), bench_throughput(store, device)
    sizes: dict[tuple[str, str], int | None] = {}
    runs = []
    planned: set[str] = set()
    for row, dataset in table.cells():
        base = table.cell_config(row, dataset, overrides=overrides)
        spec = get_dataset(table.pretrain_dataset(dataset))
        for seed in range(seeds):
            cfg = replace(base, seed=seed)
            stage_config = pretrain_stage(cfg)[0]
            pretrain_key = config_key(stage_config)
            if not store.is_done("pretrain", pretrain_key):
                status = "shared" if pretrain_key in planned else "to run"
                planned.add(pretrain_key)
            elif store.is_done(*cell_stage(table, cfg, pretrain_key, dataset)):
                status = "cached"
            else:
                status = "pretrained"
            split = (spec.name, cfg.pretrain.split)
            if split not in sizes:
                sizes[split] = split_images(spec, cfg.pretrain.split, data_root)
            images = None if sizes[split] is None else cfg.pretrain.epochs * sizes[split]
            key = throughput_key(stage_config)
            rates = ledger_rates.get(key)
            if rates:
                throughput = Throughput(statistics.median(rates), f"{len(rates)} finished pretraining{'s' if len(rates) > 1 else ''} in the ledger")
            else:
                throughput = bench_rates.get(key)
            runs.append(PlannedRun(row, dataset, seed, cfg, status, images, throughput))
    return runs


@dataclass(frozen=True)
class Presence:
    dataset: str
    present: bool
    detail: str
    """Where it was found, or the one-line advice of its loader on where to put it."""


def dataset_presence(table: PaperTable, data_root: Path) -> list[Presence]:
    """Whether each dataset the table reads (its pretraining datasets and its columns) is under
    ``data_root``: its folder exists (its files are checked when a run loads it), or is built in.
    An absent one carries the line its loader gives without downloading (it fails at its first
    missing path, before reading any image)."""
    found = []
    for name in dict.fromkeys([*table.datasets, *table.columns]):
        spec = get_dataset(name)
        if spec.builtin:
            found.append(Presence(name, True, "built in"))
        elif (data_root / spec.location).exists():
            found.append(Presence(name, True, str(data_root / spec.location)))
        else:
            try:
                spec.load("test", data_root, False)
                found.append(Presence(name, True, str(data_root)))
            except DatasetMissingError as err:
                found.append(Presence(name, False, str(err)))
    return found


def bench_command(run: PlannedRun, device: str) -> str:
    """The ``bench`` command that measures the throughput ``run`` needs (its throughput key: the
    keys where the run departs from the method's recipe are set)."""
    cfg, recipe = run.cfg, resolve_config(run.cfg.method, run.cfg.dataset)
    sets = [f"model.width={cfg.model.width:g}"] if cfg.model.width != recipe.model.width else []
    if cfg.pretrain.augment.crop_size != recipe.pretrain.augment.crop_size:
        sets.append(f"pretrain.augment.crop_size={cfg.pretrain.augment.crop_size or get_dataset(cfg.dataset).image_size}")
    return " ".join(
        [f"hardneg-bench bench --method {cfg.method} --dataset {cfg.dataset} --backbone {cfg.model.backbone} --batch-size {cfg.pretrain.batch_size} --device {device}", *(f"--set {s}" for s in sets)]
    )
