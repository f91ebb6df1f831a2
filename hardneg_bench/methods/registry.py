"""The method registry: a name, a typed parameter dataclass and the Method class that uses it.

A parameter dataclass may also say when its settings switch the method's distinctive part off, so
that a run of it trains exactly another method (MoCHi inside its warm-up is MoCo-v2): a method
``equivalent_to(epochs) -> Equivalent | None`` on the dataclass, next to the parameters it reads.
:func:`runs_as` follows these rules to the method a run actually trains.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

from ..config import ConfigError


@dataclass(frozen=True)
class MethodEntry:
    name: str
    params: type
    cls: type
    description: str


@dataclass(frozen=True)
class Equivalent:
    """What a method's rule answers when its settings reduce its objective to another's."""

    method: str
    """The registered method whose objective the run computes."""
    params: Any
    """That method's parameters, as this run sets them (its own rule is checked next)."""
    why: str
    """Which settings switch what off, in a few words."""


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


def reduces_to(method: str, params: Any, why: str) -> Equivalent:
    """An :class:`Equivalent` to the registered ``method``, whose parameters take the values of
    ``params``'s fields of the same names (the run's temperature, queue, ...)."""
    cls = get_method(method).params
    return Equivalent(method, cls(**{f.name: getattr(params, f.name) for f in fields(cls)}), why)


def runs_as(method: str, params: Any, epochs: int) -> tuple[str, str] | None:
    """(the method a run of ``method`` with ``params`` over ``epochs`` epochs actually trains,
    why), or None when its distinctive part is in force. The rules chain: SSCL without synthetic
    negatives is HCL, whose beta 0 makes it DCL, whose tau+ 0 makes it SimCLR."""
    reasons = []
    while (rule := getattr(params, "equivalent_to", None)) is not None and (found := rule(epochs)) is not None:
        method, params = found.method, found.params
        reasons.append(found.why)
    return (method, "; ".join(reasons)) if reasons else None
