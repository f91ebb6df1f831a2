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

A detection table's cells add the detectors to fine-tune: each detection stage not yet done (one
per trial, for the pretrained encoder and, with ``random_init_baseline``, the random-init one) costs
its schedule's iterations x a measured seconds per iteration, with the same detector (arch, task,
batch) on the same device:

1. the median ``seconds_per_iteration`` of finished detection stages in the ledger that
   fine-tuned in one process (their ``metrics.device`` naming the device, ``metrics.processes``
   1: the estimate is of one GPU);
2. else the latest detection figure kept in the run store's ``bench.jsonl`` (a record with
   ``"stage": "detection"``, ``device``, ``date``, ``detection`` (the DetectionConfig as data) and
   ``seconds_per_iteration``), which ``benchmarks/gpu_check.py --only detection`` measures.

A row of released weights only has no pretraining; its detection stages are what
``reproduce --checkpoints DIR`` runs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, TypeVar

from ..config import ConfigError, RunConfig, config_key, to_dict
from ..data.base import DatasetMissingError, DatasetSpec
from ..data.registry import get_dataset
from ..detection.datasets import DETECTION_DATASETS
from ..methods import get_method
from ..pipeline import pretrain_stage, random_init_stage
from ..recipes import resolve_config
from ..store import RunStore
from .table_report import cell_stages, released_results
from .tables import PaperTable, TableRow, detection_column

RELEASED = "released weights"
"""The status of a row of released weights only: nothing to pretrain (``reproduce --checkpoints``)."""

GPU_CHECK_DETECTION = "python benchmarks/gpu_check.py --only detection"


@dataclass(frozen=True)
class Throughput:
    images_per_s: float
    source: str
    """Where the figure comes from, in words (the ledger's runs or a bench run)."""


@dataclass(frozen=True)
class DetectionRate:
    seconds_per_iteration: float
    source: str
    """Where the figure comes from, in words (the ledger's detection stages or a GPU check)."""


@dataclass(frozen=True)
class DetectionWork:
    """The detectors a planned run still has to fine-tune."""

    trainings: int
    """Detection stages not done and not counted by an earlier run of the plan."""
    iterations: int
    """Iterations of each."""
    key: tuple
    """:func:`detection_key` of the detector."""
    rate: DetectionRate | None
    """The measured seconds per iteration; None if nothing comparable was measured."""

    @property
    def seconds(self) -> float | None:
        if self.rate is None:
            return None if self.trainings else 0.0
        return self.trainings * self.iterations * self.rate.seconds_per_iteration


@dataclass(frozen=True)
class PlannedRun:
    row: TableRow
    dataset: str
    seed: int
    cfg: RunConfig
    status: str
    """``cached`` (pretrained and evaluated), ``pretrained`` (evaluation to run), ``to run``,
    ``shared`` (to run, on the pretraining of an earlier cell of the plan: a transfer table's
    columns share one), or :data:`RELEASED` (a row of released weights only)."""
    images: int | None
    """Images seen by pretraining: epochs x pretraining-split size; None if the split's size is unknown."""
    throughput: Throughput | None
    """The measured images/s the estimate uses; None if nothing comparable was measured."""
    detection: DetectionWork | None = None
    """A detection cell's fine-tuning still to do (None in other tables)."""

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


def ledger_figures(records: list[dict], device: str, stage: str, metric: str, key_of: Callable[[dict], tuple | None]) -> dict[tuple, list[float]]:
    """``metric`` of every finished ``stage`` record on ``device``, grouped by ``key_of`` the
    record (records whose key is None are left out)."""
    found: dict[tuple, list[float]] = {}
    for record in records:
        metrics = record.get("metrics", {})
        if record["stage"] != stage or metrics.get("device") != device or metrics.get(metric) is None:
            continue
        key = key_of(record)
        if key is not None:
            found.setdefault(key, []).append(metrics[metric])
    return found


Figure = TypeVar("Figure")


def bench_figures(store: RunStore, device: str, key_of: Callable[[dict], tuple | None], figure_of: Callable[[dict], Figure | None]) -> dict[tuple, Figure]:
    """The latest figure (``figure_of`` a record; None: it has none) of ``bench.jsonl``'s records
    on ``device``, by ``key_of`` the record."""
    found: dict[tuple, Figure] = {}
    for record in store.bench_records():
        key, figure = key_of(record), figure_of(record)
        if record.get("device") == device and key is not None and figure is not None:
            found[key] = figure
    return found


def _bench_throughput(record: dict) -> Throughput | None:
    """A ``bench`` record's figure of the full pipeline."""
    if "full" not in record:
        return None
    data = "its files" if record.get("data") == "real" else "random images in memory"
    return Throughput(record["full"]["images_per_s"], f"bench of {record.get('date', '?')} ({record.get('method')}, {data})")


def detection_key(detection: dict | None) -> tuple | None:
    """What a detector's seconds per iteration depend on, from its DetectionConfig as data: its
    architecture, task and batch; None when they are not there."""
    try:
        return (detection["arch"], detection["task"], detection["batch_size"])
    except (KeyError, TypeError):
        return None


def describe_detection(key: tuple) -> str:
    arch, task, batch = key
    return f"{arch} {task} detector, batch {batch}"


def ledger_detection_key(record: dict) -> tuple | None:
    """A detection stage's :func:`detection_key`, when it fine-tuned in one process: the estimate
    is of fine-tunings on one GPU (or CPU) of the device, as the GPU check times them."""
    if record["metrics"].get("processes") != 1:
        return None
    return detection_key((record.get("config") or {}).get("detection"))


def _bench_detection_key(record: dict) -> tuple | None:
    return detection_key(record.get("detection")) if record.get("stage") == "detection" else None


def _bench_detection_rate(record: dict) -> DetectionRate | None:
    """A GPU check's detection record's seconds per iteration."""
    if record.get("seconds_per_iteration") is None:
        return None
    return DetectionRate(record["seconds_per_iteration"], f"GPU check of {record.get('date', '?')}")


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
    records = list(store.ledger())
    ledger_rates = ledger_figures(records, device, "pretrain", "images_per_s", lambda record: throughput_key(record.get("config") or {}))
    bench_rates = bench_figures(store, device, lambda record: throughput_key(record.get("config") or {}), _bench_throughput)
    detection_rates = ledger_figures(records, device, "detection", "seconds_per_iteration", ledger_detection_key)
    detection_bench = bench_figures(store, device, _bench_detection_key, _bench_detection_rate)
    sizes: dict[tuple[str, str], int | None] = {}
    runs = []
    planned: set[str] = set()
    fine_tunings: set[str] = set()

    def work(cfg: RunConfig, todo: int) -> DetectionWork:
        key = detection_key(to_dict(cfg.detection))
        rates = detection_rates.get(key)
        rate = DetectionRate(statistics.median(rates), f"{len(rates)} finished detection stage{'s' if len(rates) > 1 else ''} in the ledger") if rates else detection_bench.get(key)
        return DetectionWork(todo, cfg.detection.resolved_schedule().iterations, key, rate)

    for row, dataset in table.cells():
        base = table.cell_config(row, dataset, overrides=overrides)
        spec = get_dataset(table.pretrain_dataset(dataset))
        for seed in range(seeds):
            cfg = replace(base, seed=seed)
            if row.released_only:
                evaluated = {trial for s, trial in released_results(table, row, dataset, cfg, records) if s == seed}
                runs.append(PlannedRun(row, dataset, seed, cfg, RELEASED, None, None, work(cfg, cfg.detection.trials - len(evaluated)) if table.detection else None))
                continue
            stage_config = pretrain_stage(cfg)[0]
            pretrain_key = config_key(stage_config)
            if not store.is_done("pretrain", pretrain_key):
                status = "shared" if pretrain_key in planned else "to run"
                planned.add(pretrain_key)
            elif all(store.is_done(*stage) for stage in cell_stages(table, cfg, pretrain_key, dataset)):
                status = "cached"
            else:
                status = "pretrained"
            detection = None
            if table.detection:
                encoders = [pretrain_key, *([config_key(random_init_stage(cfg)[0])] if cfg.random_init_baseline else [])]
                todo = {key for encoder in encoders for stage, key in cell_stages(table, cfg, encoder, dataset) if not store.is_done(stage, key)} - fine_tunings
                fine_tunings |= todo
                detection = work(cfg, len(todo))
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
            runs.append(PlannedRun(row, dataset, seed, cfg, status, images, throughput, detection))
    return runs


@dataclass(frozen=True)
class Presence:
    dataset: str
    present: bool
    detail: str
    """Where it was found, or the one-line advice of its loader on where to put it."""


def dataset_presence(table: PaperTable, data_root: Path) -> list[Presence]:
    """Whether each dataset the table reads (its pretraining datasets and its columns; a detection
    table's targets from the detection registry) is under ``data_root``: its folder exists (its
    files are checked when a run loads it), or it is built in. An absent one carries the line its
    loader gives without downloading (it fails at its first missing path, before reading any image)."""
    found = []
    for column in dict.fromkeys([*table.datasets, *table.columns]):
        if table.detection and column in table.targets:
            name, task = detection_column(column)
            spec = DETECTION_DATASETS[name]
            location, load = spec.location, lambda spec=spec, task=task: spec.require(spec.splits[-1], data_root, task)
        else:
            spec = get_dataset(column)
            if spec.builtin:
                found.append(Presence(column, True, "built in"))
                continue
            location, load = spec.location, lambda spec=spec: spec.load("test", data_root, False)
        if (data_root / location).exists():
            found.append(Presence(column, True, str(data_root / location)))
            continue
        try:
            load()
            found.append(Presence(column, True, str(data_root)))
        except DatasetMissingError as err:
            found.append(Presence(column, False, str(err)))
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
