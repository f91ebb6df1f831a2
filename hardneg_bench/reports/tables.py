"""Paper tables: ``experiments/tables/<name>.yaml``, one file per table a paper (or README) prints.

Each row is a method with its config layer; each (row, column) cell is a full run config, made
by :func:`resolve_config` from the method's recipe for the pretraining dataset with the table's
layers on top (``common``, the table's ``datasets.<d>``, its ``targets.<t>``, the row's ``config``
and its ``datasets.<column>``), and points to the published record it is compared with.

A table's columns are its ``datasets`` (each pretrained on and evaluated on itself), or, for a
transfer table, its ``targets``: every column pretrained on the table's one dataset and evaluated
on the target with the table's ``metric`` (``linear``, ``knn`` or ``fewshot``, an evaluation of
hardneg_bench/evaluations/), which the cell's ``transfer`` setting names.

A ``detection`` table's targets are detection datasets (hardneg_bench/detection/datasets.py), each
``DATASET`` (boxes) or ``DATASET:TASK`` (``coco2017:masks``, ``coco2017:keypoints``): every column is
a detector fine-tuned from the encoder ``detection.trials`` times, and shows the measures of its
task (:data:`DETECTION_MEASURES`), each beside its own published record:
``published: {voc0712: {AP50: ID, AP: ID, AP75: ID}}``.

A row with ``released_only: true`` is the authors' released weights alone (a supervised ImageNet
model): nothing of it is pretrained here, ``reproduce --checkpoints DIR`` evaluates its files, and
its ``method`` only gives the evaluation settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoints import FORMATS
from ..config import ConfigError, RunConfig, deep_merge, from_dict, load_yaml
from ..data.registry import get_dataset
from ..detection.datasets import DETECTION_DATASETS
from ..evaluations.registry import EVALUATIONS
from ..methods import get_method
from ..recipes import experiments_dir, resolve_config

DETECTION = "detection"
TEST_ACCURACY = "test_accuracy"
"""The one measure of a classification cell: the metric record's test accuracy."""

_BOX = ("AP", "AP50", "AP75")
DETECTION_MEASURES: dict[str, dict[str, tuple[str, ...]]] = {
    "voc0712": {"boxes": ("AP50", "AP", "AP75")},  # facebookresearch/moco@132aea9 detection/README.md's column order
    "coco2017": {
        "boxes": _BOX,
        "masks": (*_BOX, "mask_AP", "mask_AP50", "mask_AP75"),  # a Mask R-CNN's boxes and masks (MoCo's COCO columns AP^bb, AP^mk)
        "keypoints": ("keypoint_AP", "keypoint_AP50", "keypoint_AP75"),
    },
}
"""The measures a detection column shows, by target dataset and task: keys of a detection record's
metrics (in %), in the order the column shows them."""
DEFAULT_TASK = "boxes"


def detection_column(column: str) -> tuple[str, str]:
    """A detection column's dataset and task (``coco2017:masks``; boxes when it names none)."""
    dataset, _, task = column.partition(":")
    return dataset, task or DEFAULT_TASK


def column_measures(metric: str, column: str) -> tuple[str, ...]:
    """What a cell of ``column`` in a table of ``metric`` shows, each a key of its evaluation
    record's metrics."""
    if metric != DETECTION:
        return (TEST_ACCURACY,)
    dataset, task = detection_column(column)
    return DETECTION_MEASURES[dataset][task]


@dataclass(frozen=True)
class ReleasedWeights:
    """The authors' released weights of a cell: evaluated with ``reproduce --checkpoints DIR``."""

    file: str
    """The file name the official README gives it (where it gives none, the name to save it as)."""
    url: str
    """Where it is published."""
    format: str
    """Its checkpoint format (hardneg_bench/checkpoints)."""


@dataclass(frozen=True)
class TableRow:
    label: str
    method: str
    config: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)
    """column -> id of the published record this cell is compared with; in a detection table,
    column -> {measure -> id}."""
    released: dict = field(default_factory=dict)
    """column -> :class:`ReleasedWeights` of the published number, where the authors released them."""
    released_only: bool = False
    """The row is its released weights only: nothing is pretrained for it."""

    def record_id(self, column: str, measure: str) -> str | None:
        """The id of the published record of ``column``'s ``measure``, if the row gives one."""
        entry = self.published.get(column)
        return entry.get(measure) if isinstance(entry, dict) else entry

    def record_ids(self) -> list[str]:
        """Every published id the row names."""
        return [i for entry in self.published.values() for i in (entry.values() if isinstance(entry, dict) else [entry])]


@dataclass(frozen=True)
class PaperTable:
    name: str
    title: str
    source: str
    metric: str
    datasets: tuple[str, ...]
    rows: tuple[TableRow, ...]
    common: dict = field(default_factory=dict)
    dataset_layers: dict = field(default_factory=dict)
    notes: str = ""
    targets: tuple[str, ...] = ()
    """A transfer table's columns: datasets the encoder pretrained on ``datasets[0]`` is evaluated on."""
    target_layers: dict = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.targets or self.datasets

    @property
    def detection(self) -> bool:
        return self.metric == DETECTION

    def evaluated_on(self, column: str) -> str:
        """The dataset name ``column``'s evaluation stages are keyed with."""
        return detection_column(column)[0] if self.detection else column

    def measures(self, column: str) -> tuple[str, ...]:
        return column_measures(self.metric, column)

    def pretrain_dataset(self, column: str) -> str:
        """The dataset the encoder of ``column``'s cells is pretrained on."""
        return self.datasets[0] if self.targets else column

    def transfer(self, column: str) -> bool:
        """Whether ``column``'s cells evaluate on another dataset than they pretrain on."""
        return column != self.pretrain_dataset(column)

    def cell_config(self, row: TableRow, column: str, seed: int = 0, overrides: list[str] = ()) -> RunConfig:
        """The full run config of ``row`` in ``column`` with ``seed`` (a transfer table's cell
        names its target, with the table's metric, as the run's one transfer target; a detection
        column fixes the detector's task, over every layer)."""
        dataset = self.pretrain_dataset(column)
        target = {"transfer": [f"{self.evaluated_on(column)}:{self.metric}"]} if self.targets else {}
        task = {"detection": {"task": detection_column(column)[1]}} if self.detection else {}
        layer: dict = {}
        for part in (self.common, self.dataset_layers.get(dataset) or {}, self.target_layers.get(column) or {}, target, row.config, row.datasets.get(column) or {}, task, {"seed": seed}):
            layer = deep_merge(layer, part)
        return resolve_config(row.method, dataset, flags=layer, overrides=overrides)

    def cells(self):
        """Every (row, column) pair the table has."""
        for row in self.rows:
            for column in self.columns:
                yield row, column


def tables_dir() -> Path:
    return experiments_dir() / "tables"


def table_names() -> list[str]:
    return sorted(p.stem for p in tables_dir().glob("*.yaml"))


_TABLE_KEYS = {"title", "source", "metric", "datasets", "targets", "common", "rows", "notes"}
_ROW_KEYS = {"label", "method", "config", "datasets", "published", "released", "released_only"}


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _detection_column(column: Any, where: str) -> str:
    """A detection table's target ``DATASET`` or ``DATASET:TASK``, checked."""
    dataset, task = detection_column(str(column))
    if dataset not in DETECTION_DATASETS:
        raise ConfigError(f"{where}: target {column!r} is not a detection dataset (known: {', '.join(DETECTION_DATASETS)}; a detection table's targets are DATASET or DATASET:TASK)")
    tasks = DETECTION_DATASETS[dataset].tasks
    if task not in tasks or task not in DETECTION_MEASURES.get(dataset, {}):
        raise ConfigError(f"{where}: target {column!r}: {dataset} has no task {task!r} (tasks: {', '.join(tasks)})")
    return str(column)


def _published(entry: Any, measures: tuple[str, ...] | None, where: str) -> Any:
    """A row's published entry for one column: a record id, or for a detection column a mapping
    of some of its ``measures`` to record ids."""
    if measures is None:
        if not isinstance(entry, str):
            raise ConfigError(f"{where} must be a published record id, got {entry!r}")
        return entry
    if not isinstance(entry, dict) or not all(isinstance(i, str) for i in entry.values()):
        raise ConfigError(f"{where} must map measures ({', '.join(measures)}) to published record ids, got {entry!r}")
    stray = [m for m in entry if m not in measures]
    if stray:
        raise ConfigError(f"{where}: {stray[0]!r} is not a measure of this column (its measures: {', '.join(measures)})")
    return entry


def load_table(name: str) -> PaperTable:
    """The table ``name``; a ConfigError names the first problem in its file."""
    path = tables_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown experiment table {name!r} (known: {', '.join(table_names())})")
    raw = load_yaml(path)
    where = f"table {name}"
    unknown = set(raw) - _TABLE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected {', '.join(sorted(_TABLE_KEYS))})")
    metric = raw.get("metric", "linear")
    if metric not in EVALUATIONS:
        raise ConfigError(f"{where}: metric must be one of {', '.join(EVALUATIONS)}, got {metric!r}")
    datasets = raw.get("datasets")
    if isinstance(datasets, dict):  # datasets: {name: layer}
        dataset_layers, names = datasets, tuple(datasets)
    elif isinstance(datasets, list) and datasets:
        dataset_layers, names = {}, tuple(datasets)
    else:
        raise ConfigError(f"{where}: datasets must be a non-empty list or mapping")
    names = tuple(get_dataset(d).name for d in names)
    targets = raw.get("targets")
    target_layers = _mapping(targets, f"{where}: targets") if isinstance(targets, dict) else {}
    if metric == DETECTION:
        target_names = tuple(_detection_column(d, where) for d in (targets or ()))
        if not target_names:
            raise ConfigError(f"{where}: a detection table needs targets (detection datasets, DATASET or DATASET:TASK)")
    else:
        target_names = tuple(get_dataset(d).name for d in (targets or ()))
    if targets is not None and not target_names:
        raise ConfigError(f"{where}: targets must be a non-empty list or mapping")
    if target_names and len(names) != 1:
        raise ConfigError(f"{where}: a table with targets pretrains on one dataset; datasets names {len(names)}")
    columns = target_names or names
    rows = []
    for i, item in enumerate(raw.get("rows") or []):
        if not isinstance(item, dict) or "label" not in item or "method" not in item:
            raise ConfigError(f"{where}: row {i + 1} needs a label and a method")
        unknown = set(item) - _ROW_KEYS
        if unknown:
            raise ConfigError(f"{where}: row {item['label']!r}: unknown key {sorted(unknown)[0]!r} (expected {', '.join(sorted(_ROW_KEYS))})")
        at = f"{where}: row {item['label']!r}"
        published = _mapping(item.get("published"), f"{at} published")
        stray = (set(published) | set(_mapping(item.get("released"), f"{at} released"))) - set(columns)
        if stray:
            raise ConfigError(f"{at} has a published number or released weights for {sorted(stray)[0]!r}, which is not one of its {'targets' if target_names else 'datasets'}")
        measures = {c: column_measures(metric, c) if metric == DETECTION else None for c in columns}
        released_only = item.get("released_only", False)
        if not isinstance(released_only, bool):
            raise ConfigError(f"{at} released_only must be true or false, got {released_only!r}")
        row = TableRow(
            label=str(item["label"]),
            method=get_method(item["method"]).name,
            config=_mapping(item.get("config"), f"{at} config"),
            datasets=_mapping(item.get("datasets"), f"{at} datasets"),
            published={c: _published(entry, measures[c], f"{at} published.{c}") for c, entry in published.items()},
            released={d: from_dict(ReleasedWeights, w, f"{at} released.{d}") for d, w in _mapping(item.get("released"), f"{at} released").items()},
            released_only=released_only,
        )
        if released_only and not row.released:
            raise ConfigError(f"{at} is released_only but lists no released weights")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{where}: no rows")
    return PaperTable(
        name=name,
        title=str(raw.get("title", name)),
        source=str(raw.get("source", "")),
        metric=metric,
        datasets=names,
        rows=tuple(rows),
        common=_mapping(raw.get("common"), f"{where}: common"),
        dataset_layers={d: _mapping(layer, f"{where}: datasets.{d}") for d, layer in dataset_layers.items()},
        notes=str(raw.get("notes", "")).strip(),
        targets=target_names,
        target_layers={d: _mapping(layer, f"{where}: targets.{d}") for d, layer in target_layers.items()},
    )


def check_table(table: PaperTable, published: dict) -> None:
    """Resolve every cell's config and check every published id exists, and for a detection
    measure that its record gives that measure (a ConfigError if not)."""
    for row, column in table.cells():
        at = f"table {table.name}: row {row.label!r} on {column}"
        try:
            cfg = table.cell_config(row, column)
        except ConfigError as err:
            raise ConfigError(f"{at}: {err}") from None
        stages = EVALUATIONS[table.metric].stages(cfg, "", table.evaluated_on(column), table.transfer(column))
        if len(stages) != 1 and not table.detection:  # a detection cell is the mean of its trials, one stage each
            raise ConfigError(f"{at}: a cell is one number, but its {table.metric} evaluation has {len(stages)} stages (for fewshot, set one fewshot.shots and one fewshot.heads)")
        weights = row.released.get(column)
        if weights is not None and weights.format not in FORMATS:
            raise ConfigError(f"{at}: unknown checkpoint format {weights.format!r} (known: {', '.join(FORMATS)})")
        for measure in table.measures(column):
            record_id = row.record_id(column, measure)
            if record_id is not None and record_id not in published:
                raise ConfigError(f"{at}: unknown published record {record_id!r}")
            if record_id is not None and table.detection and published[record_id].metric != measure:
                raise ConfigError(f"{at}: published record {record_id!r} gives {published[record_id].metric}, not {measure}")
