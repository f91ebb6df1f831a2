"""Paper tables: ``experiments/tables/<name>.yaml``, one file per table a paper (or README) prints.

Each row is a method with its config layer; each (row, column) cell is a full run config, made
by :func:`resolve_config` from the method's recipe for the pretraining dataset with the table's
layers on top (``common``, the table's ``datasets.<d>``, its ``targets.<t>``, the row's ``config``
and its ``datasets.<column>``), and points to the published record it is compared with.

A table's columns are its ``datasets`` (each pretrained on and evaluated on itself), or, for a
transfer table, its ``targets``: every column pretrained on the table's one dataset and evaluated
on the target with the table's ``metric`` (``linear``, ``knn`` or ``fewshot``, an evaluation of
hardneg_bench/evaluations/), which the cell's ``transfer`` setting names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoints import FORMATS
from ..config import ConfigError, RunConfig, deep_merge, from_dict, load_yaml
from ..data.registry import get_dataset
from ..evaluations.registry import EVALUATIONS
from ..methods import get_method
from ..recipes import experiments_dir, resolve_config

METRICS = tuple(EVALUATIONS)


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
    """column -> id of the published record this cell is compared with."""
    released: dict = field(default_factory=dict)
    """column -> :class:`ReleasedWeights` of the published number, where the authors released them."""


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

    def pretrain_dataset(self, column: str) -> str:
        """The dataset the encoder of ``column``'s cells is pretrained on."""
        return self.datasets[0] if self.targets else column

    def transfer(self, column: str) -> bool:
        """Whether ``column``'s cells evaluate on another dataset than they pretrain on."""
        return column != self.pretrain_dataset(column)

    def cell_config(self, row: TableRow, column: str, seed: int = 0, overrides: list[str] = ()) -> RunConfig:
        """The full run config of ``row`` in ``column`` with ``seed`` (a transfer table's cell
        names its target, with the table's metric, as the run's one transfer target)."""
        dataset = self.pretrain_dataset(column)
        target = {"transfer": [f"{column}:{self.metric}"]} if self.targets else {}
        layer: dict = {}
        for part in (self.common, self.dataset_layers.get(dataset) or {}, self.target_layers.get(column) or {}, target, row.config, row.datasets.get(column) or {}, {"seed": seed}):
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
_ROW_KEYS = {"label", "method", "config", "datasets", "published", "released"}


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


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
    if metric not in METRICS:
        raise ConfigError(f"{where}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
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
        row = TableRow(
            label=str(item["label"]),
            method=get_method(item["method"]).name,
            config=_mapping(item.get("config"), f"{where}: row {item['label']!r} config"),
            datasets=_mapping(item.get("datasets"), f"{where}: row {item['label']!r} datasets"),
            published=_mapping(item.get("published"), f"{where}: row {item['label']!r} published"),
            released={d: from_dict(ReleasedWeights, w, f"{where}: row {item['label']!r} released.{d}") for d, w in _mapping(item.get("released"), f"{where}: row {item['label']!r} released").items()},
        )
        stray = (set(row.published) | set(row.released)) - set(columns)
        if stray:
            raise ConfigError(f"{where}: row {row.label!r} has a published number or released weights for {sorted(stray)[0]!r}, which is not one of its {'targets' if target_names else 'datasets'}")
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
    """Resolve every cell's config and check every published id exists (a ConfigError if not)."""
    for row, dataset in table.cells():
        try:
            cfg = table.cell_config(row, dataset)
        except ConfigError as err:
            raise ConfigError(f"table {table.name}: row {row.label!r} on {dataset}: {err}") from None
        stages = EVALUATIONS[table.metric].stages(cfg, "", dataset, table.transfer(dataset))
        if len(stages) != 1:
            raise ConfigError(f"table {table.name}: row {row.label!r} on {dataset}: a cell is one number, but its {table.metric} evaluation has {len(stages)} stages (for fewshot, set one fewshot.shots and one fewshot.heads)")
        weights = row.released.get(dataset)
        if weights is not None and weights.format not in FORMATS:
            raise ConfigError(f"table {table.name}: row {row.label!r} on {dataset}: unknown checkpoint format {weights.format!r} (known: {', '.join(FORMATS)})")
        record_id = row.published.get(dataset)
        if record_id is not None and record_id not in published:
            raise ConfigError(f"table {table.name}: row {row.label!r} on {dataset}: unknown published record {record_id!r}")
