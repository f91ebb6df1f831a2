"""The method registry: a name, a typed parameter dataclass and the Method class that uses it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import ConfigError


@dataclass(frozen=True)
class MethodEntry:
    name: str
    params: type
    cls: type
    description: str


METHODS: dict[str, MethodEntry] = {}


def register(name: str, params: type, description: str) -> Callable[[type], type]:
    """Class decorator adding a Method subclass to the registry under ``name``."""

    def add(cls: type) -> type:
        METHODS[name] = MethodEntry(name, params, cls, description)
        return cls

    return add


def get_method(name: str) -> MethodEntry:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]
