"""The checkpoint formats by name, in detection order (most specific keys first)."""

from __future__ import annotations

from . import cmc, dcl, hcl, moco, ours, ring, solo_learn, torchvision_resnet
from .base import Format

FORMATS: dict[str, Format] = {f.name: f for f in (
    ours.FORMAT, moco.FORMAT, hcl.FORMAT, dcl.FORMAT, ring.FORMAT, cmc.FORMAT, solo_learn.FORMAT, torchvision_resnet.FORMAT,
)}
