"""Pretraining methods, one file each, registered by name.

Adding a method: write ``methods/<name>.py`` with a parameter dataclass and a :class:`Method`
subclass decorated with ``@register(...)``, then import it below.
"""

from . import dcl, hcl, simclr  # noqa: F401  (each import registers its method)
from .base import Batch, Method
from .registry import METHODS, MethodEntry, get_method

__all__ = ["Batch", "Method", "METHODS", "MethodEntry", "get_method"]
