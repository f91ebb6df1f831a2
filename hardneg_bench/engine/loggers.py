"""Experiment loggers for a pretraining's per-epoch scalars (those of ``metrics.csv``): TensorBoard
or Weights & Biases, each an optional extra (``pip install 'hardneg-bench[tensorboard]'``,
``'hardneg-bench[wandb]'``).

A logger only mirrors what the run store keeps, so it is chosen at run time (``--logger``, a field
of :class:`~hardneg_bench.engine.runtime.Runtime`) and is no part of any stage's key. Process 0
alone logs. W&B runs offline (files only, nothing sent) unless ``WANDB_MODE`` says otherwise.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..config import ConfigError

LOGGERS = ("none", "tensorboard", "wandb")
WANDB_PROJECT = "hardneg-bench"
"""The W&B project unless ``WANDB_PROJECT`` names another."""


def check_logger(name: str) -> None:
    """A ConfigError unless ``name`` is a known logger whose package is installed."""
    if name not in LOGGERS:
        raise ConfigError(f"unknown logger {name!r} (known: {', '.join(LOGGERS)})")
    if name != "none" and importlib.util.find_spec(name) is None:
        raise ConfigError(f"--logger {name} needs the {name} package: pip install 'hardneg-bench[{name}]'")


class ScalarLogger:
    """Logs nothing (``--logger none``); the base of the loggers that do."""

    def __enter__(self) -> "ScalarLogger":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(failed=exc_type is not None)

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        pass

    def close(self, failed: bool = False) -> None:
        """``failed``: the pretraining stopped early (a diverged loss, a signal)."""


class TensorBoardLogger(ScalarLogger):
    """Event files in ``<run dir>/tensorboard/`` (``tensorboard --logdir <runs dir>/pretrain``)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, epoch)

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class WandbLogger(ScalarLogger):
    """A W&B run whose id is the stage key (a resumed pretraining continues it), with the run's
    resolved config; its files go to ``<run dir>/wandb/`` (``wandb sync`` uploads an offline run)."""

    def __init__(self, run_dir: Path, key: str, name: str, config: dict) -> None:
        import wandb

        mode = None if "WANDB_MODE" in os.environ else "offline"
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
            id=key,
            name=name,
            config=config,
            dir=str(run_dir),
            resume="allow",
            mode=mode,
            settings=wandb.Settings(console="off"),  # our stdout and stderr stay ours
        )

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        self.run.log(scalars, step=epoch)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)  # W&B marks a run that ended early as failed


def open_logger(name: str, run_dir: Path, key: str, label: str, config: dict) -> ScalarLogger:
    """The logger ``name`` for the pretraining stage ``key`` in ``run_dir``; ``label`` names it in W&B."""
    if name == "tensorboard":
        return TensorBoardLogger(run_dir)
    if name == "wandb":
        return WandbLogger(run_dir, key, label, config)
    return ScalarLogger()
