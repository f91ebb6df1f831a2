"""hardneg-bench's own ``encoder.pt`` (hardneg_bench/engine/pretrain.py ``encoder_record``):
``{"encoder": EncoderSpec.to_dict(), "state_dict": ..., ["head": {"spec", "state_dict"}]}``. The
record passes through after a strict load; its normalisation is ``dataset`` (the spec's
input_mean/std are the dataset's) unless the record says ``"normalization"``."""

from __future__ import annotations

from ..data.normalization import DATASET, NORMALIZATIONS
from ..models.encoder import EncoderSpec
from .base import Format, LayoutError, strict_head, strict_state_dict

NAME = "hardneg-bench"
SOURCE = "hardneg-bench hardneg_bench/engine/pretrain.py encoder_record"


def detect(payload) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("encoder"), dict) and isinstance(payload.get("state_dict"), dict)


def read(payload) -> tuple[dict, str]:
    try:
        spec = EncoderSpec(**payload["encoder"])
    except TypeError as err:
        raise LayoutError(f"key 'encoder' is not an EncoderSpec ({err})") from None
    spec = EncoderSpec(**{**spec.to_dict(), "input_mean": tuple(spec.input_mean), "input_std": tuple(spec.input_std)})
    sd = payload["state_dict"]
    record = {"encoder": spec.to_dict(), "state_dict": strict_state_dict(spec, {k: (k, v) for k, v in sd.items()})}
    if "head" in payload:
        head = payload["head"]
        record["head"] = strict_head(head["spec"], {k: (f"head.state_dict.{k}", v) for k, v in head["state_dict"].items()})
    normalization = payload.get("normalization", DATASET)
    if normalization != DATASET and normalization not in NORMALIZATIONS:
        raise LayoutError(f"key 'normalization' is {normalization!r}, not one of {', '.join([DATASET, *NORMALIZATIONS])}")
    return record, normalization


FORMAT = Format(NAME, SOURCE, detect, read)
