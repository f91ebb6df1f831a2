"""Published numbers with their provenance: the built-in ``published.yaml``, optionally merged
with a user's file (records replace built-in ones with the same ``id``, new ids are added).

A record whose value the sources could not verify has ``value: null`` and says in ``missing``
which paper and table to read it from; it is shown as "—" and never compared. ``published
--missing --template FILE`` writes those records as a file to fill in and pass with
``--published FILE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from tabulate import tabulate

from .config import ConfigError, FieldError, from_dict, load_yaml, require, to_dict

PROTOCOL_KINDS = ("linear", "knn", "detection")
PROTOCOL_MODES = ("offline", "online", "unstated")
PROTOCOL_EPOCHS = ("last", "best", "unstated")


@dataclass(frozen=True)
class Protocol:
    """How a number was measured: what a comparison must match."""

    kind: str
    mode: str
    epoch: str
    k: int | None = None
    temperature: float | None = None
    details: str = ""

    def __post_init__(self) -> None:
        require(self.kind in PROTOCOL_KINDS, "kind", f"must be one of {', '.join(PROTOCOL_KINDS)}")
        require(self.mode in PROTOCOL_MODES, "mode", f"must be one of {', '.join(PROTOCOL_MODES)}")
        require(self.epoch in PROTOCOL_EPOCHS, "epoch", f"must be one of {', '.join(PROTOCOL_EPOCHS)}")

    def differences(self, ours: Protocol) -> list[str]:
        """What keeps this number from being like-for-like with ``ours`` (empty: comparable)."""
        found = []
        if self.kind != ours.kind:
            found.append(f"{self.kind} vs our {ours.kind}")
        for name in ("mode", "epoch"):
            theirs, mine = getattr(self, name), getattr(ours, name)
            if theirs != mine:
                found.append(f"{name} {theirs} vs our {mine}")
        if self.kind == ours.kind == "knn" and (self.k, self.temperature) != (ours.k, ours.temperature):
            found.append(f"kNN k={self.k} t={self.temperature} vs our k={ours.k} t={ours.temperature}")
        return found


@dataclass(frozen=True)
class PublishedRecord:
    id: str
    paper: str
    table: str
    row: str
    method: str
    dataset: str
    backbone: str
    metric: str
    protocol: Protocol
    value: float | None
    source: str
    epochs: int | None = None
    batch_size: int | None = None
    image_size: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    std: float | None = None
    n: int | None = None
    missing: str | None = None

    def __post_init__(self) -> None:
        require(bool(self.id.strip()), "id", "must not be empty")
        require(bool(self.source.strip()), "source", "must name where the number was published")
        if self.value is None:
            require(bool(self.missing), "missing", "must say why the value is missing when value is null")
        else:
            require(0 <= self.value <= 100, "value", "must be a percentage in [0, 100]")
            require(self.missing is None, "missing", "must be absent when a value is given")
        require(self.std is None or self.std >= 0, "std", "must be >= 0")
        require(self.n is None or self.n >= 1, "n", "must be >= 1")


def _records(data: Any, origin: str) -> list[PublishedRecord]:
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise ConfigError(f"{origin}: expected a mapping with a 'records' list")
    records = []
    for i, raw in enumerate(data["records"]):
        label = raw.get("id", f"#{i + 1}") if isinstance(raw, dict) else f"#{i + 1}"
        try:
            records.append(from_dict(PublishedRecord, raw, f"records[{label}]"))
        except (ConfigError, FieldError) as err:
            raise ConfigError(f"{origin}: {err}") from None
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise ConfigError(f"{origin}: record id {record.id!r} appears twice")
        seen.add(record.id)
    return records


def builtin_path() -> Path:
    return Path(str(resources.files("hardneg_bench") / "published.yaml"))


def load_published(user_file: Path | None = None) -> dict[str, PublishedRecord]:
    """Every published record by id: the built-in ones, then ``user_file``'s over them."""
    records = {r.id: r for r in _records(load_yaml(builtin_path()), "built-in published.yaml")}
    if user_file is not None:
        records.update({r.id: r for r in _records(load_yaml(user_file), str(user_file))})
    return records


# --------------------------------------------------------------------------------------------
# Showing the records (``hardneg-bench published``) and the template for the missing ones

FORMATS = ("table", "markdown", "csv", "json")


def _protocol_text(p: Protocol) -> str:
    knn = f", k={p.k}" + (f" t={p.temperature}" if p.temperature is not None else "") if p.kind == "knn" and p.k is not None else ""
    return f"{p.kind}, {p.mode}, {p.epoch} epoch{knn}"


def _value_text(r: PublishedRecord) -> str:
    if r.value is None:
        return "—"
    return f"{r.value:.2f}" + (f" ± {r.std:g}" if r.std is not None else "") + (f" (n={r.n})" if r.n is not None else "")


def records_frame(records: list[PublishedRecord]) -> pd.DataFrame:
    """One row per record, every field a column (the protocol's too)."""
    rows = []
    for r in records:
        row = {name: getattr(r, name) for name in ("id", "value", "std", "n", "paper", "table", "row", "method", "dataset", "backbone", "epochs", "batch_size", "image_size", "metric")}
        row.update({f"protocol_{name}": getattr(r.protocol, name) for name in ("kind", "mode", "epoch", "k", "temperature", "details")})
        row.update(hyperparameters=json.dumps(r.hyperparameters), source=r.source, missing=r.missing)
        rows.append(row)
    return pd.DataFrame(rows)


def _shared(records: list[PublishedRecord], field_text) -> str | None:
    texts = {field_text(r) for r in records}
    return texts.pop() if len(texts) == 1 else None


def published_table(records: list[PublishedRecord]) -> Group:
    """The records for a terminal: one block per paper table, the fields its records share said
    once above it, and ids never cut (they are what a ``--published`` file names)."""
    groups: dict[tuple[str, str], list[PublishedRecord]] = {}
    for r in records:
        groups.setdefault((r.paper, r.table), []).append(r)
    fields = {
        "backbone": lambda r: r.backbone,
        "epochs": lambda r: str(r.epochs) if r.epochs else "not stated",
        "metric": lambda r: r.metric,
        "protocol": lambda r: _protocol_text(r.protocol),
        "source": lambda r: r.source,
        "missing": lambda r: r.missing or "",
    }
    blocks = []
    for (paper, table_name), members in groups.items():
        shared = {name: _shared(members, text) for name, text in fields.items()}
        heading = [Text(f"{paper} — {table_name}", style="bold")]
        heading += [Text(f"{name}: {text}") for name, text in shared.items() if text]
        table = Table("id", "value", "row", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.columns[0].min_width, table.columns[0].no_wrap = max(len(r.id) for r in members), True
        table.columns[1].no_wrap = True
        for r in members:
            what = f"{r.row}: {r.method} on {r.dataset}"
            what += "".join(f"; {name}: {text(r)}" for name, text in fields.items() if shared[name] is None and text(r))
            table.add_row(Text(r.id), Text(_value_text(r)), Text(what))  # plain text: no markup in a record
        blocks.append(Group(*heading, table, Text("")))
    return Group(*blocks)


def render_published(records: list[PublishedRecord], fmt: str):
    """``records`` in ``fmt``: a rich renderable for ``table``, else a string."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "table":
        return published_table(records)
    if fmt == "json":
        return json.dumps([to_dict(r) for r in records], indent=1)
    frame = records_frame(records)
    if fmt == "csv":
        return frame.to_csv(index=False)
    return tabulate(frame.astype(object).where(frame.notna(), "—"), headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


TEMPLATE_HEADER = """\
# Published numbers hardneg-bench has not verified: {count} records, to fill in from the papers.
# Each record's `missing` line names the paper and the table to read. For each number you read:
#   1. set `value` to the number as printed (a percentage), and `std` and `n` if the paper gives them;
#   2. delete the record's `missing` line;
#   3. say in `source` where you read it (paper, table, page).
# Records you leave as they are stay missing. Then pass this file to report, reproduce or published:
#   hardneg-bench report --published {path}
# Each record here replaces the built-in record with its id.
"""


def template_text(records: list[PublishedRecord], path: Path) -> str:
    """The missing ``records`` as a YAML file that :func:`load_published` reads back, with the
    fields to fill in first."""
    first = ("id", "value", "std", "n", "missing", "source")
    entries = []
    for r in records:
        data = to_dict(r)
        entries.append({**{k: data[k] for k in first}, **{k: v for k, v in data.items() if k not in first}})
    body = yaml.safe_dump({"records": entries}, sort_keys=False, default_flow_style=None, allow_unicode=True, width=float("inf"))
    return TEMPLATE_HEADER.format(count=len(records), path=path) + body
