"""The evaluation settings that change a published number, and their comparison with ours.

A setting is named by hardneg-bench's own config key (``probe.optimizer.lr``, ``knn.feature``), or
by ``normalization`` (the input normalisation, which the dataset and the method fix) and
``knn.report_epoch`` (which pretraining epoch's kNN is reported: ours is always the final
encoder's). :data:`LINEAR_SETTINGS` and :data:`KNN_SETTINGS` are every setting a linear probe's or a
kNN's number depends on; a published protocol states each (or says ``unstated``) and
:func:`differences` names each that is not like-for-like with ours.

Some settings act only when another allows it (momentum with SGD or LARS, milestones with the step
schedule, the augmentation with the ``paper`` protocol, jitter strengths when jitter is applied): such
a setting is compared only when it acts on both sides. Where it acts on one side only, the setting
that switches it differs, and that one is named.
"""

from __future__ import annotations

import functools
import math
import typing
from dataclasses import is_dataclass
from typing import Any, Callable, Iterable, Mapping

from ..config import ConfigError, RunConfig, _convert, flatten, to_dict
from ..data.base import DatasetSpec
from ..data.normalization import NORMALIZATIONS, normalized
from ..data.registry import get_dataset
from ..engine.batches import crop_size_of, test_geometry
from ..methods import get_method

UNSTATED = "unstated"
"""A setting's value when its source does not say it."""

_AUGMENT = tuple(
    f"probe.augment.{name}"
    for name in ("crop_size", "crop_scale", "crop_ratio", "flip_p", "jitter", "jitter_p", "grayscale_p", "grayscale_before_jitter", "blur_p", "blur_sigma", "blur_kernel_fraction")
)

LINEAR_SETTINGS: tuple[str, ...] = (
    "probe.protocol",
    "probe.epochs",
    "probe.batch_size",
    "probe.optimizer.name",
    "probe.optimizer.lr",
    "probe.optimizer.momentum",
    "probe.optimizer.weight_decay",
    "probe.optimizer.nesterov",
    "probe.optimizer.lars_trust_coefficient",
    "probe.schedule.name",
    "probe.schedule.milestones",
    "probe.schedule.gamma",
    "probe.schedule.final_lr_factor",
    "probe.schedule.warmup_epochs",
    "probe.schedule.warmup_start_factor",
    *_AUGMENT,
    "probe.image_size",
    "probe.test_resize",
    "probe.drop_last",
    "probe.encoder_batchnorm",
    "probe.classifier_init",
    "probe.report_epoch",
    "normalization",
)
"""Every setting a linear probe's test accuracy depends on, in the order they are reported."""

KNN_SETTINGS: tuple[str, ...] = ("knn.k", "knn.temperature", "knn.feature", "knn.report_epoch", "probe.image_size", "probe.test_resize", "normalization")
"""Every setting a weighted kNN's test accuracy depends on."""

SETTINGS: dict[str, tuple[str, ...]] = {"linear": LINEAR_SETTINGS, "knn": KNN_SETTINGS}
"""The settings of each evaluation kind that is compared setting by setting."""

COLOUR_SPACE_NORMALIZATIONS: dict[str, str] = {
    "cmc-lab": "RGB to CIE L*a*b*, each channel scaled to about [-1, 1] (CMC train_CMC.py, LinearProbing.py --view Lab; hardneg_bench/models/colour.py)",
    "cmc-ycbcr": "RGB to YCbCr, normalised with CMC's YCbCr mean and std (CMC LinearProbing.py --view YCbCr)",
}
"""Normalisations of another colour space, by name: what each does."""

Condition = Callable[[Mapping[str, Any]], bool]


def stated(settings: Mapping[str, Any], name: str) -> bool:
    """Whether ``settings`` gives ``name`` a value (``unstated`` and absence say nothing)."""
    return name in settings and not (isinstance(settings[name], str) and settings[name] == UNSTATED)


def _one_of(name: str, *values: Any) -> Condition:
    """True where ``name`` is one of ``values``, or unstated (then it may be)."""
    return lambda settings: not stated(settings, name) or settings[name] in values


def _positive(name: str) -> Condition:
    """True where ``name`` is above 0, or unstated."""
    return lambda settings: not stated(settings, name) or settings[name] > 0


_PAPER = _one_of("probe.protocol", "paper")
"""The fast protocol trains on features of un-augmented images: no augmentation acts."""

CONDITIONS: dict[str, tuple[Condition, ...]] = {
    "probe.optimizer.momentum": (_one_of("probe.optimizer.name", "sgd", "lars"),),
    "probe.optimizer.nesterov": (_one_of("probe.optimizer.name", "sgd"),),
    "probe.optimizer.lars_trust_coefficient": (_one_of("probe.optimizer.name", "lars"),),
    "probe.schedule.milestones": (_one_of("probe.schedule.name", "step"),),
    "probe.schedule.gamma": (_one_of("probe.schedule.name", "step"),),
    "probe.schedule.final_lr_factor": (_one_of("probe.schedule.name", "cosine"),),
    "probe.schedule.warmup_start_factor": (_positive("probe.schedule.warmup_epochs"),),
    **{name: (_PAPER,) for name in _AUGMENT},
    "probe.augment.jitter": (_PAPER, _positive("probe.augment.jitter_p")),
    "probe.augment.grayscale_before_jitter": (_PAPER, _positive("probe.augment.jitter_p"), _positive("probe.augment.grayscale_p")),
    "probe.augment.blur_sigma": (_PAPER, _positive("probe.augment.blur_p")),
    "probe.augment.blur_kernel_fraction": (_PAPER, _positive("probe.augment.blur_p")),
}
"""When a setting acts: every condition holds on that side's settings."""


def acts(name: str, settings: Mapping[str, Any]) -> bool:
    """Whether setting ``name`` acts in the evaluation that ``settings`` describe."""
    return all(condition(settings) for condition in CONDITIONS.get(name, ()))


def required_settings(kind: str, settings: Mapping[str, Any]) -> list[str]:
    """The settings a ``kind`` protocol with ``settings`` must state (or say ``unstated``): those
    of its kind that act in it. Detection protocols are not compared setting by setting: none."""
    return [name for name in SETTINGS.get(kind, ()) if acts(name, settings)]


def with_unstated(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with every required setting it leaves out said ``unstated``, the required ones
    in the order of its kind's settings, then the stated ones that do not act."""
    required = required_settings(kind, settings)
    return {**{name: settings.get(name, UNSTATED) for name in required}, **{k: v for k, v in settings.items() if k not in required}}


# --------------------------------------------------------------------------------------------
# What a stated value may be


@functools.cache
def _config_type(name: str) -> Any:
    """The type of config key ``name`` (a dataclass field of :class:`RunConfig`'s sections)."""
    tp: Any = RunConfig
    for part in name.split("."):
        tp = next(t for t in typing.get_args(tp) or (tp,) if is_dataclass(t))  # AugmentConfig | None -> AugmentConfig
        tp = typing.get_type_hints(tp)[part]
    return tp


def _fits(value: Any, tp: Any) -> bool:
    try:
        _convert(value, tp, "")
    except ConfigError:
        return False
    return True


def value_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` as setting ``name`` (None: nothing; ``unstated`` always fits)."""
    if not stated({name: value}, name):
        return None
    if name == "normalization":
        known = ", ".join([*NORMALIZATIONS, *COLOUR_SPACE_NORMALIZATIONS])
        return None if valid_normalization(value) else f"must be one of {known}, {{mean: [3 numbers], std: [3 numbers]}} or unstated, got {value!r}"
    if name == "knn.report_epoch":
        return None if value in ("last", "best") else f"must be last, best or unstated, got {value!r}"
    tp = _config_type(name)
    return None if _fits(value, tp) else f"must be {getattr(tp, '__name__', tp)} or unstated, got {value!r}"


# --------------------------------------------------------------------------------------------
# Normalisation


def valid_normalization(value: Any) -> bool:
    """A known name, ``unstated``, or ``{mean: [3 numbers], std: [3 numbers]}``."""
    if isinstance(value, str):
        return value == UNSTATED or value in NORMALIZATIONS or value in COLOUR_SPACE_NORMALIZATIONS
    return isinstance(value, Mapping) and set(value) == {"mean", "std"} and all(isinstance(v, list) and len(v) == 3 and all(_number(x) for x in v) for v in value.values())


def _numbers(value: Any) -> Any:
    """A named RGB normalisation as its numbers (so that a name and its numbers compare equal)."""
    if isinstance(value, str) and value in NORMALIZATIONS:
        mean, std = NORMALIZATIONS[value]
        return {"mean": list(mean), "std": list(std)}
    return value


def normalization_of(method: str, spec: DatasetSpec) -> Any:
    """Our input normalisation: ``cmc-lab`` for the methods that split L*a*b* channels (they
    convert every image), else the name of the dataset's mean and std, else those numbers."""
    if get_method(method).cls.lab_split:
        return "cmc-lab"
    ours = {"mean": list(spec.mean), "std": list(spec.std)}
    return next((name for name in NORMALIZATIONS if same(_numbers(name), ours)), ours)


# --------------------------------------------------------------------------------------------
# Our side


def our_settings(cfg: RunConfig, metric: str) -> dict[str, Any]:
    """Every setting of ``metric`` (``linear`` or ``knn``) as our evaluation of ``cfg`` really
    applies it: the probe's augmentation resolved (None: the pretraining one; a crop size of None:
    the dataset's side), the test geometry as :func:`~hardneg_bench.engine.batches.test_geometry`
    computes it, tuples as lists."""
    spec = normalized(get_dataset(cfg.dataset), cfg.model.normalization)
    augment = cfg.probe.augment or cfg.pretrain.augment
    resize, side = test_geometry(cfg.probe, spec)
    values = flatten(
        {
            "probe": {**to_dict(cfg.probe), "augment": {**to_dict(augment), "crop_size": crop_size_of(augment, spec)}, "image_size": side, "test_resize": resize},
            "knn": {**to_dict(cfg.knn), "report_epoch": "last"},  # our kNN measures the final encoder only
        }
    )
    values["normalization"] = normalization_of(cfg.method, spec)  # a leaf, even as {mean, std}
    return {name: values[name] for name in SETTINGS[metric]}


# --------------------------------------------------------------------------------------------
# Comparison


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same(theirs: Any, ours: Any) -> bool:
    """Equal values: numbers within a relative 1e-6, lists element by element, mappings key by
    key, booleans only with booleans."""
    if _number(theirs) and _number(ours):
        return math.isclose(theirs, ours, rel_tol=1e-6)
    if isinstance(theirs, (list, tuple)) and isinstance(ours, (list, tuple)):
        return len(theirs) == len(ours) and all(same(a, b) for a, b in zip(theirs, ours))
    if isinstance(theirs, Mapping) and isinstance(ours, Mapping):
        return set(theirs) == set(ours) and all(same(theirs[k], ours[k]) for k in theirs)
    return type(theirs) is type(ours) and theirs == ours


def value_text(value: Any) -> str:
    """A setting's value as YAML writes it (``null``, ``true``, ``[0.08, 1.0]``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(value_text(v) for v in value)}]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def differences(published: Mapping[str, Any], ours: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """One line per setting of ``names`` that keeps the ``published`` number from being
    like-for-like with ``ours``: each that acts on both sides and differs, or that the source
    does not state (an unknown protocol is not known to be like-for-like)."""
    found = []
    for name in names:
        if not (acts(name, published) and acts(name, ours)):
            continue
        if not stated(published, name):
            found.append(f"{name}: not stated by the source")
        elif not same(_numbers(published[name]), _numbers(ours[name])):
            found.append(f"{name}: {value_text(published[name])} (theirs) vs {value_text(ours[name])} (ours)")
    return found
