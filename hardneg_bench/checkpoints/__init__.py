"""Released checkpoints of the official codes, read into our encoder format (issue 15).

``read_checkpoint(path)`` detects the format from the file's keys (or takes ``format=``), maps
the weights strictly onto :func:`~hardneg_bench.models.encoder.build_encoder`'s module and says
which input normalisation they expect. Files are read as data only (see :mod:`.base`).
"""

from __future__ import annotations

from pathlib import Path

from .base import CheckpointError, ImportedEncoder, LayoutError
from .registry import FORMATS

__all__ = ["FORMATS", "CheckpointError", "ImportedEncoder", "read_checkpoint"]


def _keys_hint(payload) -> str:
    if not isinstance(payload, dict):
        return f"it holds a {type(payload).__name__}, not a dict"
    keys = [str(k) for k in payload][:4]
    inner = next((v for v in payload.values() if isinstance(v, dict)), None)
    first = next(iter(inner), None) if inner else None
    return f"top-level keys {', '.join(repr(k) for k in keys)}{' ...' if len(payload) > 4 else ''}" + (f"; first nested key {first!r}" if first is not None else "")


def read_checkpoint(path: Path, format: str | None = None) -> ImportedEncoder:
    """The encoder in ``path`` as our ``encoder.pt`` record. ``format``: a name of
    :data:`FORMATS`; None detects it from the keys. Raises :class:`CheckpointError` (one line)."""
    from .base import load_payload

    path = Path(path)
    if format is not None and format not in FORMATS:
        raise CheckpointError(f"unknown checkpoint format {format!r} (known: {', '.join(FORMATS)})")
    payload, sha = load_payload(path)
    if format is not None:
        candidates = [FORMATS[format]]
    else:
        candidates = [f for f in FORMATS.values() if f.auto and f.detect(payload)]
        if not candidates:
            tried = ", ".join(f.name for f in FORMATS.values() if f.auto)
            raise CheckpointError(f"{path}: no known checkpoint layout ({_keys_hint(payload)}); formats tried: {tried}")
    tried = ", ".join(f.name for f in candidates)
    first_error = None
    for fmt in candidates:
        try:
            record, normalization = fmt.read(payload)
        except LayoutError as err:
            first_error = first_error or f"{path}: {fmt.name}: {err}"
            continue
        return ImportedEncoder(record=record, format=fmt.name, normalization=normalization, sha256=sha, source=fmt.source)
    raise CheckpointError(f"{first_error} (formats tried: {tried})")
