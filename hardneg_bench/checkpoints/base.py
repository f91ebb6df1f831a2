"""What every checkpoint format shares: the imported encoder, safe reading of the file's bytes, and
the strict mapping of a torchvision-named ResNet state dict onto our encoder.

Untrusted files stay data: pickles are read with ``torch.load(weights_only=True)`` (only the
allow-list that :data:`SAFE_GLOBALS` adds to torch's own), ``.safetensors`` files with the
safetensors library or, where it is not installed, with a header-and-bytes reader that imports
nothing. A pickle that names any other global is refused, never executed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import pickletools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..config import ConfigError
from ..data.normalization import NORMALIZATIONS
from ..models.encoder import EncoderSpec, build_encoder
from ..models.heads import projection_head


class CheckpointError(ConfigError):
    """A checkpoint that cannot be imported; the message is one line naming the file, the first
    offending key and the formats tried."""


class LayoutError(Exception):
    """Raised by a format's reader: the file is not (exactly) in its layout. One line."""


@dataclass(frozen=True)
class ImportedEncoder:
    record: dict
    """What our ``encoder.pt`` holds: ``{"encoder": EncoderSpec.to_dict(), "state_dict": ...}``,
    plus ``"head": {"spec": projection_head kwargs, "state_dict": ...}`` when the format carries a
    projection head that :func:`~hardneg_bench.models.heads.projection_head` expresses."""
    format: str
    normalization: str
    """A name of ``NORMALIZATIONS``, or ``dataset`` (the dataset's own statistics)."""
    sha256: str
    source: str
    """``owner/repo@commit path`` of the official code that writes this layout."""


@dataclass(frozen=True)
class Format:
    name: str
    source: str
    detect: Callable[[Any], bool]
    """Whether a loaded payload has this format's keys (cheap: no shape checks)."""
    read: Callable[[Any], tuple[dict, str]]
    """payload -> (record, normalization); raises :class:`LayoutError`."""
    auto: bool = True
    """False: only read when named (a layout another format already detects)."""


SAFE_GLOBALS = [argparse.Namespace]
"""Globals allowed beyond torch's weights-only defaults: ``argparse.Namespace``, the plain attribute
bag CMC saves as ``'opt'`` (HobbitLong/CMC@7b227be train_CMC.py, train_moco_ins.py): unpickling one
creates the object and fills its ``__dict__``; no code of the file runs (its values must themselves
pass the allow-list)."""

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")
_DATA_GLOBALS = ("torch.", "collections.OrderedDict", "argparse.Namespace", "builtins.set", "builtins.frozenset")


def _foreign_global(data: bytes) -> str | None:
    """The first global a plain (non-zip) pickle names that is not torch's or an allowed data type,
    found by listing its opcodes (:func:`pickletools.genops` executes nothing): torch's
    weights-only reader stops at such pickles' framing before it reaches their globals."""
    if not data.startswith(b"\x80"):
        return None
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                name = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                name = f"{strings[-2]}.{strings[-1]}"
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if not name.startswith(_DATA_GLOBALS):
                return name
    except Exception:  # noqa: BLE001 - a truncated or corrupt pickle: nothing more to list
        return None
    return None


def load_payload(path: Path) -> tuple[Any, str]:
    """The file's contents as data, and the sha256 of its bytes."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read: {err.strerror or err}") from None
    sha = hashlib.sha256(data).hexdigest()
    if path.suffix == ".safetensors":
        return _read_safetensors(path, data), sha
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), sha
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        name = found.group(1) if found else _foreign_global(data)
        if name:
            raise CheckpointError(f"refused: {path} needs arbitrary code to unpickle (GLOBAL {name}); only weights are read") from None
        detail = _UNPICKLER_ERROR.search(str(err))
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({detail.group(1).strip() if detail else _first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - any other failure of torch.load: not a checkpoint
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def _read_safetensors(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file's tensors: the library's reader where installed, else the format read
    directly (8-byte little-endian header length, a JSON header of dtype/shape/offsets, raw bytes)."""
    try:
        from safetensors.torch import load as st_load
    except ImportError:
        st_load = None
    try:
        if st_load is not None:
            return st_load(data)
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        body = memoryview(data)[8 + size :]
        tensors = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            chunk = bytes(body[start:end])
            tensors[name] = torch.frombuffer(bytearray(chunk), dtype=dtype).reshape(entry["shape"]) if chunk else torch.empty(entry["shape"], dtype=dtype)
        return tensors
    except Exception as err:  # noqa: BLE001 - a malformed file
        raise CheckpointError(f"{path}: not a safetensors file ({type(err).__name__}: {_first_line(err)})") from None


# ---------------------------------------------------------------------------------------------
# Layout helpers shared by the formats


def is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def state_dict_in(payload: Any, key: str | None) -> dict[str, torch.Tensor]:
    """``payload[key]`` (or the payload itself for ``key=None``) as a state dict."""
    sd = payload if key is None else (payload.get(key) if isinstance(payload, dict) else None)
    if not is_tensor_dict(sd):
        where = "the file" if key is None else f"key {key!r}"
        raise LayoutError(f"{where} holds no state dict of tensors")
    return sd


@dataclass(frozen=True)
class Rule:
    """Keys starting with ``prefix`` (one ending in a dot; else the key equal to it) go to ``part``
    (renamed to what follows the prefix), or are ignored when ``part`` is None (``why`` says what
    they are)."""
    prefix: str
    part: str | None
    why: str = ""


def split_keys(sd: dict[str, torch.Tensor], rules: Iterable[Rule], name: str) -> dict[str, dict[str, tuple[str, torch.Tensor]]]:
    """``{part: {our_name: (file_key, tensor)}}``; the first rule whose prefix matches a key wins. A
    key no rule matches is an error naming it."""
    rules = list(rules)
    parts: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, value in sd.items():
        rule = next((r for r in rules if key == r.prefix or (r.prefix.endswith(".") and key.startswith(r.prefix))), None)
        if rule is None:
            raise LayoutError(f"key {key!r} is neither a backbone weight nor one {name} ignores")
        if rule.part is not None:
            parts.setdefault(rule.part, {})[key[len(rule.prefix) :]] = (key, value)
    return parts


def resnet_spec(weights: dict[str, tuple[str, torch.Tensor]], lab_split: bool = False, stem: str | None = None) -> EncoderSpec:
    """The EncoderSpec of a torchvision-named ResNet state dict: resnet50 when its blocks have a
    ``conv3``/``bn3``, else resnet18; width from layer1's planes (its first bn1) over 64; the stem from conv1's kernel (3:
    ``cifar``, 7: ``imagenet``). The image size is nominal (32 for the CIFAR stem, 224 otherwise):
    with the stem explicit, nothing is built from it."""
    if "conv1.weight" not in weights:
        raise LayoutError("no 'conv1.weight' among the backbone's keys: not a ResNet")
    planes_key = next((k for k in ("layer1.0.bn1.weight", "layer1.0.conv1.weight") if k in weights), None)
    if planes_key is None:
        raise LayoutError("no 'layer1.0.bn1.weight' among the backbone's keys: not a ResNet")
    conv1 = weights["conv1.weight"][1]
    if conv1.ndim != 4:
        raise LayoutError(f"key {weights['conv1.weight'][0]!r} has shape {tuple(conv1.shape)}, not a convolution's")
    backbone = "resnet50" if "layer1.0.conv3.weight" in weights or "layer1.0.bn3.weight" in weights else "resnet18"
    planes = weights[planes_key][1].shape[0]
    width = planes / 64
    if stem is None:
        kernel = conv1.shape[-1]
        if kernel not in (3, 7):
            raise LayoutError(f"key {weights['conv1.weight'][0]!r} has a {kernel}x{kernel} kernel: neither the 7x7 ImageNet stem nor the 3x3 CIFAR stem")
        stem = "cifar" if kernel == 3 else "imagenet"
    return EncoderSpec(backbone=backbone, stem=stem, image_size=32 if stem == "cifar" else 224, width=width, lab_split=lab_split)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def strict_state_dict(spec: EncoderSpec, weights: dict[str, tuple[str, torch.Tensor]], derived: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``weights`` renamed to our names, checked key by key against ``build_encoder(spec)`` (every
    weight consumed, every shape equal) and loaded strictly. ``derived``: our buffers that come from
    the spec, not the file (the Lab encoder's statistics). A missing BatchNorm
    ``num_batches_tracked`` (files of PyTorch < 0.4.1) is filled with 0: a counter, not a weight."""
    model = build_encoder(spec)
    expected = model.state_dict()
    what = f"{spec.backbone} (stem {spec.stem}, width {spec.width:g}{', Lab streams' if spec.lab_split else ''})"
    sd: dict[str, torch.Tensor] = dict(derived or {})
    for ours, (key, value) in weights.items():
        if ours not in expected:
            raise LayoutError(f"key {key!r} (as {ours!r}) is not a weight of the inferred {what}")
        if _shape(value) != _shape(expected[ours]):
            raise LayoutError(f"key {key!r} has shape {_shape(value)} but the inferred {what} expects {_shape(expected[ours])} for {ours!r}")
        sd[ours] = value
    for ours, value in expected.items():
        if ours not in sd:
            if ours.endswith("num_batches_tracked"):
                sd[ours] = torch.zeros_like(value)
                continue
            raise LayoutError(f"the inferred {what} needs {ours!r}, which the file lacks")
    model.load_state_dict(sd, strict=True)
    return sd


def strict_head(spec: dict, weights: dict[str, tuple[str, torch.Tensor]]) -> dict:
    """``{"spec": spec, "state_dict": ...}`` after loading ``weights`` strictly into
    ``projection_head(**spec)`` (errors name the file's key)."""
    head = projection_head(**spec)
    expected = head.state_dict()
    sd = {}
    for ours, (key, value) in weights.items():
        if ours not in expected:
            raise LayoutError(f"key {key!r} (as head {ours!r}) is not a weight of the head {spec}")
        if _shape(value) != _shape(expected[ours]):
            raise LayoutError(f"key {key!r} has shape {_shape(value)} but the head expects {_shape(expected[ours])}")
        sd[ours] = value
    for ours in expected:
        if ours not in sd:
            raise LayoutError(f"the head {spec} needs {ours!r}, which the file lacks")
    head.load_state_dict(sd, strict=True)
    return {"spec": dict(spec), "state_dict": sd}


def renamed(weights: dict[str, tuple[str, torch.Tensor]], rename: Callable[[str], str]) -> dict[str, tuple[str, torch.Tensor]]:
    return {rename(k): v for k, v in weights.items()}


def record_of(spec: EncoderSpec, weights: dict[str, tuple[str, torch.Tensor]], head: dict | None = None, normalization: str = "imagenet") -> dict:
    """Our encoder.pt record for ``spec`` (its input statistics those of ``normalization``)."""
    if normalization in NORMALIZATIONS:
        mean, std = NORMALIZATIONS[normalization]
        spec = EncoderSpec(**{**spec.to_dict(), "input_mean": tuple(mean), "input_std": tuple(std)})
    record = {"encoder": spec.to_dict(), "state_dict": strict_state_dict(spec, weights)}
    if head is not None:
        record["head"] = head
    return record


def linear_head(weights: dict[str, tuple[str, torch.Tensor]], first: str, second: str | None, batchnorm: str | None = None) -> dict:
    """A one- or two-Linear projection head from the file's Linear modules ``first`` and ``second``
    (``batchnorm``: the BatchNorm1d between them), as :func:`projection_head`'s kwargs and its
    state dict."""
    try:
        w1 = weights[f"{first}.weight"][1]
        w2 = weights[f"{second}.weight"][1] if second is not None else None
    except KeyError as err:
        raise LayoutError(f"the projection head lacks {err.args[0]!r}") from None
    if w2 is None:
        spec = {"in_dim": w1.shape[1], "hidden_dim": w1.shape[1], "out_dim": w1.shape[0], "batchnorm": False, "layers": 1}
        names = {first: "0"}
    else:
        spec = {"in_dim": w1.shape[1], "hidden_dim": w1.shape[0], "out_dim": w2.shape[0], "batchnorm": batchnorm is not None, "layers": 2}
        names = {first: "0", second: "3" if batchnorm else "2"}
        if batchnorm:
            names[batchnorm] = "1"

    def rename(key: str) -> str:
        for module, index in names.items():
            rest = key[len(module) + 1 :]
            if key.startswith(module + ".") and "." not in rest:
                return f"{index}.{rest}"
        raise LayoutError(f"key {weights[key][0]!r} is not a weight of the projection head")

    return strict_head(spec, {rename(k): v for k, v in weights.items()})
