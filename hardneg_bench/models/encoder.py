"""The encoder a method trains and evaluation uses: one backbone, or CMC's two colour streams.

An :class:`EncoderSpec` is everything needed to rebuild the encoder from its state dict, so that
``encoder.pt`` can be evaluated without the run's config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

from torch import nn

from .backbones import build_backbone
from .colour import LabSplitEncoder
from .split_batchnorm import SplitBatchNorm2d


@dataclass(frozen=True)
class EncoderSpec:
    backbone: str
    stem: str | None
    """As built (:func:`~hardneg_bench.models.backbones.backbone_stem`): ``cifar`` or ``imagenet`` for
    a ResNet, None for the tiny CNN; ``auto`` in files written before it was resolved here."""
    image_size: int
    width: float = 1.0
    lab_split: bool = False
    """CMC: an L stream and an ab stream, each a ``backbone`` of ``width``."""
    input_mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    input_std: tuple[float, ...] = (1.0, 1.0, 1.0)
    """The normalisation of the RGB input (used by the Lab conversion only)."""

    def to_dict(self) -> dict:
        return asdict(self)


def build_encoder(spec: EncoderSpec, bn_splits: int = 1) -> nn.Module:
    """The encoder of ``spec``; ``bn_splits > 1`` uses split BatchNorm (training only: its state
    dict is that of plain BatchNorm)."""
    norm_layer = partial(SplitBatchNorm2d, num_splits=bn_splits) if bn_splits > 1 else nn.BatchNorm2d
    if not spec.lab_split:
        return build_backbone(spec.backbone, spec.stem, spec.image_size, 3, spec.width, norm_layer)
    l_stream = build_backbone(spec.backbone, spec.stem, spec.image_size, 1, spec.width, norm_layer)
    ab_stream = build_backbone(spec.backbone, spec.stem, spec.image_size, 2, spec.width, norm_layer)
    return LabSplitEncoder(l_stream, ab_stream, spec.input_mean, spec.input_std)
