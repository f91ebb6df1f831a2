"""Published numbers with their provenance: the built-in ``published.yaml``, optionally merged
with a user's file (records replace built-in ones with the same ``id``, new ids are added).

A record whose value the sources could not verify has ``value: null`` and says why in
``missing``; it is shown as "—" and never compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .config import ConfigError, FieldError, from_dict, load_yaml, require

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
