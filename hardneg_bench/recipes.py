"""Resolving a run's config from the recipes under ``experiments/`` and the user's overrides.

Layers, each merged over the previous one:

1. the dataclass defaults (:mod:`hardneg_bench.config`);
2. ``experiments/methods/<method>.yaml``, its ``common`` block: the method's official recipe
   (objective parameters, backbone, optimizer, schedule, epochs, batch, augmentations), merged
   over the recipe it ``extends`` if it names one;
3. ``experiments/datasets/<dataset>.yaml``: what the dataset imposes on every method (crop size,
   probe protocol; for the built-in ``shapes``, a CPU-sized backbone and schedule);
4. ``experiments/methods/<method>.yaml``, its ``datasets.<dataset>`` block: the method's official
   per-dataset settings;
5. the user's ``--config FILE``;
6. the command-line flags (``--epochs``, ``--batch-size``, ``--backbone``, ``--seed``);
7. each ``--set key=value``, in order.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, deep_merge, from_dict, load_yaml, parse_override
from .data.registry import get_dataset
from .methods import get_method
from .models import BACKBONES


def experiments_dir() -> Path:
    """The ``experiments/`` folder: beside the package in a source checkout, else the copy
    installed inside the package as ``hardneg_bench/experiments``."""
    checkout = Path(__file__).resolve().parent.parent / "experiments"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("hardneg_bench") / "experiments"))


def method_recipe(method: str, dataset: str) -> tuple[dict, dict]:
    """The method's (common, per-dataset) recipe layers; a recipe that ``extends`` another
    (e.g. HCL extends SimCLR) is merged over that one's layers."""
    path = experiments_dir() / "methods" / f"{method}.yaml"
    recipe = load_yaml(path) if path.is_file() else {}
    unknown = set(recipe) - {"extends", "common", "datasets"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected extends, common, datasets)")
    common, per_dataset = method_recipe(recipe["extends"], dataset) if "extends" in recipe else ({}, {})
    return (
        deep_merge(common, recipe.get("common") or {}),
        deep_merge(per_dataset, (recipe.get("datasets") or {}).get(dataset) or {}),
    )


def dataset_recipe(dataset: str) -> dict:
    path = experiments_dir() / "datasets" / f"{dataset}.yaml"
    return load_yaml(path) if path.is_file() else {}


def resolve_config(
    method: str | None = None,
    dataset: str | None = None,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] = (),
) -> RunConfig:
    """The full run config; a :class:`ConfigError` names the first bad key or value."""
    user = load_yaml(config_file) if config_file else {}
    method = method or user.get("method")
    dataset = dataset or user.get("dataset")
    if not method or not dataset:
        raise ConfigError("both a method and a dataset are needed (--method, --dataset, or keys in --config)")
    entry, spec = get_method(method), get_dataset(dataset)
    method_common, method_for_dataset = method_recipe(entry.name, spec.name)
    raw: dict = {}
    for layer in (method_common, dataset_recipe(spec.name), method_for_dataset, user, flags or {}):
        raw = deep_merge(raw, layer)
    for text in overrides:
        raw = deep_merge(raw, parse_override(text))
    raw.update(method=entry.name, dataset=spec.name)
    params = from_dict(entry.params, raw.pop("method_params", None), "method_params")
    cfg = replace(from_dict(RunConfig, raw), method_params=params)
    check_across(cfg)
    return cfg


def check_across(cfg: RunConfig) -> None:
    """What the dataclasses cannot check alone: names (backbone, transfer datasets) and keys that
    constrain each other (the batch against the queue, the BatchNorm groups and the dataset)."""
    if cfg.model.backbone not in BACKBONES:
        raise ConfigError(f"config key 'model.backbone': unknown backbone {cfg.model.backbone!r} (known: {', '.join(BACKBONES)})")
    for target in cfg.transfer or ():
        get_dataset(target)
    batch = cfg.pretrain.batch_size
    queue = getattr(cfg.method_params, "queue_size", None)
    if queue is not None and queue < batch:
        raise ConfigError(f"config key 'method_params.queue_size': {queue} is smaller than the batch of {batch} (a batch's keys must fit in the queue)")
    if batch % cfg.model.bn_splits:
        raise ConfigError(f"config key 'model.bn_splits': {cfg.model.bn_splits} BatchNorm groups do not divide the batch of {batch}")
    images = get_dataset(cfg.dataset).split_sizes.get(cfg.pretrain.split)
    if images is not None and batch > images:
        raise ConfigError(f"config key 'pretrain.batch_size': {batch} is larger than the {images} {cfg.pretrain.split} images of {cfg.dataset}")


def cli_flags(epochs: int | None, batch_size: int | None, backbone: str | None, seed: int | None) -> dict:
    """The shortcut flags of ``run`` as a config layer (flags left unset add nothing)."""
    layer: dict = {}
    if epochs is not None:
        layer = deep_merge(layer, {"pretrain": {"epochs": epochs}})
    if batch_size is not None:
        layer = deep_merge(layer, {"pretrain": {"batch_size": batch_size}})
    if backbone is not None:
        layer = deep_merge(layer, {"model": {"backbone": backbone}})
    if seed is not None:
        layer["seed"] = seed
    return layer
