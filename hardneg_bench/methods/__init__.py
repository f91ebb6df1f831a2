"""Pretraining methods, one file each, registered by name.

Adding a method: write ``methods/<name>.py`` with a parameter dataclass and a :class:`Method`
subclass (or a subclass of one of the frameworks: :class:`InBatchMethod`,
:class:`MomentumQueueMethod`, the memory-bank methods) decorated with ``@register(...)``, then
import it below. Where some settings switch the method's distinctive part off (MoCHi inside its
warm-up is MoCo-v2), the parameter dataclass says so in ``equivalent_to(epochs)``
(:mod:`~hardneg_bench.methods.registry`).
"""

from . import cmc, cmc_ring, dcl, hcl, ir, ir_ring, mochi, moco_v2, ring, simclr, sscl  # noqa: F401  (each import registers its method)
from .base import Batch, Method
from .registry import METHODS, MethodEntry, get_method

__all__ = ["Batch", "Method", "METHODS", "MethodEntry", "get_method"]
