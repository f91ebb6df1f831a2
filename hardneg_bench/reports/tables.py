"""Paper tables: ``experiments/tables/<name>.yaml``, one file per table a paper (or README) prints.

Each row is a method with its config layer; each (row, dataset) cell is a full run config, made
by :func:`resolve_config` from the method's recipe for that dataset with the table's layers on
top (``common``, the table's ``datasets.<d>``, the row's ``config`` and its ``datasets.<d>``), and
points to the published record it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoints import FORMATS
from ..config import ConfigError, RunConfig, deep_merge, from_dict, load_yaml
from ..data.registry import get_dataset
from ..methods import get_method
from ..recipes import experiments_dir, resolve_config

METRICS = ("linear", "knn")


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
    """dataset -> id of the published record this cell is compared with."""
    released: dict = field(default_factory=dict)
    """dataset -> :class:`ReleasedWeights` of the published number, where the authors released them."""


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

    def cell_config(self, row: TableRow, dataset: str, seed: int = 0, overrides: list[str] = ()) -> RunConfig:
        """The full run config of ``row`` on ``dataset`` with ``seed``."""
        layer: dict = {}
        for part in (self.common, self.dataset_layers.get(dataset) or {}, row.config, row.datasets.get(dataset) or {}, {"seed": seed}):
            layer = deep_merge(layer, part)
        return resolve_config(row.method, dataset, flags=layer, overrides=overrides)

    def cells(self):
        """Every (row, dataset) pair the table has."""
        for row in self.rows:
            for dataset in self.datasets:
                yield row, dataset


def tables_dir() -> Path:
    return experiments_dir() / "tables"


def table_names() -> list[str]:
    return sorted(p.stem for p in tables_dir().glob("*.yaml"))


_TABLE_KEYS = {"title", "source", "metric", "datasets", "common", "rows", "notes"}
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
        stray = (set(row.published) | set(row.released)) - set(names)
        if stray:
            raise ConfigError(f"{where}: row {row.label!r} has a published number or released weights for {sorted(stray)[0]!r}, which is not one of its datasets")
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
    )


def check_table(table: PaperTable, published: dict) -> None:
    """Resolve every cell's config and check every published id exists (a ConfigError if not)."""
    for row, dataset in table.cells():
        try:
            table.cell_config(row, dataset)
        except ConfigError as err:
            raise ConfigError(f"table {table.name}: row {row.label!r} on {dataset}: {err}") from None
        weights = row.released.get(dataset)
        if weights is not None and weights.format not in FORMATS:
            raise ConfigError(f"table {table.name}: row {row.label!r} on {dataset}: unknown checkpoint format {weights.format!r} (known: {', '.join(FORMATS)})")
        record_id = row.published.get(dataset)
        if record_id is not None and record_id not in published:
            raise ConfigError(f"table {table.name}: row {row.label!r} on {dataset}: unknown published record {record_id!r}")
