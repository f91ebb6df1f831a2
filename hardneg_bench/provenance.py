"""What sets a finished run apart from its recipe.

A stage's config in the store holds every setting its result depends on. Comparing it with the
config that today's recipe gives for the same method and dataset (what ``run --method M
--dataset D`` runs with no option) names the keys the run changed, as experiment trackers show a
run's differing parameters: ``list runs``, the report's rows and ``hardneg-bench config --key``
print them. Which option changed a key (``--config``, a flag, ``--set`` or a paper table's row) is
not stored with the run, only its value; ``hardneg-bench config`` shows the layers before a run.

The random-init baseline has no recipe of its own: its reference is the plain RGB encoder of its
backbone for the dataset (the stem ``auto`` builds, width 1, the dataset's image size), so CMC's
Lab-split baseline shows ``encoder.lab_split=true``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from typing import Any, Iterable

from .config import ConfigError, flatten, to_dict
from .data.registry import get_dataset
from .models.backbones import backbone_stem
from .models.encoder import EncoderSpec
from .evaluations.knn import knn_stage
from .evaluations.linear import probe_stage
from .pipeline import RANDOM_INIT, pretrain_stage
from .recipes import Resolved, resolve

ABSENT = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
"""A key one config has and the other has not (a record from an older version, a newer key)."""

IDENTITY = {"method", "dataset", "seed", "parent"}
"""Keys that say which run a stage belongs to rather than how it was run (shown in their own
columns)."""


@lru_cache(maxsize=None)
def recipe(method: str, dataset: str) -> Resolved | None:
    """The recipe's config of ``method`` on ``dataset``; None when either is no longer known."""
    try:
        return resolve(method, dataset)
    except ConfigError:
        return None


def recipe_stage_config(stage: str, record: dict) -> dict | None:
    """The config the recipe gives the stage of ``record`` (a ledger record or ``result.json``), to
    compare with the record's ``config``; None when there is nothing to compare with."""
    config, method, dataset = record.get("config") or {}, record.get("method"), record.get("dataset")
    if stage == "pretrain" and method == RANDOM_INIT:
        try:
            spec = get_dataset(dataset)
            backbone = config["encoder"]["backbone"]
        except (ConfigError, KeyError, TypeError):
            return None
        stem = backbone_stem(backbone, "auto", spec.image_size)
        plain = EncoderSpec(backbone=backbone, stem=stem, image_size=spec.image_size, input_mean=tuple(spec.mean), input_std=tuple(spec.std))
        return {"method": RANDOM_INIT, "dataset": dataset, "seed": config.get("seed"), "encoder": plain.to_dict()}
    resolved = recipe(method, dataset) if method and dataset else None
    if resolved is None:
        return None
    cfg = replace(resolved.cfg, seed=config.get("seed", 0))
    if stage == "pretrain":
        return pretrain_stage(cfg)[0]
    eval_dataset = config.get("dataset", dataset)
    if stage in ("probe", "transfer"):
        return probe_stage(cfg, config.get("parent"), eval_dataset)
    if stage == "knn":
        return knn_stage(cfg, config.get("parent"), eval_dataset)
    return None


def differences(stage: str, record: dict) -> dict[str, tuple[Any, Any]] | None:
    """``key -> (this run's value, the recipe's value)`` for every key in which the stage's config
    differs from its recipe's (identity keys left out); None when there is no recipe to compare
    with (a method or dataset no longer known)."""
    reference = recipe_stage_config(stage, record)
    if reference is None:
        return None
    ours, theirs = (flatten(as_json(c)) for c in (record.get("config") or {}, reference))
    return {
        key: (ours.get(key, ABSENT), theirs.get(key, ABSENT))
        for key in [*ours, *(k for k in theirs if k not in ours)]
        if key not in IDENTITY and ours.get(key, ABSENT) != theirs.get(key, ABSENT)
    }


def as_json(data: Any) -> Any:
    """``data`` as the store keeps it (JSON: tuples are lists), for comparing a config in memory
    with one read back from disk."""
    return json.loads(json.dumps(to_dict(data)))


def format_value(value: Any) -> str:
    """A value as ``--set`` reads it back (YAML): ``true``, ``null``, ``[0.2, 1.0]``, ``2.0``."""
    if value is ABSENT:
        return "(not recorded)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def describe(changed: dict[str, tuple[Any, Any]] | None) -> str:
    """``key=value, ...`` of the changed keys; "" when none; "recipe unknown" when None."""
    if changed is None:
        return "recipe unknown"
    return ", ".join(f"{key}={format_value(ours)}" for key, (ours, _) in changed.items())


def encoder_changes(records: Iterable[dict]) -> dict[str, str]:
    """For every pretraining (or random-init) stage key in ``records``: its changes from the recipe."""
    return {r["key"]: describe(differences("pretrain", r)) for r in records if r.get("stage") == "pretrain"}


def run_descriptions(records: Iterable[dict]) -> dict[str, str]:
    """For every finished stage key of ``records``: how the run differs from its recipe, its
    pretraining's changes first, then the evaluation's own (an evaluation of the random-init
    baseline or of a released checkpoint has no method recipe to compare with: only its encoder's
    changes are shown)."""
    records = list(records)
    described = encoder_changes(records)
    for r in records:
        if r.get("stage") != "pretrain":
            no_recipe = r.get("method") == RANDOM_INIT or r.get("checkpoint")  # a random-init or released encoder
            own = "" if no_recipe else describe(differences(r.get("stage", ""), r))
            described[r["key"]] = ", ".join(part for part in (described.get(r.get("parent"), ""), own) if part)
    return described
