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
Download = typer.Option(True, "--download/--no-download", help="Download a missing dataset into the data root (all but ImageNet; torchvision's URLs).")
Workers = typer.Option(min(8, os.cpu_count() or 1), help="DataLoader workers (image-folder datasets).")
Progress = typer.Option(True, "--progress/--no-progress", help="Show the pretraining's progress: a live bar on a terminal, one line per epoch in a log file.")
# checked by _data_root (one line), not by the option type
DataRoot = typer.Option(None, "--data-root", help="Dataset folder (default: $HARDNEG_BENCH_DATA or ~/.cache/hardneg-bench/data).", show_default=False, readable=False)
Compile = typer.Option(False, "--compile/--no-compile", help="torch.compile the encoders and heads (compiled once, at the first step).")
# the options every command that resolves a run's config shares (run, config, bench)
MethodName = typer.Option(None, "--method", "-m", help="Method name (hardneg-bench list methods).")
DatasetName = typer.Option(None, "--dataset", "-d", help="Dataset name (hardneg-bench list datasets).")
Epochs = typer.Option(None, help="Pretraining epochs (pretrain.epochs).")
BatchSize = typer.Option(None, "--batch-size", help="Pretraining batch size (pretrain.batch_size).")
Backbone = typer.Option(None, help="tiny, resnet18 or resnet50 (model.backbone).")
Seed = typer.Option(None, help="Random seed (seed).")
ConfigFile = typer.Option(None, "--config", "-c", help="YAML file of config keys, merged over the recipes.")
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
    method: Optional[str] = MethodName,
    dataset: Optional[str] = DatasetName,
    epochs: Optional[int] = Epochs,
    batch_size: Optional[int] = BatchSize,
    backbone: Optional[str] = Backbone,
    seed: Optional[int] = Seed,
    device: str = Device,
    data_root: Optional[Path] = DataRoot,
    runs_dir: Optional[Path] = RunsDir,
    config: Optional[Path] = ConfigFile,
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key, e.g. --set pretrain.optimizer.lr=0.1 (repeatable)."),
    download: bool = Download,
    workers: int = Workers,
    progress: bool = Progress,
    compile_: bool = Compile,
    logger: str = Logger,
) -> None:
    """Pretrain METHOD on DATASET, then linear probe, kNN and transfer; cached stages are skipped.
    Under torchrun every process pretrains on its share of each batch and fine-tunes the detection
    targets on its share; process 0 alone runs the other evaluations."""
    from . import distributed
    from .pipeline import Pipeline
    from .recipes import cli_flags, resolve_config
    from .reports.run_report import render, results_frame
    from .store import RunStore

    cfg = _guarded(lambda: resolve_config(method, dataset, config, cli_flags(epochs, batch_size, backbone, seed), set_))
    root = _data_root(data_root)
    runtime = _guarded(lambda: _runtime(device, workers, progress, compile_, logger))
    _say_runs_as(cfg)
    store = RunStore(runs_dir or default_runs_dir())
    records = _guarded(lambda: Pipeline(cfg, store, runtime, root, download).run())
    if distributed.is_main():
        console.print(render(results_frame(records), "table"))
        _emit(_stage_keys(cfg.method, records, store))


RECIPE_OF_FORMAT = {"moco": "moco-v2", "hcl": "hcl", "dcl": "dcl", "ring": "ring", "cmc": "cmc"}
"""Whose recipe gives the evaluation settings of a checkpoint of each format (unless --method)."""


@app.command()
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Encoder file: a released checkpoint (MoCo, HCL, DCL, Ring, CMC, solo-learn, torchvision) or an encoder.pt."),
    dataset: Optional[str] = DatasetName,
    format: Optional[str] = typer.Option(None, "--format", help="The checkpoint's format (default: detected from its keys)."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Whose recipe gives the probe and kNN settings (default: the format's code base, else simclr)."),
    seed: Optional[int] = Seed,
    device: str = Device,
    data_root: Optional[Path] = DataRoot,
    runs_dir: Optional[Path] = RunsDir,
    config: Optional[Path] = ConfigFile,
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key, e.g. --set probe.protocol=paper (repeatable)."),
    download: bool = Download,
    workers: int = Workers,
) -> None:
    """Linear probe, kNN and transfer of the encoder in a file, as for a pretraining: cached by
    the file's content, recorded in the ledger with its SHA-256, format and origin. Under torchrun
    every process fine-tunes the detection targets together and process 0 runs the rest."""
    from . import distributed
    from .checkpoints import read_checkpoint
    from .pipeline import Pipeline
    from .recipes import cli_flags, resolve_config
    from .reports.run_report import render, results_frame
    from .store import RunStore

    imported = _guarded(lambda: read_checkpoint(checkpoint, format))
    recipe = method or RECIPE_OF_FORMAT.get(imported.format, "simclr")
    cfg = _guarded(lambda: resolve_config(recipe, dataset, config, cli_flags(None, None, None, seed), set_))
    runtime = _guarded(lambda: _runtime(device, workers, False, False))
    store = RunStore(runs_dir or default_runs_dir())
    records = _guarded(lambda: Pipeline(cfg, store, runtime, _data_root(data_root), download).run_checkpoint(checkpoint, imported))
    if not distributed.is_main():
        return
    console.print(render(results_frame(records), "table"))
    _emit(f"evaluated {checkpoint} as {imported.format} weights (input normalisation {imported.normalization}) with {recipe}'s evaluation settings for {cfg.dataset}")


def _evaluate_released(paper_table, folder: Path, seeds: int, overrides: list[str], pipeline) -> None:
    """``reproduce --checkpoints``: every released-weights file the table lists that ``folder``
    holds, evaluated with its cell's settings; one line names the missing ones and where each is
    published (none found: exit 2)."""
    wanted = [(row, dataset, row.released[dataset]) for row, dataset in paper_table.cells() if dataset in row.released]
    if not wanted:
        fail(f"table {paper_table.name} lists no released weights")
    missing = [w for _, _, w in wanted if not (folder / w.file).is_file()]
    if missing:
        console.print(escape(f"missing in {folder}: " + "; ".join(f"{w.file} ({w.url})" for w in missing)), soft_wrap=True, highlight=False)
    if len(missing) == len(wanted):
        fail(f"none of the {len(wanted)} released weights of table {paper_table.name} is in {folder}")
    from .checkpoints import read_checkpoint

    for row, dataset, weights in wanted:
        if weights in missing:
            continue
        imported = _guarded(lambda: read_checkpoint(folder / weights.file, weights.format))
        for seed in range(seeds):
            console.print(f"[bold]{paper_table.name}[/]: {row.label} on {dataset}, released weights {weights.file}, seed {seed}")
            cfg = _guarded(lambda: paper_table.cell_config(row, dataset, seed, overrides))
            _guarded(lambda: pipeline(cfg).run_checkpoint(folder / weights.file, imported))


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
    method: Optional[str] = MethodName,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name: its recipe, image size and split sizes."),
    batch_size: Optional[int] = BatchSize,
    backbone: Optional[str] = Backbone,
    steps: int = typer.Option(10, "--steps", min=1, help="Timed steps per round of each measurement."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Rounds of each measurement, taking turns; the median round is reported with the range."),
    warmup: int = typer.Option(5, "--warmup", min=1, help="Untimed steps first (compilation, cuDNN autotuning, workers starting)."),
    device: str = Device,
    config: Optional[Path] = ConfigFile,
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key, e.g. --set pretrain.precision=fp32 (repeatable)."),
    real_data: bool = typer.Option(False, "--real-data", help="Time on the dataset's files in the data root instead of random images of its shape."),
    data_root: Optional[Path] = DataRoot,
    reference: bool = typer.Option(True, "--reference/--no-reference", help="Also time the per-image PIL DataLoader pipeline."),
    probe_images: int = typer.Option(0, "--probe-images", min=0, help="Also time the fast linear probe on this many training images (CIFAR-10: 50000)."),
    peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops", help="The device's peak TFLOP/s for the model FLOP utilisation (known: H100, H200, A100 in bf16)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write every figure to this JSON file."),
    runs_dir: Optional[Path] = RunsDir,
    workers: int = Workers,
    compile_: bool = Compile,
) -> None:
    """Time training steps: images/s of the full pipeline, of the model alone on a batch already on
    the device (the ceiling) and of the reference PIL DataLoader pipeline, their ratios, and the
    model FLOP utilisation; each the median of several rounds, with their range. The figures are
    kept in the run store (bench.jsonl), where `reproduce --dry-run` finds them."""
    import json

    from . import distributed
    from .bench import bench as run_bench
    from .data.registry import get_dataset
    from .pipeline import pretrain_stage
    from .recipes import cli_flags, resolve_config
    from .store import RunStore, atomic_write_text

    cfg = _guarded(lambda: resolve_config(method, dataset, config, cli_flags(None, batch_size, backbone, None), set_))
    root = _data_root(data_root)
    runtime = _guarded(lambda: _runtime(device, workers, False, compile_))
    spec = get_dataset(cfg.dataset)
    data = _guarded(lambda: spec.load(cfg.pretrain.split, root, False)) if real_data else None
    try:
        figures = run_bench(cfg, spec, runtime, steps, warmup, data, reference, probe_images, peak_tflops, rounds)
    except ValueError as err:
        fail(str(err))
    if not distributed.is_main():
        return
    console.print(_bench_table(figures))
    if figures["warnings"]:
        console.print("[bold yellow]warning:[/] these figures are not the machine's speed; rerun when it is idle, or with more --rounds:", highlight=False)
        for warning in figures["warnings"]:
            console.print(f"  {warning}", highlight=False, soft_wrap=True)
    if json_path is not None:
        _guarded(lambda: atomic_write_text(json_path, json.dumps(figures, indent=1) + "\n"))
        console.print(f"wrote {json_path}", highlight=False)
    store = RunStore(runs_dir or default_runs_dir())
    _guarded(lambda: store.append_bench({**figures, "config": pretrain_stage(cfg)[0]}))
    console.print(f"recorded in {store.bench_path} (reproduce --dry-run estimates from it)", highlight=False)


def _bench_table(f: dict) -> Table:
    title = f"{f['method']} on {f['dataset']} ({f['data']} images, {f['crop_size']} px), {f['backbone']}, batch {f['batch_size']}, {f['precision']}{', compiled' if f['compile'] else ''}: {f['device']}"
    table = Table("pipeline", "images/s", f"range over {f['rounds']} rounds", "ms / step", "of it: data", "waiting for data", "full / this", title=title)
    full = f["full"]["images_per_s"]
    for name, label in (("full", "full (data on the device, batched augmentation)"), ("model_only", "model only (one batch, already augmented)"), ("reference", f"reference (PIL, {f.get('reference', {}).get('workers')} workers)")):
        if name in f:
            r = f[name]
            low, high = r["images_per_s_range"]
            table.add_row(label, f"{r['images_per_s']:,.0f}", f"{low:,.0f} – {high:,.0f}", f"{r['step_ms']:.1f}", f"{r['data_ms_per_step']:.1f}", f"{100 * r['data_wait_fraction']:.1f}%", f"{full / r['images_per_s']:.2f}x")
    if "reference_data_only" in f:
        r = f["reference_data_only"]
        table.add_row("reference data alone (no model)", f"{r['images_per_s']:,.0f}", f"{r['images_per_s_range'][0]:,.0f} – {r['images_per_s_range'][1]:,.0f}", "", "", "", "")
    mfu = "n/a (give --peak-tflops)" if f["mfu"] is None else f"{100 * f['mfu']:.1f}% of {f['peak_tflops']:g} TFLOP/s"
    table.caption = " · ".join(
        part
        for part in (
            f"median round of {f['rounds']}, {f['steps']} steps each, the measurements taking turns",
            f"{f['flops_per_image'] / 1e9:.2f} GFLOP per image, {f['achieved_tflops']:.3f} TFLOP/s, MFU {mfu}",
            f"augmentation {f['augment_ms_per_step']:.1f} ms of the full step's {f['full']['step_ms']:.1f} ms" if f["augment_ms_per_step"] is not None else "",
            f"objective alone {f['objective_ms_per_step']:.1f} ms per step ({f['objective_ms_range'][0]:.1f} – {f['objective_ms_range'][1]:.1f})",
            f"epoch of {f['pretrain_images']:,} images: {f['epoch_seconds']:.1f} s" if f["epoch_seconds"] else "",
            f"fast probe ({f['probe_images'][0]:,} + {f['probe_images'][1]:,} images): {f['probe_seconds']:.1f} s" if "probe_seconds" in f else "",
        )
        if part
    )
    return table


PublishedFile = typer.Option(None, "--published", help="YAML file of published numbers merged over the built-in ones (by id).", show_default=False)


def _published(path: Optional[Path]):
    from .reports.published import load_published

    if path is not None and not path.is_file():
        fail(f"--published {path} is not a file")
    return load_published(path)


def _emit(out) -> None:
    if isinstance(out, str):
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    else:
        console.print(out)


def _say_runs_as(cfg) -> None:
    """One line before a run whose settings switch its method's distinctive part off."""
    from . import distributed
    from .pipeline import runs_as_label
    from .reports.run_report import runs_as_line

    found = runs_as_label(cfg)
    if found is not None and distributed.is_main():
        console.print(runs_as_line(cfg.method, found), highlight=False, soft_wrap=True)


ResultsDir = typer.Option(
    None, "--results-dir", help="Where the tables' markdown and PNG go (default: results/ in the run store; the repository's results/ only when named here).", show_default=False
)


def _results_dir(results_dir: Optional[Path], store) -> Path:
    return results_dir if results_dir is not None else store.root / "results"


def _write(writes, stream: Console) -> None:
    """Do ``writes()`` (results_files outcomes) and print one line for each: where it wrote, or
    why it kept the file there; a write that fails is one error line, exit 1."""
    from .store import StoreError

    try:
        outcomes = writes()
    except (StoreError, OSError) as err:
        fail(str(err), code=1)
    for outcome in outcomes:
        stream.print(outcome.message, highlight=False, soft_wrap=True)


@app.command()
def report(
    format: str = typer.Option("table", "--format", "-f", help="table, markdown, csv, latex or json."),
    table: List[str] = typer.Option([], "--table", "-t", help="Experiment table(s) to show (default: every table with results)."),
    runs: bool = typer.Option(False, "--runs", help="One row per run configuration instead of the paper tables."),
    diagnostics: bool = typer.Option(False, "--diagnostics", help="The hardness diagnostics of every pretraining (false-negative rate of the hardest negatives, their similarity) and a plot over epochs."),
    set_: List[str] = typer.Option([], "--set", "-s", help="The overrides the tables were reproduced with (reproduce --set)."),
    published: Optional[Path] = PublishedFile,
    write: bool = typer.Option(True, "--write/--no-write", help="Write <table>.md and its PNG chart for each table shown (the diagnostics plot with --diagnostics), never over a file that shows more results."),
    results_dir: Optional[Path] = ResultsDir,
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """The paper tables re-run so far (ours beside the published number and the delta), or with
    --runs every finished run; read from the ledger only. Without a table that has results, the
    runs are shown. Writes each table with results (and the diagnostics plot) under results/ in
    the run store, and says where on stderr."""
    from .reports.run_report import FORMATS, render, results_frame
    from .store import RunStore
    from .reports.table_report import has_results, render_table, table_cells, write_results
    from .reports.tables import load_table, table_names

    if format not in FORMATS:
        fail(f"unknown report format {format!r} (known: {', '.join(FORMATS)})")
    store = RunStore(runs_dir or default_runs_dir())
    out_dir = _results_dir(results_dir, store) if write else None
    if diagnostics:
        _diagnostics_report(store.ledger(), format, out_dir)
        return
    try:
        records = list(store.ledger())
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
            _emit(render_table(paper_table, cells, format, set_))
            if out_dir is not None:
                seeds = max((c.seed_count for c in cells), default=0) or 1
                _write(lambda: write_results(paper_table, cells, out_dir, seeds, set_), Console(stderr=True))
        return
    frame = results_frame(records)
    if frame.empty:
        fail("no finished results in the run store yet: run `hardneg-bench run` first", code=1)
    _emit(render(frame, format))


def _diagnostics_report(ledger, format: str, results_dir: Optional[Path]) -> None:
    from .reports.diagnostics import diagnostics_chart, diagnostics_frame, formatted, last_epoch_summary, pretrainings, rounded
    from .reports.run_report import json_records, latex_table
    from .reports.results_files import save_figure, write_unless_fewer

    frame = diagnostics_frame(ledger)
    if frame.empty:
        fail("no pretraining in the run store logged hardness diagnostics (they need a labelled dataset)", code=1)
    summary = formatted(last_epoch_summary(frame))
    if format == "csv":
        _emit(rounded(frame).to_csv(index=False))
    elif format == "json":
        _emit(json_records(rounded(frame)))
    elif format == "markdown":
        _emit(tabulate(summary, headers="keys", tablefmt="github", showindex=False, disable_numparse=True))
    elif format == "latex":
        _emit(latex_table(summary, ["method", "dataset", "backbone"]))
    else:
        table = Table(title="Hardness diagnostics at the last epoch (mean over seeds)")
        for name in summary.columns:
            table.add_column(name, justify="left" if name in ("method", "dataset", "backbone") else "right")
        for row in summary.itertuples(index=False):
            table.add_row(*row)
        console.print(table)
    if results_dir is not None:
        count = pretrainings(frame)
        _write(lambda: [write_unless_fewer(results_dir / "diagnostics.png", count, lambda path: save_figure(diagnostics_chart(frame), path, count))], Console(stderr=True))


@app.command("published")
def published_(
    missing: bool = typer.Option(False, "--missing", help="Only the numbers that are not verified yet, and their count."),
    format: str = typer.Option("table", "--format", "-f", help="table, markdown, csv or json."),
    template: Optional[Path] = typer.Option(None, "--template", help="Write the missing records to this new YAML file, to fill in from the papers and pass with --published (never written over an existing file).", show_default=False),
    published: Optional[Path] = PublishedFile,
) -> None:
    """Every published number the reports compare against, with its source and protocol; a
    missing one names the paper and table to read it from."""
    from .reports.published import FORMATS, render_published, template_text
    from .store import atomic_write_text

    if format not in FORMATS:
        fail(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    try:
        records = _published(published)
    except ConfigError as err:
        fail(str(err))
    absent = [r for r in records.values() if r.value is None]
    if template is not None:
        if template.exists():
            fail(f"--template {template} exists already; it is never written over: give a new file name")
        _guarded(lambda: atomic_write_text(template, template_text(absent, template)))
        Console(stderr=True).print(f"wrote the {len(absent)} missing records to {template}: fill in the values from the papers, then pass --published {template}", highlight=False, soft_wrap=True)
        return
    _emit(render_published(absent if missing else list(records.values()), format))
    if format == "table":
        count = len(absent)
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
    results_dir: Optional[Path] = ResultsDir,
    download: bool = Download,
    workers: int = Workers,
    progress: bool = Progress,
    compile_: bool = Compile,
    logger: str = Logger,
    checkpoints: Optional[Path] = typer.Option(None, "--checkpoints", file_okay=False, help="Instead of pretraining, evaluate the authors' released weights the table lists, found in this folder under the names its README gives."),
) -> None:
    """Run every row of a paper table (cached stages are skipped), then report it beside the published numbers."""
    from . import distributed
    from .engine.runtime import device_name
    from .pipeline import Pipeline
    from .reports.reproduce import RELEASED, plan
    from .store import RunStore
    from .reports.table_report import render_table, table_cells, write_results
    from .reports.tables import check_table, load_table

    store = RunStore(runs_dir or default_runs_dir())
    root = _data_root(data_root)
    try:
        paper_table = load_table(table)
        numbers = _published(published)
        check_table(paper_table, numbers)
        runtime = _runtime(device, workers, progress, compile_, logger)
        torch_device = runtime.device
        planned = plan(paper_table, seeds, store, device_name(torch_device), set_, root if dry_run else None)
    except ConfigError as err:
        fail(str(err))
    if dry_run:
        _print_plan(paper_table, planned, device_name(torch_device), device, root)
        return
    if checkpoints is not None:
        _evaluate_released(paper_table, checkpoints, seeds, set_, lambda cfg: Pipeline(cfg, store, runtime, root, download))
        planned = []
    for p in planned:
        if p.status in ("cached", RELEASED):  # released weights alone: evaluated with --checkpoints
            continue
        console.print(f"[bold]{paper_table.name}[/]: {p.row.label} on {p.dataset}, seed {p.seed}")
        _say_runs_as(p.cfg)
        _guarded(lambda: Pipeline(p.cfg, store, runtime, root, download).run())
    if not distributed.is_main():
        return
    cells = table_cells(paper_table, store.ledger(), numbers, set_)
    _emit(render_table(paper_table, cells, "table", set_))
    most = max([seeds, *(c.seed_count for c in cells)])  # earlier runs may have added seeds
    _write(lambda: write_results(paper_table, cells, _results_dir(results_dir, store), most, set_), console)


def _print_plan(paper_table, planned: list, device: str, device_option: str, data_root: Path) -> None:
    """The dry-run's table and what its estimates cover; unknown stays unknown."""
    from .reports.reproduce import GPU_CHECK_DETECTION, RELEASED, bench_command, dataset_presence, describe_detection, describe_key, throughput_key
    from .pipeline import pretrain_stage

    detection = paper_table.detection
    columns = ["row", "target" if paper_table.targets else "dataset", "seed", "status", "pretraining images", f"est. hours ({device})", "estimated from"]
    out = Table(*columns, *(["detection to run", f"est. detection hours ({device})", "detection estimated from"] if detection else []), title=f"{paper_table.name}: {paper_table.title}")
    for p in planned:
        images = "unknown" if p.images is None else f"{p.images:,}"
        if p.status == RELEASED:
            images, hours, source = "—", "—", "the authors' weights: reproduce --checkpoints DIR evaluates them"
        elif p.status == "shared":
            images = "(above)"
            hours, source = "—", "pretrained by its row's first cell above"
        elif p.status != "to run":
            hours, source = ("—", "cached") if p.status == "cached" else ("—", "pretrained" if detection else "pretrained; its evaluation is not estimated")
        elif p.images is None:
            hours, source = "unknown", f"{p.cfg.dataset}'s {p.cfg.pretrain.split} split is not counted: not found in {data_root}"
        elif p.throughput is None:
            hours, source = "unknown", f"nothing measured for {describe_key(throughput_key(pretrain_stage(p.cfg)[0]))} on this device"
        else:
            hours, source = f"{p.seconds / 3600:.2f}", p.throughput.source
        out.add_row(p.row.label, p.dataset, str(p.seed), p.status, images, hours, source, *(_detection_plan(p.detection, describe_detection) if detection else []))
    console.print(out)
    presence = dataset_presence(paper_table, data_root)
    present = [f.dataset for f in presence if f.present]
    console.print(f"Datasets under {data_root}: {len(present)} of {len(presence)} present" + (f" ({', '.join(present)})" if present else ""), highlight=False, soft_wrap=True)
    for f in presence:
        if not f.present:
            console.print(f"  absent: {f.detail}", highlight=False, soft_wrap=True)
    pretrainable = [p for p in planned if p.status != RELEASED]
    to_run = [p for p in pretrainable if p.status == "to run"]
    known = [p.seconds for p in to_run if p.seconds is not None]
    cached, pretrained, shared = (sum(p.status == status for p in pretrainable) for status in ("cached", "pretrained", "shared"))
    line = f"{cached} of {len(pretrainable)} runs cached" + (f", {pretrained} pretrained (their evaluations to run)" if pretrained else "") + (f", {shared} on a pretraining planned above" if shared else "")
    if not to_run:
        line += "; nothing to pretrain"
    elif not known:
        line += f"; no estimate for the {len(to_run)} to run"
    elif len(known) == len(to_run):
        line += f"; estimated {sum(known) / 3600:.2f} hours of pretraining for the {len(to_run)} to run"
    else:
        line += f"; estimated {sum(known) / 3600:.2f} hours of pretraining for {len(known)} of the {len(to_run)} to run, the other {len(to_run) - len(known)} unknown (not in this total)"
    if detection:
        line += _detection_total([p.detection for p in pretrainable])
        released = [p.detection for p in planned if p.status == RELEASED]
        if released:
            line += _detection_total(released, " on the released weights (with reproduce --checkpoints DIR)")
    console.print(line + ".", highlight=False)
    uncounted = sorted({p.cfg.dataset for p in to_run if p.images is None})
    if uncounted:
        console.print(f"The pretraining split of {', '.join(uncounted)} is counted when its files are in the data root (--data-root).", highlight=False)
    unmeasured: dict = {}
    for p in to_run:
        if p.throughput is None:
            unmeasured.setdefault(throughput_key(pretrain_stage(p.cfg)[0]), p)  # the first row of each key
    if unmeasured:
        console.print("A run without a throughput gets one from a bench on this device, which the estimate then uses:", highlight=False)
        for p in unmeasured.values():
            console.print(f"  {bench_command(p, device_option)}", highlight=False, soft_wrap=True)
    untimed = sorted({describe_detection(p.detection.key) for p in planned if p.detection is not None and p.detection.trainings and p.detection.rate is None})
    if untimed:
        console.print(f"Nothing timed the {', '.join(untimed)} on this device: a finished detection stage in the ledger does, or `{GPU_CHECK_DETECTION}` on this machine.", highlight=False, soft_wrap=True)


def _detection_plan(work, describe) -> list[str]:
    """A planned run's detection columns: the fine-tunings to run, their hours and the source."""
    if not work.trainings:
        return ["—", "—", "cached"]
    runs = f"{work.trainings} × {work.iterations:,} it"
    if work.rate is None:
        return [runs, "unknown", f"nothing timed for the {describe(work.key)} on this device"]
    return [runs, f"{work.seconds / 3600:.2f}", f"{work.rate.seconds_per_iteration:.3f} s/it: {work.rate.source}"]


def _detection_total(works: list, where: str = "") -> str:
    """The summary of the detection fine-tunings of ``works``: how many, and the estimated hours
    of those that are timed."""
    todo = [w for w in works if w.trainings]
    count = sum(w.trainings for w in todo)
    if not count:
        return f"; no detection fine-tuning to run{where}"
    known = [w for w in todo if w.rate is not None]
    timed = sum(w.trainings for w in known)
    hours = sum(w.seconds for w in known) / 3600
    said = f"; {count} detection fine-tuning{'s' if count > 1 else ''} to run{where}: "
    if not known:
        return said + "no estimate"
    if timed == count:
        return said + f"estimated {hours:.2f} hours"
    return said + f"estimated {hours:.2f} hours for {timed}, the other {count - timed} unknown (not in this total)"


@app.command("export")
def export_(
    key: Optional[str] = typer.Option(None, "--key", "-k", help="A finished pretraining's key (or its start) from `list runs`.", show_default=False),
    method: Optional[str] = MethodName,
    dataset: Optional[str] = DatasetName,
    epochs: Optional[int] = Epochs,
    batch_size: Optional[int] = BatchSize,
    backbone: Optional[str] = Backbone,
    seed: Optional[int] = Seed,
    config: Optional[Path] = ConfigFile,
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key, as for run (repeatable)."),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder to write NAME.pth, NAME.safetensors and NAME.json into."),
    name: Optional[str] = typer.Option(None, "--name", help="File name stem (default: METHOD-DATASET-BACKBONE-KEY).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Write over files of the same names."),
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """Write a finished pretraining's encoder as a torchvision ResNet state dict (fc removed):
    NAME.pth, NAME.safetensors, and NAME.json with how to build the model that loads it and the
    input normalisation it was trained with. The pretraining is given by --key, or by --method and
    --dataset and the options of run. Trains nothing."""
    from .config import config_key
    from .export import ExportRefused, export, pretraining_by_key
    from .store import RunStore

    store = RunStore(runs_dir or default_runs_dir())
    if key is not None and (method is not None or dataset is not None):
        fail("give either --key or --method/--dataset, not both")
    if key is None and (method is None or dataset is None):
        fail("say which pretraining to export: --key KEY (hardneg-bench list runs), or --method M --dataset D with the options it was run with")
    if name is not None and (not name or "/" in name or name in (".", "..")):
        fail(f"--name {name!r} is not a file name")
    try:
        if key is not None:
            full = pretraining_by_key(store, key)
        else:
            from .pipeline import pretrain_stage
            from .recipes import cli_flags, resolve_config

            cfg = resolve_config(method, dataset, config, cli_flags(epochs, batch_size, backbone, seed), set_)
            full = config_key(pretrain_stage(cfg)[0])
            if not store.is_done("pretrain", full):
                state = "has not finished" if store.stage_dir("pretrain", full).is_dir() else "has not been run"
                fail(f"the pretraining of {cfg.method} on {cfg.dataset} with these options (key {full}) {state} in {store.root}: run `hardneg-bench run` with the same options first")
        done = _guarded(lambda: export(store, full, out, name, force))
    except (ExportRefused, ConfigError) as err:
        fail(str(err))
    for path in done.paths:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)


class ListWhat(str, Enum):
    methods = "methods"
    datasets = "datasets"
    experiments = "experiments"
    runs = "runs"


@app.command("list")
def list_(
    what: ListWhat = typer.Argument(..., help="methods, datasets, experiments or runs."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="With methods: each method's parameters and recipe on this dataset.", show_default=False),
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """List the registered methods, the datasets, the paper tables, or the finished stages in the run store."""
    if dataset is not None and what is not ListWhat.methods:
        fail("--dataset goes with `list methods` only")
    if what is ListWhat.methods:
        table = _methods_table(dataset)
    elif what is ListWhat.datasets:
        from .data.registry import DATASETS

        table = Table("dataset", "classes", "px", "pretrain / train / test", "transfer to", "source", "description")
        for spec in DATASETS.values():
            sizes = " / ".join(f"{spec.split_sizes[s]:,}" if s in spec.split_sizes else "counted at load" for s in ("pretrain", "train", "test"))
            table.add_row(spec.name, str(spec.num_classes), str(spec.image_size), sizes, spec.transfer_target or "—", "built-in" if spec.builtin else "data root", spec.description)
    elif what is ListWhat.experiments:
        from .reports.published import load_published
        from .reports.tables import load_table, table_names

        numbers = load_published()
        table = Table("experiment", "rows", "datasets", "cells", "published (missing)", "title")
        for name in table_names():
            t = load_table(name)
            ids = [i for row in t.rows for i in row.record_ids()]
            missing = sum(numbers[i].value is None for i in ids if i in numbers)
            datasets = f"{t.datasets[0]} -> {', '.join(t.targets)}" if t.targets else ", ".join(t.datasets)
            table.add_row(name, str(len(t.rows)), datasets, str(len(t.rows) * len(t.columns)), f"{len(ids) - missing} ({missing})", t.title)
    else:
        from .provenance import run_descriptions
        from .store import RunStore

        table = Table("stage", "key", "method", "dataset", "backbone", "epochs", "seed", "changed from the recipe", "evaluated on", "accuracy", "finished")
        store = RunStore(runs_dir or default_runs_dir())
        finished, failed = list(store.ledger()), list(store.ledger(failed=True))
        changes = run_descriptions([*finished, *failed])
        for r in finished:
            accuracy = r["metrics"].get("test_accuracy")
            table.add_row(r["stage"], r["key"], r["method"], r["dataset"], r["backbone"], str(r["epochs"]), str(r["seed"]), escape(changes.get(r["key"]) or "—"), r.get("eval_dataset", "—"), f"{accuracy:.2f}" if accuracy is not None else "—", r["finished_at"])
        for r in failed:
            table.add_row(r["stage"], r["key"], r["method"], r["dataset"], r["backbone"], str(r["epochs"]), str(r["seed"]), escape(changes.get(r["key"]) or "—"), "—", "[red]failed[/]", r["finished_at"])
    console.print(table)


def _methods_table(dataset: Optional[str]) -> Table:
    """Every method with its parameters: the dataclass defaults, or with a dataset the values its
    recipe gives there, and the main settings of that recipe."""
    from .config import to_dict
    from .methods import METHODS
    from .provenance import format_value
    from .recipes import resolve_config

    if dataset is None:
        table = Table("method", "parameters (defaults)", "description")
        for entry in METHODS.values():
            table.add_row(entry.name, ", ".join(f"{k}={format_value(v)}" for k, v in to_dict(entry.params()).items()), entry.description)
        return table
    table = Table("method", f"parameters on {dataset}", f"recipe on {dataset}", title=f"The methods as `run --dataset {dataset}` runs them (hardneg-bench config --method M --dataset {dataset}: every key and its source)")
    for entry in METHODS.values():
        try:
            cfg = resolve_config(entry.name, dataset)
        except ConfigError as err:
            fail(str(err))
        p, m = cfg.pretrain, cfg.model
        recipe = f"{m.backbone}, {p.epochs} epochs, batch {p.batch_size}, {p.optimizer.name} lr {format_value(p.optimizer.lr)}, {p.schedule.name} schedule" + (f", BatchNorm in {m.bn_splits} groups" if m.bn_splits > 1 else "")
        table.add_row(entry.name, ", ".join(f"{k}={format_value(v)}" for k, v in to_dict(cfg.method_params).items()), recipe)
    return table


class ConfigFormat(str, Enum):
    table = "table"
    yaml = "yaml"


@app.command("config")
def config_(
    method: Optional[str] = MethodName,
    dataset: Optional[str] = DatasetName,
    epochs: Optional[int] = Epochs,
    batch_size: Optional[int] = BatchSize,
    backbone: Optional[str] = Backbone,
    seed: Optional[int] = Seed,
    config: Optional[Path] = ConfigFile,
    set_: List[str] = typer.Option([], "--set", "-s", help="Override one config key (repeatable)."),
    key: Optional[str] = typer.Option(None, "--key", "-k", help="Instead: a finished stage's key (or its start) from `list runs`: its stored config beside the recipe's.", show_default=False),
    format: ConfigFormat = typer.Option(ConfigFormat.table, "--format", "-f", help="table, or yaml (with each key's source as a comment: a file --config reads)."),
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """The fully resolved config of `run` with the same options, each key with the layer that set
    it (default, a method or dataset recipe, --config, a flag, --set); with --key, a finished
    stage's config and the keys in which it differs from its recipe. Runs nothing."""
    if key is not None:
        _stage_config(key, format, runs_dir)
        return
    from .recipes import cli_flags, resolve

    resolved = _guarded(lambda: resolve(method, dataset, config, cli_flags(epochs, batch_size, backbone, seed), set_))
    _print_config(resolved.provenance(), format, f"{resolved.cfg.method} on {resolved.cfg.dataset}: the config `run` would use")


def _stage_config(key: str, format: "ConfigFormat", runs_dir: Optional[Path]) -> None:
    from .config import flatten, to_dict
    from .provenance import IDENTITY, differences, format_value, recipe
    from .store import RunStore

    store = RunStore(runs_dir or default_runs_dir())
    found = store.find(key)
    if len(found) != 1:
        fail(f"no finished stage has the key {key!r} in {store.root} (hardneg-bench list runs)" if not found else f"{len(found)} stages start with {key!r}: give more of the key")
    stage, full = found[0]
    record = store.read_result(stage, full)
    changed = differences(stage, record)
    resolved = recipe(record["method"], record["dataset"]) if record.get("method") else None
    rows = []
    for name, value in flatten(to_dict(record.get("config") or {})).items():
        if name in IDENTITY or changed is None:
            source = "" if name in IDENTITY else "no recipe to compare with"
        elif name in changed:
            source = f"this run (the recipe: {format_value(changed[name][1])})"
        else:
            source = f"the recipe ({resolved.sources.get(name, 'default')})" if resolved is not None and stage == "pretrain" else "the recipe"
        rows.append((name, value, source))
    _print_config(rows, format, f"{stage} stage {full} ({record.get('method')} on {record.get('dataset')}, seed {record.get('seed')})")


def _print_config(rows: list, format: "ConfigFormat", title: str) -> None:
    """(key, value, source) rows as a table, or as YAML with the sources as comments."""
    from .provenance import format_value

    if format is ConfigFormat.yaml:
        _emit(_commented_yaml(rows, title))
        return
    table = Table("key", "value", "set by", title=title)
    for name, value, source in rows:
        table.add_row(escape(name), escape(format_value(value)), escape(source))
    console.print(table)


def _commented_yaml(rows: list, title: str) -> str:
    """``rows`` of (dotted key, value, comment) as nested YAML, each leaf commented."""
    import yaml

    lines, opened = [f"# {title}"], []
    for name, value, comment in rows:
        *parents, leaf = name.split(".")
        common = next((i for i, (a, b) in enumerate(zip(opened, parents)) if a != b), min(len(opened), len(parents)))
        opened = opened[:common]
        for part in parents[common:]:
            lines.append(f"{'  ' * len(opened)}{part}:")
            opened.append(part)
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()
        lines.append(f"{'  ' * len(opened)}{leaf}: {text}" + (f"  # {comment}" if comment else ""))
    return "\n".join(lines)


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
