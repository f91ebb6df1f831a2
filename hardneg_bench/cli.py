"""The ``hardneg-bench`` command line: thin wrappers over recipes, pipeline, store and report."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .config import ConfigError
from .paths import RUNS_ENV, default_data_root, default_runs_dir

app = typer.Typer(
    help="Reproduce the paper tables of hard-negative contrastive learning: pretrain, probe, transfer, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (logs, CI) is not cut to 80 columns: tables keep their full labels.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


RunsDir = typer.Option(None, "--runs-dir", help=f"Run store (default: ${RUNS_ENV} or ~/.cache/hardneg-bench/runs).", show_default=False)


@app.command()
def run(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Method name (hardneg-bench list methods)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name (hardneg-bench list datasets)."),
    epochs: Optional[int] = typer.Option(None, help="Pretraining epochs (pretrain.epochs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pretraining batch size (pretrain.batch_size)."),
    backbone: Optional[str] = typer.Option(None, help="tiny, resnet18 or resnet50 (model.backbone)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (seed)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Dataset folder (default: $HARDNEG_BENCH_DATA or ~/.cache/hardneg-bench/data).", show_default=False),
    runs_dir: Optional[Path] = RunsDir,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of config keys, merged over the recipes."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key, e.g. --set pretrain.optimizer.lr=0.1 (repeatable)."),
    download: bool = typer.Option(True, "--download/--no-download", help="Download a missing CIFAR/STL-10 dataset into the data root."),
    workers: int = typer.Option(min(8, os.cpu_count() or 1), help="DataLoader workers (image-folder datasets)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the live progress bar."),
) -> None:
    """Pretrain METHOD on DATASET, then linear probe, kNN and transfer; cached stages are skipped."""
    from .data.base import DatasetMissingError
    from .engine.pretrain import TrainingDiverged
    from .engine.runtime import Runtime, resolve_device
    from .pipeline import Pipeline
    from .recipes import cli_flags, resolve_config
    from .report import render, results_frame
    from .store import RunStore

    try:
        cfg = resolve_config(method, dataset, config, cli_flags(epochs, batch_size, backbone, seed), set_)
        runtime = Runtime(resolve_device(device), num_workers=workers, show_progress=progress)
        root = (data_root or default_data_root()).expanduser()
        if data_root is not None and not root.is_dir():
            fail(f"--data-root {root} is not a folder")
        records = Pipeline(cfg, RunStore(runs_dir or default_runs_dir()), runtime, root, download).run()
    except (ConfigError, DatasetMissingError) as err:
        fail(str(err))
    except TrainingDiverged as err:
        fail(str(err), code=1)
    console.print(render(results_frame(records), "table"))


@app.command()
def report(
    format: str = typer.Option("table", "--format", "-f", help="table, markdown, csv, latex or json."),
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """Every finished result in the run store, one row per method configuration (read from the ledger only)."""
    from .report import FORMATS, render, results_frame
    from .store import RunStore

    if format not in FORMATS:
        fail(f"unknown report format {format!r} (known: {', '.join(FORMATS)})")
    frame = results_frame(RunStore(runs_dir or default_runs_dir()).ledger())
    if frame.empty:
        fail("no finished results in the run store yet: run `hardneg-bench run` first", code=1)
    out = render(frame, format)
    if isinstance(out, str):
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    else:
        console.print(out)


class ListWhat(str, Enum):
    methods = "methods"
    datasets = "datasets"
    runs = "runs"


@app.command("list")
def list_(
    what: ListWhat = typer.Argument(..., help="methods, datasets or runs."),
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """List the registered methods, the datasets, or the finished stages in the run store."""
    if what is ListWhat.methods:
        from .config import to_dict
        from .methods import METHODS

        table = Table("method", "parameters (defaults)", "description")
        for entry in METHODS.values():
            table.add_row(entry.name, ", ".join(f"{k}={v}" for k, v in to_dict(entry.params()).items()), entry.description)
    elif what is ListWhat.datasets:
        from .data.registry import DATASETS

        table = Table("dataset", "classes", "px", "pretrain / train / test", "transfer to", "source", "description")
        for spec in DATASETS.values():
            sizes = " / ".join(f"{spec.split_sizes[s]:,}" if s in spec.split_sizes else "?" for s in ("pretrain", "train", "test"))
            table.add_row(spec.name, str(spec.num_classes), str(spec.image_size), sizes, spec.transfer_target or "—", "built-in" if spec.builtin else "data root", spec.description)
    else:
        from .store import RunStore

        table = Table("stage", "key", "method", "dataset", "backbone", "epochs", "seed", "evaluated on", "accuracy", "finished")
        for r in RunStore(runs_dir or default_runs_dir()).ledger():
            accuracy = r["metrics"].get("test_accuracy")
            table.add_row(r["stage"], r["key"], r["method"], r["dataset"], r["backbone"], str(r["epochs"]), str(r["seed"]), r.get("eval_dataset", "—"), f"{accuracy:.2f}" if accuracy is not None else "—", r["finished_at"])
    console.print(table)


def main() -> None:
    app()
