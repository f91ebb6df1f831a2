"""Running the ``hardneg-bench`` command line in a subprocess against a private run store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, runs: Path, data: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARDNEG_BENCH_RUNS": str(runs), "HARDNEG_BENCH_DATA": str(data or runs / "no-data"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "hardneg_bench", *args], capture_output=True, text=True, env=env, timeout=timeout)


def ledger(runs: Path) -> list[dict]:
    path = runs / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()
