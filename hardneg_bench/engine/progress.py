"""What a pretraining shows while it runs, on stderr.

On a terminal: one live rich bar (epoch, step, loss, images/s, elapsed, ETA). Off a terminal (a
log file under Slurm or nohup, a pipe, CI) a live bar is drawn once, at the end, cut at 80
columns; there each finished epoch prints one plain line instead. Nothing with ``--no-progress``
and in the processes other than 0.
"""

from __future__ import annotations

import sys

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def clock(seconds: float) -> str:
    """``H:MM:SS``, as rich's bar shows times."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainingProgress:
    """Shows nothing; the live bar and the epoch lines below are the displays that show."""

    def __init__(self, name: str, epochs: int, steps: int) -> None:
        self.name, self.epochs, self.steps = name, epochs, steps

    def __enter__(self) -> "TrainingProgress":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, epoch: int, step: int) -> None:
        """The run starts (or resumes) at ``step`` of ``epoch`` (both counted from 0)."""

    def step(self, epoch: int, step: int, loss: torch.Tensor, images: int, seconds: float) -> None:
        """Step ``step`` of ``epoch`` is done: its loss, and the images and seconds of the epoch so far."""

    def epoch_done(self, history: list[dict]) -> None:
        """An epoch is done; ``history``: every epoch's entry so far (``metrics.csv``'s rows)."""


class LiveBar(TrainingProgress):
    """The rich bar; it reads the loss every 20 steps, the only host syncs in an epoch."""

    def __enter__(self) -> "LiveBar":
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start(self, epoch: int, step: int) -> None:
        self.task = self.bar.add_task(self.name, total=self.steps * self.epochs, completed=self.steps * epoch + step, epoch=f"{epoch}/{self.epochs}", loss="-", ips="-")

    def step(self, epoch: int, step: int, loss: torch.Tensor, images: int, seconds: float) -> None:
        self.bar.update(self.task, advance=1, epoch=f"{epoch + 1}/{self.epochs}")
        if step % 20 == 0 or step == self.steps - 1:
            self.bar.update(self.task, loss=f"{loss.item():.4f}", ips=f"{images / seconds:,.0f}")


class EpochLines(TrainingProgress):
    """One line per finished epoch: epoch, mean loss, learning rate, images/s, the pretraining's
    time so far (over every session of a resumed run) and the time left at its mean epoch time."""

    def epoch_done(self, history: list[dict]) -> None:
        last, elapsed = history[-1], sum(entry["seconds"] for entry in history)
        remaining = (self.epochs - last["epoch"]) * elapsed / len(history)
        print(
            f"{self.name} epoch {last['epoch']}/{self.epochs}  loss {last['loss']:.4f}  lr {last['lr']:.4g}  "
            f"{last['images_per_s']:,.0f} img/s  elapsed {clock(elapsed)}  ETA {clock(remaining)}",
            file=sys.stderr,
            flush=True,
        )


def training_progress(enabled: bool, name: str, epochs: int, steps: int) -> TrainingProgress:
    """The live bar on a terminal, epoch lines off one, nothing when not ``enabled``."""
    if not enabled:
        return TrainingProgress(name, epochs, steps)
    return (LiveBar if console.is_terminal else EpochLines)(name, epochs, steps)
