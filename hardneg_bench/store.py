"""The run store: one folder per stage output, keyed by a hash of its config and its parent's key.

Layout under the store root::

    <stage>/<key>/config.yaml     the stage's full resolved config
    <stage>/<key>/result.json     written last: its presence means the stage finished
    <stage>/<key>/...             stage files (checkpoint.pt, encoder.pt, metrics.csv)
    ledger.jsonl                  one JSON record per finished stage, appended

Every file is written atomically (temporary file in the same folder, fsync, rename), so a killed
process leaves either the old file or the new one, never a partial one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from filelock import FileLock


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are 0600


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or all of the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class RunStore:
    """Stage folders and the results ledger under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.ledger_path = self.root / "ledger.jsonl"

    def stage_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_done(self, stage: str, key: str) -> bool:
        return (self.stage_dir(stage, key) / "result.json").is_file()

    def read_result(self, stage: str, key: str) -> dict:
        return json.loads((self.stage_dir(stage, key) / "result.json").read_text())

    def write_config(self, stage: str, key: str, config: dict) -> None:
        atomic_write_text(self.stage_dir(stage, key) / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def finish(self, record: dict) -> None:
        """Mark a stage finished: its ``result.json`` first, then one ledger line."""
        atomic_write_text(self.stage_dir(record["stage"], record["key"]) / "result.json", json.dumps(record, indent=1))
        self.append_ledger(record)

    def append_ledger(self, record: dict) -> None:
        """Append one record as one line, under a lock so concurrent runs never interleave."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with FileLock(str(self.ledger_path) + ".lock"):
            fd = os.open(self.ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def ledger(self) -> Iterator[dict]:
        """The ledger's records, oldest first; a torn last line (a killed writer) is skipped."""
        if not self.ledger_path.is_file():
            return
        with self.ledger_path.open() as f:
            for line in f:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue
