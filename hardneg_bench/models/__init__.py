"""Backbones and projection heads."""

from .backbones import BACKBONES, build_backbone
from .heads import projection_mlp

__all__ = ["BACKBONES", "build_backbone", "projection_mlp"]
