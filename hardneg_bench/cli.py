"""The ``hardneg-bench`` command line: thin wrappers over recipes, pipeline, store and report."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from tabulate import tabulate

from .config import ConfigError
from .paths import RUNS_ENV, default_data_root, default_runs_dir

def _plain_metavar(option) -> None:
    """In --help, nothing beside a flag and what one value is beside a repeatable option (typer
    0.29 prints ``<bool>`` and ``<list[str]>``)."""
    if option.metavar is None:
        if getattr(option, "is_flag", False):
            option.metavar = ""
        elif getattr(option, "multiple", False):
            option.metavar = "KEY=VALUE" if "--set" in option.opts else option.name.upper()


class _Command(typer.core.TyperCommand):
    """A command whose --help reads cleanly (:func:`_plain_metavar`), its own --help included."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _plain_metavar(param)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            _plain_metavar(option)
        return option


class _Group(typer.core.TyperGroup):
    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            _plain_metavar(option)
        return option


class _App(typer.Typer):
    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or _Command, **kwargs)


app = _App(
    cls=_Group,
    help="Reproduce the paper tables of hard-negative contrastive learning: pretrain, probe, transfer, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (logs, CI) is not cut to 80 columns: tables keep their full labels.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)


def _print_version(requested: bool) -> None:
    if requested:
        import platform

        import torch
        import torchvision

        from . import __version__

        # their own versions name their build (+cpu, +cu130); their package metadata does not
        console.print(f"hardneg-bench {__version__} (torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()})", highlight=False)
        raise typer.Exit()


@app.callback()
def _app_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the versions of hardneg-bench, torch and torchvision, and exit.", metavar=""),
) -> None:
    pass


def fail(message: str, code: int = 2) -> None:
    """Print one error line (under torchrun: process 0 alone; every process fails alike) and exit."""
    from .distributed import is_main

    if is_main():
        Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # a message's [..] is text
    raise typer.Exit(code)


RunsDir = typer.Option(None, "--runs-dir", help=f"Run store (default: ${RUNS_ENV} or ~/.cache/hardneg-bench/runs).", show_default=False)
Device = typer.Option("auto", help="auto, cpu, cuda or cuda:N (under torchrun: each process's cuda:LOCAL_RANK).")
Workers = typer.Option(min(8, os.cpu_count() or 1), help="DataLoader workers (image-folder datasets).")
Progress = typer.Option(True, "--progress/--no-progress", help="Show the pretraining's progress: a live bar on a terminal, one line per epoch in a log file.")
# checked by _data_root (one line), not by the option type
DataRoot = typer.Option(None, "--data-root", help="Dataset folder (default: $HARDNEG_BENCH_DATA or ~/.cache/hardneg-bench/data).", show_default=False, readable=False)
Compile = typer.Option(False, "--compile/--no-compile", help="torch.compile the encoders and heads (compiled once, at the first step).")
Logger = typer.Option("none", "--logger", metavar="[none|tensorboard|wandb]", help="Also log the pretraining's per-epoch scalars to TensorBoard or Weights & Biases (offline unless WANDB_MODE is set); installed with the extra of that name.")


def _guarded(work):
    """``work()``, with every way a run can end early turned into one line and its exit code:
    bad input 2, a diverged loss, an unwritable store or a stage busy in another process 1, a
    signal 128 + its number (after the checkpoint is saved)."""
    from .data.base import DatasetMissingError
    from .engine.preemption import Interrupted
    from .engine.pretrain import TrainingDiverged
    from .store import StageBusy, StoreError

    try:
        return work()
    except (ConfigError, DatasetMissingError) as err:
        fail(str(err))
    except (TrainingDiverged, StoreError, StageBusy) as err:
        fail(str(err), code=1)
    except Interrupted as err:
        fail(str(err), code=err.exit_code)


def _data_root(data_root: Optional[Path]) -> Path:
    """--data-root (checked: a readable folder), else the default."""
    if data_root is None:
        return default_data_root().expanduser()
    root = data_root.expanduser()
    if not root.is_dir():
        fail(f"--data-root {root} is not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        fail(f"--data-root {root} cannot be read (permission denied)")
    return root


def _runtime(device: str, workers: int, progress: bool, compile_: bool, logger: str = "none"):
    """Where the command runs; under torchrun this process joins the process group first."""
    from . import distributed
    from .engine.loggers import check_logger
    from .engine.runtime import Runtime, resolve_device

    check_logger(logger)
    return Runtime(distributed.init_from_env(resolve_device(device)), num_workers=workers, show_progress=progress, compile=compile_, logger=logger)


@app.command()
def run(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Method name (hardneg-bench list methods)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name (hardneg-bench list datasets)."),
    epochs: Optional[int] = typer.Option(None, help="Pretraining epochs (pretrain.epochs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pretraining batch size (pretrain.batch_size)."),
    backbone: Optional[str] = typer.Option(None, help="tiny, resnet18 or resnet50 (model.backbone)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (seed)."),
    device: str = Device,
    data_root: Optional[Path] = DataRoot,
    runs_dir: Optional[Path] = RunsDir,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of config keys, merged over the recipes."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key, e.g. --set pretrain.optimizer.lr=0.1 (repeatable)."),
    download: bool = typer.Option(True, "--download/--no-download", help="Download a missing CIFAR/STL-10 dataset into the data root."),
    workers: int = Workers,
    progress: bool = Progress,
    compile_: bool = Compile,
    logger: str = Logger,
) -> None:
    """Pretrain METHOD on DATASET, then linear probe, kNN and transfer; cached stages are skipped.
    Under torchrun every process pretrains on its share of each batch and process 0 evaluates."""
    from . import distributed
    from .pipeline import Pipeline
    from .recipes import cli_flags, resolve_config
    from .report import render, results_frame
    from .store import RunStore

    cfg = _guarded(lambda: resolve_config(method, dataset, config, cli_flags(epochs, batch_size, backbone, seed), set_))
    root = _data_root(data_root)
    runtime = _guarded(lambda: _runtime(device, workers, progress, compile_, logger))
    store = RunStore(runs_dir or default_runs_dir())
    records = _guarded(lambda: Pipeline(cfg, store, runtime, root, download).run())
    if distributed.is_main():
        console.print(render(results_frame(records), "table"))
        _emit(_stage_keys(cfg.method, records, store))


def _stage_keys(method: str, records: list[dict], store) -> str:
    """The key of every stage of the run (one column per encoder: the method's, random-init's) and
    the path of the pretrained encoder."""
    from .engine.pretrain import ENCODER

    methods = list(dict.fromkeys(r["method"] for r in records))
    rows: dict[str, dict[str, str]] = {}
    for r in records:
        stage = r["stage"] if r["stage"] != "transfer" else f"transfer -> {r['eval_dataset']}"
        rows.setdefault(stage, {})[r["method"]] = r["key"]
    table = tabulate([[stage, *(keys.get(m, "—") for m in methods)] for stage, keys in rows.items()], headers=["stage key", *methods], tablefmt="plain")
    encoder = next(r["key"] for r in records if r["stage"] == "pretrain" and r["method"] == method)
    return f"{table}\nencoder: {store.stage_dir('pretrain', encoder) / ENCODER}"


@app.command()
def bench(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Method name (hardneg-bench list methods)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name: its recipe, image size and split sizes."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pretraining batch size (pretrain.batch_size)."),
    backbone: Optional[str] = typer.Option(None, help="tiny, resnet18 or resnet50 (model.backbone)."),
    steps: int = typer.Option(20, "--steps", min=1, help="Timed steps per measurement."),
    warmup: int = typer.Option(5, "--warmup", min=1, help="Untimed steps first (compilation, cuDNN autotuning, workers starting)."),
    device: str = Device,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of config keys, merged over the recipes."),
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key, e.g. --set pretrain.precision=fp32 (repeatable)."),
    real_data: bool = typer.Option(False, "--real-data", help="Time on the dataset's files in the data root instead of random images of its shape."),
    data_root: Optional[Path] = DataRoot,
    reference: bool = typer.Option(True, "--reference/--no-reference", help="Also time the per-image PIL DataLoader pipeline."),
    probe_images: int = typer.Option(0, "--probe-images", min=0, help="Also time the fast linear probe on this many training images (CIFAR-10: 50000)."),
    peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops", help="The device's peak TFLOP/s for the model FLOP utilisation (known: H100, H200, A100 in bf16)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write every figure to this JSON file."),
    workers: int = Workers,
    compile_: bool = Compile,
) -> None:
    """Time training steps: images/s of the full pipeline, of the model alone on a batch already on
    the device (the ceiling) and of the reference PIL DataLoader pipeline, their ratios, and the
    model FLOP utilisation."""
    import json

    from .bench import bench as run_bench
    from .data.registry import get_dataset
    from .recipes import cli_flags, resolve_config
    from .store import atomic_write_text

    cfg = _guarded(lambda: resolve_config(method, dataset, config, cli_flags(None, batch_size, backbone, None), set_))
    root = _data_root(data_root)
    runtime = _guarded(lambda: _runtime(device, workers, False, compile_))
    spec = get_dataset(cfg.dataset)
    data = _guarded(lambda: spec.load(cfg.pretrain.split, root, False)) if real_data else None
    try:
        figures = run_bench(cfg, spec, runtime, steps, warmup, data, reference, probe_images, peak_tflops)
    except ValueError as err:
        fail(str(err))
    console.print(_bench_table(figures))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(figures, indent=1) + "\n")
        console.print(f"wrote {json_path}")


def _bench_table(f: dict) -> Table:
    title = f"{f['method']} on {f['dataset']} ({f['data']} images, {f['crop_size']} px), {f['backbone']}, batch {f['batch_size']}, {f['precision']}{', compiled' if f['compile'] else ''}: {f['device']}"
    table = Table("pipeline", "images/s", "ms / step", "waiting for data", "full / this", title=title)
    full = f["full"]["images_per_s"]
    for name, label in (("full", "full (data on the device, batched augmentation)"), ("model_only", "model only (one batch, already augmented)"), ("reference", f"reference (PIL, {f.get('reference', {}).get('workers')} workers)")):
        if name in f:
            r = f[name]
            table.add_row(label, f"{r['images_per_s']:,.0f}", f"{r['step_ms']:.1f}", f"{100 * r['data_wait_fraction']:.1f}%", f"{full / r['images_per_s']:.2f}x")
    if "reference_data_only" in f:
        table.add_row("reference data alone (no model)", f"{f['reference_data_only']['images_per_s']:,.0f}", "", "", "")
    mfu = "n/a (give --peak-tflops)" if f["mfu"] is None else f"{100 * f['mfu']:.1f}% of {f['peak_tflops']:g} TFLOP/s"
    table.caption = " · ".join(
        part
        for part in (
            f"{f['flops_per_image'] / 1e9:.2f} GFLOP per image, {f['achieved_tflops']:.3f} TFLOP/s, MFU {mfu}",
            f"augmentation {f['augment_ms_per_step']:.1f} ms per step" if f["augment_ms_per_step"] is not None else "",
            f"objective alone {f['objective_ms_per_step']:.1f} ms per step",
            f"epoch of {f['pretrain_images']:,} images: {f['epoch_seconds']:.1f} s" if f["epoch_seconds"] else "",
            f"fast probe ({f['probe_images'][0]:,} + {f['probe_images'][1]:,} images): {f['probe_seconds']:.1f} s" if "probe_seconds" in f else "",
        )
        if part
    )
    return table


PublishedFile = typer.Option(None, "--published", help="YAML file of published numbers merged over the built-in ones (by id).", show_default=False)


def _published(path: Optional[Path]):
    from .published import load_published

    if path is not None and not path.is_file():
        fail(f"--published {path} is not a file")
    return load_published(path)


def _emit(out) -> None:
    if isinstance(out, str):
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    else:
        console.print(out)


def _reproduce_command(table: str, seeds: int, overrides: List[str]) -> str:
    return " ".join([f"hardneg-bench reproduce {table} --seeds {seeds}", *(f"--set {o}" for o in overrides)])


@app.command()
def report(
    format: str = typer.Option("table", "--format", "-f", help="table, markdown, csv, latex or json."),
    table: List[str] = typer.Option([], "--table", "-t", help="Experiment table(s) to show (default: every table with results)."),
    runs: bool = typer.Option(False, "--runs", help="One row per run configuration instead of the paper tables."),
    diagnostics: bool = typer.Option(False, "--diagnostics", help="The hardness diagnostics of every pretraining (false-negative rate of the hardest negatives, their similarity) and a plot over epochs."),
    set_: List[str] = typer.Option([], "--set", "-s", help="The overrides the tables were reproduced with (reproduce --set)."),
    published: Optional[Path] = PublishedFile,
    write: bool = typer.Option(True, "--write/--no-write", help="Write results/<table>.md and its PNG chart for each table shown."),
    results_dir: Path = typer.Option(Path("results"), "--results-dir", help="Where --write puts the tables."),
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """The paper tables re-run so far (ours beside the published number and the delta), or with
    --runs every finished run; read from the ledger only. Without a table that has results, the
    runs are shown."""
    from .report import FORMATS, render, results_frame
    from .store import RunStore
    from .table_report import has_results, render_table, table_cells, write_results
    from .tables import load_table, table_names

    if format not in FORMATS:
        fail(f"unknown report format {format!r} (known: {', '.join(FORMATS)})")
    if diagnostics:
        _diagnostics_report(RunStore(runs_dir or default_runs_dir()).ledger(), format, results_dir if write else None)
        return
    try:
        records = list(RunStore(runs_dir or default_runs_dir()).ledger())
        shown = []
        if not runs:
            numbers = _published(published)
            for name in table or table_names():
                paper_table = load_table(name)
                cells = table_cells(paper_table, records, numbers, set_)
                if table or has_results(cells):
                    shown.append((paper_table, cells))
    except ConfigError as err:
        fail(str(err))
    if shown:
        for paper_table, cells in shown:
            _emit(render_table(paper_table, cells, format))
            if write:
                write_results(paper_table, cells, results_dir, _reproduce_command(paper_table.name, max((c.n for c in cells), default=1) or 1, set_))
        return
    frame = results_frame(records)
    if frame.empty:
        fail("no finished results in the run store yet: run `hardneg-bench run` first", code=1)
    _emit(render(frame, format))


def _diagnostics_report(ledger, format: str, results_dir: Optional[Path]) -> None:
    from .diagnostics_report import diagnostics_chart, diagnostics_frame, last_epoch_summary

    frame = diagnostics_frame(ledger)
    if frame.empty:
        fail("no pretraining in the run store logged hardness diagnostics (they need a labelled dataset)", code=1)
    summary = last_epoch_summary(frame)
    if format == "csv":
        _emit(frame.to_csv(index=False))
    elif format == "json":
        _emit(frame.to_json(orient="records", indent=1))
    elif format in ("markdown", "latex"):
        _emit(tabulate(summary, headers="keys", tablefmt="github" if format == "markdown" else "latex_booktabs", showindex=False, floatfmt=".3f"))
    else:
        table = Table(*summary.columns, title="Hardness diagnostics at the last epoch (mean over seeds)")
        for row in summary.itertuples(index=False):
            table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        diagnostics_chart(frame, results_dir / "diagnostics.png")
        Console(stderr=True).print(f"wrote {results_dir / 'diagnostics.png'}", highlight=False)


@app.command("published")
def published_(
    missing: bool = typer.Option(False, "--missing", help="Only the numbers that are not verified yet, and their count."),
    published: Optional[Path] = PublishedFile,
) -> None:
    """Every published number the reports compare against, with its source and protocol."""
    try:
        records = _published(published)
    except ConfigError as err:
        fail(str(err))
    shown = [r for r in records.values() if (r.value is None) == missing] if missing else list(records.values())
    out = Table("id", "paper", "table / row", "method", "dataset", "epochs", "metric", "protocol", "value", "source")
    for r in shown:
        value = "—" if r.value is None else f"{r.value:.2f}" + (f" ± {r.std}" if r.std is not None else "")
        protocol = f"{r.protocol.kind}, {r.protocol.mode}, {r.protocol.epoch} epoch"
        out.add_row(r.id, r.paper, f"{r.table} / {r.row}", r.method, r.dataset, str(r.epochs or "—"), r.metric, protocol, value, r.missing or r.source)
    console.print(out)
    count = sum(r.value is None for r in records.values())
    console.print(f"{count} of {len(records)} published numbers are missing (not verified yet)." if missing else f"{len(records)} published numbers, {count} of them missing.")


@app.command()
def reproduce(
    table: str = typer.Argument(..., help="Experiment table (hardneg-bench list experiments)."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Seeds per cell (0 .. N-1)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (cached or not, estimated cost) and run nothing."),
    device: str = Device,
    data_root: Optional[Path] = DataRoot,
    runs_dir: Optional[Path] = RunsDir,
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key in every row (repeatable)."),
    published: Optional[Path] = PublishedFile,
    results_dir: Path = typer.Option(Path("results"), "--results-dir", help="Where the table's markdown and PNG are written."),
    download: bool = typer.Option(True, "--download/--no-download", help="Download a missing CIFAR/STL-10 dataset into the data root."),
    workers: int = Workers,
    progress: bool = Progress,
    compile_: bool = Compile,
    logger: str = Logger,
) -> None:
    """Run every row of a paper table (cached stages are skipped), then report it beside the published numbers."""
    from . import distributed
    from .engine.runtime import device_name
    from .pipeline import Pipeline
    from .reproduce import plan
    from .store import RunStore
    from .table_report import render_table, table_cells, write_results
    from .tables import check_table, load_table

    store = RunStore(runs_dir or default_runs_dir())
    try:
        paper_table = load_table(table)
        numbers = _published(published)
        check_table(paper_table, numbers)
        runtime = _runtime(device, workers, progress, compile_, logger)
        torch_device = runtime.device
        planned = plan(paper_table, seeds, store, device_name(torch_device), set_)
    except ConfigError as err:
        fail(str(err))
    if dry_run:
        out = Table("row", "dataset", "seed", "status", "pretraining images", f"est. hours ({device_name(torch_device)})", title=f"{paper_table.name}: {paper_table.title}")
        for p in planned:
            hours = "—" if p.seconds is None else f"{p.seconds / 3600:.2f}"
            out.add_row(p.row.label, p.dataset, str(p.seed), p.status, f"{p.images:,}", hours)
        console.print(out)
        known = [p.seconds for p in planned if p.seconds is not None]
        unknown = sum(p.seconds is None for p in planned)
        console.print(f"{sum(p.status == 'cached' for p in planned)} of {len(planned)} runs cached; estimated {sum(known) / 3600:.2f} hours for the rest with a measured throughput"
                      + (f"; {unknown} without one (no comparable pretraining on this device in the ledger)" if unknown else ""))
        return
    root = _data_root(data_root)
    for p in planned:
        if p.status == "cached":
            continue
        console.print(f"[bold]{paper_table.name}[/]: {p.row.label} on {p.dataset}, seed {p.seed}")
        _guarded(lambda: Pipeline(p.cfg, store, runtime, root, download).run())
    if not distributed.is_main():
        return
    cells = table_cells(paper_table, store.ledger(), numbers, set_)
    _emit(render_table(paper_table, cells, "table"))
    for path in write_results(paper_table, cells, results_dir, _reproduce_command(paper_table.name, seeds, set_)):
        console.print(f"wrote {path}")


class ListWhat(str, Enum):
    methods = "methods"
    datasets = "datasets"
    experiments = "experiments"
    runs = "runs"


@app.command("list")
def list_(
    what: ListWhat = typer.Argument(..., help="methods, datasets, experiments or runs."),
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """List the registered methods, the datasets, the paper tables, or the finished stages in the run store."""
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
    elif what is ListWhat.experiments:
        from .published import load_published
        from .tables import load_table, table_names

        numbers = load_published()
        table = Table("experiment", "rows", "datasets", "cells", "published (missing)", "title")
        for name in table_names():
            t = load_table(name)
            ids = [row.published[d] for row, d in t.cells() if d in row.published]
            missing = sum(numbers[i].value is None for i in ids if i in numbers)
            table.add_row(name, str(len(t.rows)), ", ".join(t.datasets), str(len(t.rows) * len(t.datasets)), f"{len(ids) - missing} ({missing})", t.title)
    else:
        from .store import RunStore

        table = Table("stage", "key", "method", "dataset", "backbone", "epochs", "seed", "evaluated on", "accuracy", "finished")
        store = RunStore(runs_dir or default_runs_dir())
        for r in store.ledger():
            accuracy = r["metrics"].get("test_accuracy")
            table.add_row(r["stage"], r["key"], r["method"], r["dataset"], r["backbone"], str(r["epochs"]), str(r["seed"]), r.get("eval_dataset", "—"), f"{accuracy:.2f}" if accuracy is not None else "—", r["finished_at"])
        for r in store.ledger(failed=True):
            table.add_row(r["stage"], r["key"], r["method"], r["dataset"], r["backbone"], str(r["epochs"]), str(r["seed"]), "—", "[red]failed[/]", r["finished_at"])
    console.print(table)


def main() -> None:
    from . import distributed

    try:
        if distributed.is_main():
            app()
        else:  # under torchrun, process 0 alone shows a usage error (every process has the same)
            try:
                code = app(standalone_mode=False)
            except Exception as err:  # click's usage errors (typer may bundle its own click) carry their exit code
                code = getattr(err, "exit_code", None)
                if code is None:
                    raise
            sys.exit(code if isinstance(code, int) else 0)
    finally:
        distributed.shutdown()
