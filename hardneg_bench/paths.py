"""Where data and runs live unless the user says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "HARDNEG_BENCH_DATA"
RUNS_ENV = "HARDNEG_BENCH_RUNS"


def _from_env_or_cache(variable: str, folder: str) -> Path:
    """``$variable``, else ``$XDG_CACHE_HOME/hardneg-bench/<folder>`` (``~/.cache/...``)."""
    if os.environ.get(variable):
        return Path(os.environ[variable]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hardneg-bench" / folder


def default_data_root() -> Path:
    return _from_env_or_cache(DATA_ROOT_ENV, "data")


def default_runs_dir() -> Path:
    return _from_env_or_cache(RUNS_ENV, "runs")
