"""Resolving a run's config from the recipes under ``experiments/`` and the user's overrides.

Layers, each merged over the previous one:

1. the dataclass defaults (:mod:`hardneg_bench.config`), for every key no layer below sets;
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

:func:`resolve` also says which layer set each key (``hardneg-bench config`` prints it); the
merge itself, and that record, are :func:`hardneg_bench.config.merge_layers`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, deep_merge, flatten, from_dict, load_yaml, merge_layers, parse_override, to_dict
from .data.registry import get_dataset
from .evaluations.registry import Target
from .methods import get_method
from .models import BACKBONES


def experiments_dir() -> Path:
    """The ``experiments/`` folder: beside the package in a source checkout, else the copy
    installed inside the package as ``hardneg_bench/experiments``."""
    checkout = Path(__file__).resolve().parent.parent / "experiments"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("hardneg_bench") / "experiments"))


@dataclass(frozen=True)
class Layer:
    """One layer of a run's config: where its keys come from, and the keys (nested YAML data)."""

    source: str
    values: dict


DEFAULT = "default"
"""The source of a key that no layer sets: the dataclass default (:mod:`hardneg_bench.config`, or
the method's parameter dataclass for ``method_params``)."""


def method_layers(method: str, dataset: str) -> tuple[list[Layer], list[Layer]]:
    """The method's recipe layers: its ``common`` block and its ``datasets.<dataset>`` block, each
    after those of the recipe it ``extends`` (e.g. HCL extends SimCLR)."""
    path = experiments_dir() / "methods" / f"{method}.yaml"
    recipe = load_yaml(path) if path.is_file() else {}
    unknown = set(recipe) - {"extends", "common", "datasets"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected extends, common, datasets)")
    common, per_dataset = method_layers(recipe["extends"], dataset) if "extends" in recipe else ([], [])
    name = f"methods/{method}.yaml"
    return (
        [*common, Layer(f"{name} common", recipe.get("common") or {})],
        [*per_dataset, Layer(f"{name} datasets.{dataset}", (recipe.get("datasets") or {}).get(dataset) or {})],
    )


def dataset_recipe(dataset: str) -> dict:
    path = experiments_dir() / "datasets" / f"{dataset}.yaml"
    return load_yaml(path) if path.is_file() else {}


@dataclass(frozen=True)
class Resolved:
    """A run's config and where each of its keys came from."""

    cfg: RunConfig
    sources: dict[str, str]
    """Dotted key -> the source of the layer that set it (keys absent here are defaults)."""

    def provenance(self) -> list[tuple[str, Any, str]]:
        """Every leaf key of the config, in the config's order: (key, value, source)."""
        return [(key, value, self.sources.get(key, DEFAULT)) for key, value in flatten(to_dict(self.cfg)).items()]


def resolve(
    method: str | None = None,
    dataset: str | None = None,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] = (),
) -> Resolved:
    """The full run config and each key's layer; a :class:`ConfigError` names the first bad key
    or value."""
    user = load_yaml(config_file) if config_file else {}
    chosen = {"method": method or user.get("method"), "dataset": dataset or user.get("dataset")}
    if not chosen["method"] or not chosen["dataset"]:
        raise ConfigError("both a method and a dataset are needed (--method, --dataset, or keys in --config)")
    entry, spec = get_method(chosen["method"]), get_dataset(chosen["dataset"])
    common, per_dataset = method_layers(entry.name, spec.name)
    layers = [
        *common,
        Layer(f"datasets/{spec.name}.yaml", dataset_recipe(spec.name)),
        *per_dataset,
        Layer(f"--config {config_file}", user),
        Layer("command-line flag", flags or {}),
        *(Layer(f"--set {text}", parse_override(text)) for text in overrides),
    ]
    raw, sources = merge_layers((layer.source, layer.values) for layer in layers)
    raw.update(method=entry.name, dataset=spec.name)
    sources.update({key: f"--{key}" if given else f"--config {config_file}" for key, given in (("method", method), ("dataset", dataset))})
    params = from_dict(entry.params, raw.pop("method_params", None), "method_params")
    cfg = replace(from_dict(RunConfig, raw), method_params=params)
    check_across(cfg)
    return Resolved(cfg, sources)


def resolve_config(
    method: str | None = None,
    dataset: str | None = None,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] = (),
) -> RunConfig:
    """The full run config (:func:`resolve` without the sources)."""
    return resolve(method, dataset, config_file, flags, overrides).cfg


def check_across(cfg: RunConfig) -> None:
    """What the dataclasses cannot check alone: names (backbone, transfer datasets) and keys that
    constrain each other (the batch against the queue, the BatchNorm groups and the dataset)."""
    if cfg.model.backbone not in BACKBONES:
        raise ConfigError(f"config key 'model.backbone': unknown backbone {cfg.model.backbone!r} (known: {', '.join(BACKBONES)})")
    for text in cfg.transfer or ():
        target = Target.parse(text)
        if target.evaluation.dataset is None:  # an evaluation with its own datasets checks their names itself
            get_dataset(target.dataset)
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
