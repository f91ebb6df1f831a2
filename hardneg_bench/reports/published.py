"""Published numbers with their provenance: the built-in ``published.yaml``, optionally merged
with a user's file (records replace built-in ones with the same ``id``, new ids are added).

A record's protocol states every evaluation setting its number depends on
(:mod:`hardneg_bench.protocols`), so that a report can tell whether our number is like-for-like.
A record whose value the sources could not verify has ``value: null`` and says in ``missing``
which paper and table to read it from; it is shown as "—" and never compared. ``published
--missing --template FILE`` writes those records as a file to fill in and pass with
``--published FILE``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from tabulate import tabulate

from ..config import ConfigError, FieldError, from_dict, load_yaml, require, to_dict
from . import protocols
from .protocols import SETTINGS, UNSTATED, same, stated, value_problem, value_text, with_unstated

PROTOCOL_KINDS = ("linear", "knn", "detection")
PROTOCOL_MODES = ("offline", "online", "unstated")
PROTOCOL_EPOCHS = ("last", "best", UNSTATED)
OUR_MODE = "offline"
"""Our evaluations run on the stored encoder after pretraining, never during it."""


@dataclass(frozen=True)
class Protocol:
    """How a number was measured: what a comparison must match. ``settings`` gives every
    evaluation setting of its kind that acts in it (:func:`~hardneg_bench.protocols.required_settings`)
    by hardneg-bench's config key, with ``unstated`` where the source does not say; a detection
    protocol states none (detection is compared by kind and mode only)."""

    kind: str
    mode: str
    settings: dict[str, Any] = field(default_factory=dict)
    details: str = ""

    def __post_init__(self) -> None:
        require(self.kind in PROTOCOL_KINDS, "kind", f"must be one of {', '.join(PROTOCOL_KINDS)}")
        require(self.mode in PROTOCOL_MODES, "mode", f"must be one of {', '.join(PROTOCOL_MODES)}")
        names = SETTINGS.get(self.kind, ())
        for name, value in self.settings.items():
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                require(False, "settings", f"names {name!r}, not a setting of a {self.kind} protocol" + (f" (did you mean {close[0]!r}?)" if close else ""))
            problem = value_problem(name, value)
            require(problem is None, f"settings.{name}", problem or "")

    def differences(self, ours: Protocol) -> list[str]:
        """What keeps this number from being like-for-like with ``ours`` (empty: comparable): the
        kind, the mode, and every setting of the kind that differs or that the source leaves
        unstated, each naming the field."""
        found = protocols.differences({"kind": self.kind, "mode": self.mode}, {"kind": ours.kind, "mode": ours.mode}, ("kind", "mode"))
        if self.kind == ours.kind:
            found += protocols.differences(self.settings, ours.settings, SETTINGS.get(self.kind, ()))
        return found


SHORT_FORM: dict[str, dict[str, str]] = {
    "epoch": {"linear": "probe.report_epoch", "knn": "knn.report_epoch"},
    "k": {"knn": "knn.k"},
    "temperature": {"knn": "knn.temperature"},
}
"""The protocol fields records had before ``settings`` (``--published`` files still use them), and
the setting each is for a protocol of each kind. A detection protocol's ``epoch`` is accepted and
not kept: detection is compared by kind and mode only."""


@dataclass(frozen=True)
class ShortForm:
    """A record's short-form protocol fields, typed and checked."""

    epoch: str = UNSTATED
    k: int | None = None
    temperature: float | None = None

    def __post_init__(self) -> None:
        require(self.epoch in PROTOCOL_EPOCHS, "epoch", f"must be one of {', '.join(PROTOCOL_EPOCHS)}")

    def given(self) -> dict[str, Any]:
        """The fields that say something, by name."""
        return {name: value for name, value in (("epoch", self.epoch), ("k", self.k), ("temperature", self.temperature)) if value not in (None, UNSTATED)}


def _folded(protocol: Any, path: str) -> Any:
    """A record's raw ``protocol`` mapping with its short-form fields moved into ``settings``; a
    ConfigError where one contradicts ``settings`` or has no setting in a protocol of its kind."""
    if not isinstance(protocol, Mapping):
        return protocol  # from_dict says what is wrong
    rest = {key: value for key, value in protocol.items() if key not in SHORT_FORM}
    short = from_dict(ShortForm, {key: protocol[key] for key in SHORT_FORM if key in protocol}, path)
    kind, settings = rest.get("kind"), rest.get("settings") or {}
    if kind not in PROTOCOL_KINDS or not isinstance(settings, Mapping):
        return rest  # from_dict says what is wrong
    settings = dict(settings)
    for key, value in short.given().items():
        name = SHORT_FORM[key].get(kind)
        if name is None:
            if kind == "detection" and key == "epoch":
                continue
            raise ConfigError(f"config key '{path}.{key}' applies to {' and '.join(SHORT_FORM[key])} protocols only, not {kind}")
        if stated(settings, name) and not same(settings[name], value):
            raise ConfigError(f"config key '{path}.{key}' is {value_text(value)} but settings.{name} is {value_text(settings[name])}: they contradict each other")
        settings[name] = value
    return {**rest, "settings": settings}


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
            if isinstance(raw, dict) and "protocol" in raw:
                raw = {**raw, "protocol": _folded(raw["protocol"], f"records[{label}].protocol")}
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
    return Path(str(resources.files("hardneg_bench.reports") / "published.yaml"))


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
    """Kind and mode, then every setting the protocol states, then the ones it leaves unstated."""
    given = [f"{name}={value_text(value)}" for name, value in p.settings.items() if stated(p.settings, name)]
    unknown = [name for name in p.settings if not stated(p.settings, name)]
    return "; ".join([f"{p.kind}, {p.mode}", *([", ".join(given)] if given else []), *([f"not stated: {', '.join(unknown)}"] if unknown else [])])


def _value_text(r: PublishedRecord) -> str:
    if r.value is None:
        return "—"
    return f"{r.value:.2f}" + (f" ± {r.std:g}" if r.std is not None else "") + (f" (n={r.n})" if r.n is not None else "")


def records_frame(records: list[PublishedRecord]) -> pd.DataFrame:
    """One row per record, every field a column (the protocol's too)."""
    rows = []
    for r in records:
        row = {name: getattr(r, name) for name in ("id", "value", "std", "n", "paper", "table", "row", "method", "dataset", "backbone", "epochs", "batch_size", "image_size", "metric")}
        row.update(protocol_kind=r.protocol.kind, protocol_mode=r.protocol.mode, protocol_settings=json.dumps(r.protocol.settings), protocol_details=r.protocol.details)
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
# Each record's protocol lists every setting its number depends on; replace an `unstated` with the
# value the paper gives, so that a report can tell whether our evaluation is like-for-like.
# Each record here replaces the built-in record with its id.
"""


class _OneALine(dict):
    """A mapping the template writes one key a line (a protocol's settings: each filled in alone)."""


class _TemplateDumper(yaml.SafeDumper):
    """YAML's safe dumper, writing :class:`_OneALine` mappings in block style."""


_TemplateDumper.add_representer(_OneALine, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=False))


def template_text(records: list[PublishedRecord], path: Path) -> str:
    """The missing ``records`` as a YAML file that :func:`load_published` reads back, with the
    fields to fill in first, and every setting their protocol needs listed (``unstated`` where the
    record does not give it) for the reader of the paper to fill in."""
    first = ("id", "value", "std", "n", "missing", "source")
    entries = []
    for r in records:
        data = to_dict(r)
        data["protocol"]["settings"] = _OneALine(with_unstated(r.protocol.kind, r.protocol.settings))
        entries.append({**{k: data[k] for k in first}, **{k: v for k, v in data.items() if k not in first}})
    body = yaml.dump({"records": entries}, Dumper=_TemplateDumper, sort_keys=False, default_flow_style=None, allow_unicode=True, width=float("inf"))
    return TEMPLATE_HEADER.format(count=len(records), path=path) + body
