"""An accelerator emulated on the CPU, to catch what would go wrong on a GPU before one is at hand.

The emulated device is PyTorch's ``meta`` device: tensors with shapes and dtypes but no data, so a
ResNet-50 step costs only the bookkeeping of its operations, and autograd runs as on any device.
On top of it, :class:`DeviceWatch` (a dispatch mode that sees every operation) records, while
:meth:`DeviceWatch.watching`:

* ``cpu-tensor``: an operation produced a CPU tensor of one or more dimensions (``torch.arange(n)``
  without ``device=``, ``.cpu()``, a mask built on the host): on a GPU it is host memory, to be
  copied over before use;
* ``mixed-devices``: an operation took or gave both a CPU tensor of one or more dimensions and a
  device tensor (an implicit host-to-device copy, or a device mismatch that CUDA would refuse);
* ``host-read``: a device tensor's value was read on the host (``.item()``, ``bool(t)``,
  ``float(t)``, ``.tolist()``): on a GPU the host waits for every queued kernel. The value given
  back is 1 (a meta tensor has none);
* ``generator-device``: a random op drew from a generator of another device than its output's
  (CUDA refuses that); ``torch.Generator(device=...)`` is emulated for the device.

A data-dependent shape (boolean-mask indexing, ``nonzero``), which makes the host wait too, cannot
be computed on the meta device and raises. Zero-dimensional CPU tensors are allowed, as on CUDA
(they are passed to kernels as numbers). What the emulation cannot see: the CUDA-only choices
(fused optimizers, bf16 autocast, cuDNN), which ``benchmarks/gpu_check.py`` checks on a GPU.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

DEVICE = torch.device("meta")
PACKAGE = str(Path(__file__).resolve().parents[1] / "hardneg_bench")
RANDOM_FUNCTIONS = ("rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial")


class Finding(NamedTuple):
    kind: str
    op: str
    where: str
    """The innermost line of the package (or of a test) that led to the operation."""

    def __str__(self) -> str:
        return f"{self.kind} ({self.op}) at {self.where}"


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()):
        if frame.filename.startswith(PACKAGE) or (frame.filename.endswith(".py") and Path(frame.filename).name.startswith("test_")):
            return f"{Path(frame.filename).name}:{frame.lineno}: {(frame.line or '').strip()}"
    return "?"


def _is_host_array(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dim() > 0


class DeviceWatch(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.findings: list[Finding] = []
        self.active = False

    def record(self, kind: str, op: str) -> None:
        if self.active:
            self.findings.append(Finding(kind, op, _caller()))

    @contextlib.contextmanager
    def watching(self) -> Iterator[list[Finding]]:
        """Record the findings of the operations run inside; yields the list they go to."""
        start, self.active = len(self.findings), True
        found: list[Finding] = []
        try:
            yield found
        finally:
            self.active = False
            found.extend(self.findings[start:])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type != "cpu":
            self.record("host-read", name)
            return 1
        out = func(*args, **kwargs)
        if self.active:
            inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            on_device = any(t.device.type != "cpu" for t in inputs + outputs)
            if on_device and any(_is_host_array(t) for t in inputs + outputs):
                self.record("mixed-devices", name)
            elif any(_is_host_array(t) for t in outputs):
                self.record("cpu-tensor", name)
        return out


def _emulated_generator_class(real: type) -> type:
    class Generator(real):
        """A CPU generator that says it lives on the device it was asked for (the meta device
        has no generator of its own)."""

        def __new__(cls, device: str | torch.device = "cpu"):
            generator = super().__new__(cls, "cpu")
            generator.claimed_device = torch.device(device)
            return generator

        @property
        def device(self) -> torch.device:
            return self.claimed_device

    return Generator


def _checking_generator_device(function: Callable, watch: DeviceWatch) -> Callable:
    def draw(*args, generator=None, **kwargs):
        out = function(*args, generator=generator, **kwargs)
        if generator is not None and out.device.type != generator.device.type:
            watch.record("generator-device", function.__name__)
        return out

    return draw


@contextlib.contextmanager
def emulated_device(monkeypatch) -> Iterator[DeviceWatch]:
    """The meta device as the accelerator, with a :class:`DeviceWatch` over every operation."""
    watch = DeviceWatch()
    monkeypatch.setattr(torch, "Generator", _emulated_generator_class(torch.Generator))
    for name in RANDOM_FUNCTIONS:
        monkeypatch.setattr(torch, name, _checking_generator_device(getattr(torch, name), watch))
    with watch:
        yield watch


def describe(findings: list[Finding]) -> str:
    return "\n".join(str(f) for f in findings)
