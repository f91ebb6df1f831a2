"""The live training display: epoch, step, loss, images/s and ETA in one rich progress bar."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def training_progress(enabled: bool) -> Progress:
    """A progress display whose task fields ``epoch``, ``loss`` and ``ips`` are shown beside the
    bar; disabled (silent) when ``enabled`` is false."""
    return Progress(
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
        disable=not enabled,
        transient=False,
    )
