"""Backbones, CMC's colour-split encoder, projection heads."""

from .backbones import BACKBONES, build_backbone
from .encoder import EncoderSpec, build_encoder
from .heads import projection_head

__all__ = ["BACKBONES", "EncoderSpec", "build_backbone", "build_encoder", "projection_head"]
