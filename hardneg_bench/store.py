"""The run store: one folder per stage output, keyed by a hash of its config and its parent's key.

Layout under the store root::

    <stage>/<key>/config.yaml     the stage's full resolved config
    <stage>/<key>/result.json     written last: its presence means the stage finished
    <stage>/<key>/...             stage files (checkpoint.pt, encoder.pt, metrics.csv)
    ledger.jsonl                  one JSON record per finished stage, appended
    bench.jsonl                   what each ``hardneg-bench bench`` run measured, appended

Every file is written atomically (temporary file in the same folder, fsync, rename), so a killed
process leaves either the old file or the new one, never a partial one. A file that cannot be
written (disk full, read-only store) raises :class:`StoreError` naming it, and the store keeps
what it had. Checkpoints carry their stage's key and a SHA-256 of their content, and the previous
one is kept until the next is complete; a damaged or foreign checkpoint is never loaded. Every
torch file (checkpoints, encoders) is read as data only (``weights_only``): one that would need
any other object unpickled is refused in one line, and nothing in it runs. A stage is
computed under a lock (:meth:`RunStore.stage_lock`), so two processes never compute one stage at
once; the operating system releases the lock of a killed process.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import io
import json
import os
import pickle
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from filelock import FileLock, Timeout

from .faults import failpoint


class StoreError(RuntimeError):
    """A file of the run store could not be written, or must not be read; the message is one line."""


class StageBusy(RuntimeError):
    """Another process is computing the same stage."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are 0600


def _store_error(path: Path, err: OSError) -> StoreError:
    cause = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}
    reason = cause.get(err.errno, err.strerror or str(err))
    return StoreError(f"cannot write {path}: {reason}; nothing in the store was changed by the failed write")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or all of the new."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            failpoint("write")
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _store_error(path, err) from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _unsafe_objects(source: Path | bytes) -> list[str] | None:
    """The globals beyond tensors and plain data that a torch file asks to unpickle (none listed
    when its pickle is damaged); None for a file that is not in torch's zip format (a bare
    pickle), whose globals are not listed."""
    if not zipfile.is_zipfile(_readable(source)):
        return None
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(_readable(source))
    except Exception:
        return []


def _readable(source: Path | bytes) -> Path | io.BytesIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def load_data(source: Path | bytes, device: torch.device | str, name: Path | None = None) -> Any:
    """``torch.load`` of tensors and plain data only (``weights_only``). A file (``name``: where
    bytes came from) that asks for anything else, which unpickling could run as code, is a
    one-line :class:`StoreError`; the error of a damaged one is raised as it is."""
    try:
        return torch.load(_readable(source), map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        unsafe = _unsafe_objects(source)
        if unsafe == []:  # damaged, not asking for anything
            raise
        asks_for = ", ".join(ascii(global_)[1:-1] for global_ in unsafe) if unsafe else "objects other than tensors and plain data"  # escaped: one line
        raise StoreError(f"refusing to load {name or source}: it asks to unpickle {asks_for}, which could run arbitrary code; hardneg-bench writes tensors and plain data only, so the file is damaged or was written by something else: remove it") from None


def previous_checkpoint(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


CHECKPOINT_FORMAT = 2
"""1 (no ``format`` field): numpy's RNG state as a numpy array, which ``weights_only`` refuses."""


def save_checkpoint(path: Path, state: dict, key: str) -> None:
    """``state`` with the key of its stage and the SHA-256 of its bytes. The current checkpoint
    becomes ``<name>.prev`` first, so a good one exists at every moment."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    record = {"format": CHECKPOINT_FORMAT, "key": key, "sha256": hashlib.sha256(payload).hexdigest(), "state": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    if path.is_file():
        try:
            os.replace(path, previous_checkpoint(path))
        except OSError as err:
            raise _store_error(path, err) from err
    atomic_torch_save(record, path)


def _checked_state(path: Path, key: str, device: torch.device) -> dict:
    try:
        record = load_data(path, "cpu")
    except StoreError:
        raise
    except Exception as err:  # truncated, not a torch file, not ours
        raise ValueError(f"unreadable ({type(err).__name__})") from None
    if isinstance(record, dict) and set(record) == {"key", "sha256", "state"}:
        raise StoreError(f"checkpoint {path} was written by an older hardneg-bench, whose checkpoints cannot be read as data only: remove {path.parent} to run that stage again (the store's other results stay usable)")
    if not isinstance(record, dict) or set(record) != {"format", "key", "sha256", "state"} or record["format"] != CHECKPOINT_FORMAT:
        raise ValueError("not a hardneg-bench checkpoint")
    if record["key"] != key:
        raise ValueError(f"it belongs to stage {record['key']}, not {key}")
    payload = record["state"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != record["sha256"]:
        raise ValueError("its checksum does not match its content")
    return load_data(payload, device, path)


def load_checkpoint(path: Path, key: str, device: torch.device) -> dict | None:
    """The newest intact checkpoint of stage ``key``: ``path``, else the previous one; None when
    neither is. A damaged or foreign file is reported in one line on stderr and never loaded; one
    that is not data only, or from an older version, is a :class:`StoreError`."""
    for candidate in (path, previous_checkpoint(path)):
        if candidate.is_file():
            try:
                return _checked_state(candidate, key, device)
            except ValueError as err:
                print(f"warning: ignoring checkpoint {candidate}: {err}", file=sys.stderr)
    return None


class RunStore:
    """Stage folders and the results ledger under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.ledger_path = self.root / "ledger.jsonl"
        self.bench_path = self.root / "bench.jsonl"

    def stage_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_done(self, stage: str, key: str) -> bool:
        return (self.stage_dir(stage, key) / "result.json").is_file()

    def find(self, prefix: str) -> list[tuple[str, str]]:
        """(stage, key) of every finished stage whose key starts with ``prefix``."""
        if not prefix or not self.root.is_dir():
            return []
        return sorted((marker.parent.parent.name, marker.parent.name) for marker in self.root.glob(f"*/{glob.escape(prefix)}*/result.json"))

    def read_result(self, stage: str, key: str) -> dict:
        return json.loads((self.stage_dir(stage, key) / "result.json").read_text())

    def write_config(self, stage: str, key: str, config: dict) -> None:
        atomic_write_text(self.stage_dir(stage, key) / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def finish(self, record: dict) -> None:
        """Mark a stage finished: its ``result.json`` first, then one ledger line."""
        atomic_write_text(self.stage_dir(record["stage"], record["key"]) / "result.json", json.dumps(record, indent=1))
        self.append_ledger(record)

    def fail(self, record: dict) -> None:
        """Record a stage that failed (``status: failed``, with its error): a ledger line only,
        which reports skip; the stage is computed again next time."""
        self.append_ledger({**record, "status": "failed"})

    @contextmanager
    def stage_lock(self, stage: str, key: str):
        """Held while a stage is computed; another process asking for it gets :class:`StageBusy`."""
        lock = FileLock(str(self.stage_dir(stage, key)) + ".lock", timeout=0)
        try:
            self.stage_dir(stage, key).parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout:
            raise StageBusy(f"the {stage} stage {key} is being computed by another process (lock {lock.lock_file}); wait for it to finish, then run again") from None
        except OSError as err:
            raise _store_error(Path(lock.lock_file), err) from err
        try:
            yield
        finally:
            lock.release()

    def append_ledger(self, record: dict, unless_present: bool = False) -> None:
        """Append one record as one line (:func:`append_jsonl`). ``unless_present``: only if no
        finished record of the same stage and key is there yet (a stage whose process was killed
        between its result.json and its ledger line)."""
        def present() -> bool:
            return any((r["stage"], r["key"]) == (record["stage"], record["key"]) for r in self.ledger())

        if unless_present and present():  # the usual case needs no lock (and works on a read-only store)
            return
        append_jsonl(self.ledger_path, record, present if unless_present else None)

    def ledger(self, failed: bool = False) -> Iterator[dict]:
        """The finished stages' records, oldest first (``failed``: the failed ones instead); torn
        lines (a killed writer) are skipped."""
        for record in read_jsonl(self.ledger_path):
            if (record.get("status") == "failed") == failed:
                yield record

    def append_bench(self, figures: dict) -> None:
        """Keep what one ``bench`` run measured (``reproduce --dry-run`` estimates from it)."""
        append_jsonl(self.bench_path, figures)

    def bench_records(self) -> Iterator[dict]:
        """Every ``bench`` run's figures, oldest first."""
        yield from read_jsonl(self.bench_path)


def append_jsonl(path: Path, record: dict, skip_if: Callable[[], bool] | None = None) -> None:
    """Append ``record`` as one JSON line, under a lock so concurrent writers never interleave
    (unless ``skip_if()``, asked under the lock, says it is there already). A torn last line left
    by a killed writer is ended first, so it never swallows the new record."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if skip_if is not None and skip_if():
                return
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line
                half = len(line) // 2
                os.write(fd, line[:half])
                failpoint("ledger")
                os.write(fd, line[half:])
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as err:
        raise _store_error(path, err) from err


def read_jsonl(path: Path) -> Iterator[dict]:
    """The records of a JSON-lines file, oldest first; torn lines (a killed writer) are skipped."""
    if not path.is_file():
        return
    with path.open() as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
