"""Running the ``hardneg-bench`` command line in this process (much faster than a subprocess, for
commands that only read and print): its console as wide as a wide terminal, a private run store."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

import hardneg_bench.cli as cli_module


def invoke(monkeypatch, *args: str, runs: Path, data: Path | None = None, columns: int = 200):
    """The result (``exit_code``, ``stdout``, ``stderr``) of ``hardneg-bench ARGS``."""
    monkeypatch.setattr(cli_module, "console", Console(width=columns))
    env = {"HARDNEG_BENCH_RUNS": str(runs), "HARDNEG_BENCH_DATA": str(data or runs / "no-data"), "COLUMNS": str(columns)}
    return CliRunner().invoke(cli_module.app, list(args), env=env)
