"""What `--help` and `--version` print."""

from __future__ import annotations

import platform
import re

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from hardneg_bench import __version__
from hardneg_bench.cli import app

COMMANDS = [[], ["run"], ["reproduce"], ["report"], ["bench"], ["published"], ["list"], ["export"], ["evaluate"]]


def help_text(command: list[str]) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hardneg-bench")
def test_help_has_no_type_noise_beside_flags(command):
    """A flag takes no value, so nothing stands beside it (typer 0.29 printed <bool> beside each,
    --help included); a repeatable option shows what one value is, not <list[str]>."""
    text = help_text(command)
    assert "<bool>" not in text and "list[" not in text
    flags = [line for line in text.splitlines() if re.search(r"--help\b|--no-\w", line)]
    assert flags
    for line in flags:  # the option names, then the help text straight away
        names = re.match(r"^│ (?:\*)?\s*--[\w-]+(\s+-\w)?(\s+--no-[\w-]+)?\s+(\S+)", line)  # * marks a required option
        assert names and not names.group(3).startswith("<"), line


def test_run_help_names_what_each_value_is():
    text = help_text(["run"])
    assert re.search(r"--set\s+-s\s+KEY=VALUE\s", text)
    assert re.search(r"--logger\s+\[none\|tensorboard\|wandb\]\s", text)


def test_version_names_the_package_and_torch_with_its_build():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"hardneg-bench {__version__} (torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()})"
