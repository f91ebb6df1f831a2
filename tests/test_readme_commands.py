"""Every command line of the README is accounted for: run here as written (CPU forms), run by a
named test, or unrunnable here for a reason the README itself gives (a GPU, a download, ImageNet,
Docker, Slurm), in which case its options still parse and its config still resolves. A command
added to the README without one of these fails this test."""

from __future__ import annotations

import importlib
import random
import re
import shlex
from pathlib import Path

import pytest
import typer

from hardneg_bench.cli import app
from hardneg_bench.recipes import resolve_config
from hardneg_bench.reports.tables import load_table

from fake_ledger import table_ledger, write_ledger
from inprocess_cli import invoke

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
COMMAND = re.compile(r"(hardneg-bench|pip|pytest|python|torchrun|srun|docker)\s|PYTHONPATH=")


def readme_commands() -> list[str]:
    """Each command line of the README's code blocks, continuation lines joined, comments cut."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split("  #")[0].strip()
            if COMMAND.match(line):
                lines.append(line)
    return lines


RUN_HERE = {
    "hardneg-bench reproduce ring-table1 --dry-run",
    "hardneg-bench reproduce moco-voc --dry-run",
    "hardneg-bench report",
    "hardneg-bench report --format markdown",
    "hardneg-bench report --table hcl-readme-stl10 --format latex",
}
"""Run below, as written, against a run store holding a paper table's (made-up) results."""

BY_TEST = {
    "pip install -e . && hardneg-bench run --method simclr --dataset shapes": "test_cli.test_quickstart_recipe_beats_random_init_by_ten_points",
    "pip install -e .": ".ci/run",
    "pip install -e '.[test]' && pytest": ".ci/run",
    "hardneg-bench bench --method simclr --dataset shapes --backbone tiny --batch-size 256 --device cpu": "test_bench.test_bench_command_prints_and_writes_consistent_figures",
    "PYTHONPATH=. python benchmarks/gpu_check.py --out gpu-check": "test_gpu_check.test_the_quick_check_runs_every_section_on_the_cpu_and_passes",
    "torchrun --standalone --nproc_per_node=2 -m hardneg_bench run --method simclr --dataset shapes --epochs 1": "test_distributed.test_the_readme_torchrun_command_runs_on_the_cpu",
    "hardneg-bench config --method hcl --dataset shapes --set method_params.beta=2": "test_provenance.test_the_readmes_config_list_and_published_lines_work_as_written",
    "hardneg-bench config --method ring --dataset cifar10 --format yaml > ring-cifar10.yaml": "test_provenance.test_the_readmes_config_list_and_published_lines_work_as_written",
    "hardneg-bench list experiments": "test_provenance.test_the_readmes_config_list_and_published_lines_work_as_written",
    "hardneg-bench published --missing": "test_provenance.test_the_readmes_config_list_and_published_lines_work_as_written",
    "hardneg-bench published --missing --template mine.yaml": "test_provenance.test_the_readmes_config_list_and_published_lines_work_as_written",
    "hardneg-bench export --method simclr --dataset cifar10 --backbone resnet18 --epochs 200 --out encoders": "test_export.test_the_readme_export_command_finds_the_pretraining_run_made",
}
"""Run by another test: in its CPU form where the README's needs more (the bench and GPU-check
tests give fewer steps and --device cpu --quick), else as written (the export test records the
pretraining it exports instead of training a ResNet-18 for 200 epochs)."""

CANNOT_RUN_HERE = {
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu": "download",
    "docker build -t hardneg-bench .": "docker",
    "hardneg-bench bench --method simclr --dataset cifar10 --backbone resnet18 --batch-size 512 --json simclr.json": "gpu",
    "torchrun --standalone --nproc_per_node=8 --no-python hardneg-bench run --method mochi --dataset imagenet100 --data-root /data": "gpu",
    "hardneg-bench run --method simclr --dataset cifar10 --backbone resnet18 --epochs 200": "gpu",
    "hardneg-bench run --method simclr --dataset stl10 --data-root /data --set pretrain.augment.crop_size=64": "gpu",
    "hardneg-bench run --method simclr --dataset imagenet100 --data-root /data --backbone resnet50 --batch-size 512": "gpu",
    "hardneg-bench reproduce hcl-readme-stl10 --seeds 3 --data-root /data": "gpu",
    "hardneg-bench evaluate --checkpoint moco_v2_800ep_pretrain.pth.tar --dataset imagenet --data-root /data": "released",
    "hardneg-bench reproduce hcl-readme-stl10 --checkpoints ~/weights --data-root /data": "released",
    "hardneg-bench evaluate --checkpoint moco_v2_800ep_pretrain.pth.tar --dataset imagenet --set 'transfer=[voc0712:detection]' --data-root /data": "released",
    "torchrun --standalone --nproc_per_node=8 --no-python hardneg-bench evaluate --checkpoint moco_v2_800ep_pretrain.pth.tar --dataset imagenet --set 'transfer=[voc0712:detection]' --data-root /data": "released",
}
"""Not run by any test; the README says why beside them (see REASONS)."""

REASONS = {
    "download": "(No test runs these two lines: they download.)",
    "docker": "The image has not been built in a session yet: no Docker engine runs on the machines used so far.",
    "gpu": "The commands that train on a paper dataset need its files and a GPU: the tests run their CPU forms",
    "slurm": "The tests run neither Slurm nor eight GPUs",
    "released": "The released weights cannot be downloaded here",
}


def classify(line: str) -> str:
    if line in RUN_HERE:
        return "run here"
    if line in BY_TEST:
        return "by test"
    if line in CANNOT_RUN_HERE or line.startswith(("docker run", "srun ")):
        return "cannot run here"
    if re.search(r"\[|\b(M|D|TABLE|KEY)\b", line):
        return "synopsis"
    return "unaccounted"


def test_every_readme_command_is_accounted_for():
    lines = readme_commands()
    assert len(lines) >= 30
    unaccounted = [line for line in lines if classify(line) == "unaccounted"]
    assert not unaccounted, "README commands no test accounts for:\n" + "\n".join(unaccounted)
    stale = (RUN_HERE | set(BY_TEST) | set(CANNOT_RUN_HERE)) - set(lines)
    assert not stale, f"listed here but no longer in the README: {stale}"


def test_the_named_tests_exist():
    for line, where in BY_TEST.items():
        if where == ".ci/run":
            assert "pip install -e '.[test]' && pytest" in (REPO / ".ci" / "run").read_text()
            continue
        module, function = where.split(".")
        assert callable(getattr(importlib.import_module(module), function)), (line, where)


def test_the_readme_says_why_a_command_cannot_run_here():
    for reason in {*CANNOT_RUN_HERE.values(), "docker", "slurm"}:
        assert REASONS[reason] in README, reason


def test_commands_that_cannot_run_here_still_parse_and_resolve():
    """The options of every hardneg-bench command the tests cannot run parse against the CLI, and
    its config resolves (a renamed option, a bad --set, an unknown method would fail here)."""
    command = typer.main.get_command(app)
    checked = 0
    for line in (*CANNOT_RUN_HERE, *(line for line in readme_commands() if line.startswith(("docker run", "srun ")))):
        words = shlex.split(line)
        if line.startswith(("pip", "docker build")):
            continue
        args = words[len(words) - words[::-1].index("hardneg-bench") :]  # after the last: the program (or image) name
        sub = command.commands[args[0]]
        context = sub.make_context(args[0], args[1:])
        if args[0] == "run":
            p = context.params
            flags = {k: v for k, v in (("pretrain", {"epochs": p["epochs"]} if p["epochs"] else None), ("model", {"backbone": p["backbone"]} if p["backbone"] else None)) if v}
            if p["batch_size"]:
                flags.setdefault("pretrain", {})["batch_size"] = p["batch_size"]
            resolve_config(p["method"], p["dataset"], flags=flags, overrides=list(p["set_"]))
        checked += 1
    assert checked >= 9


def test_synopses_name_only_options_their_command_has():
    command = typer.main.get_command(app)
    for line in (line for line in readme_commands() if classify(line) == "synopsis"):
        words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))
        sub = command.commands[words[1]]
        known = {opt for param in sub.params for opt in (*param.opts, *param.secondary_opts)}
        named = {w.rstrip(",") for w in words[2:] if w.startswith("--")}
        assert named <= known, (line, named - known)


@pytest.fixture
def store_with_results(tmp_path) -> Path:
    runs = tmp_path / "runs"
    records, _ = table_ledger(load_table("hcl-readme-stl10"), 2, random.Random(0))
    write_ledger(runs, records)
    return runs


@pytest.mark.parametrize("line", sorted(RUN_HERE))
def test_readme_commands_run_as_written(line, store_with_results, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    done = invoke(monkeypatch, *shlex.split(line)[1:], runs=store_with_results)
    assert done.exit_code == 0, (line, done.output)
    if line.startswith("hardneg-bench report"):  # the table's rows, with our made-up results
        assert all(row.label in done.stdout for row in load_table("hcl-readme-stl10").rows), (line, done.stdout[:800])
        assert "(2 seeds)" in done.stdout, (line, done.stdout[:800])
    else:  # a dry-run: the table it names, its plan's summary line, the datasets it looked for
        table = shlex.split(line)[2]
        assert table in done.stdout and "runs cached" in done.stdout and "Datasets under" in done.stdout, (line, done.stdout[:800])


def test_the_command_line_reference_names_every_option():
    """What `--help` lists, the README's command-line reference lists too (a --flag/--no-flag pair
    by either name)."""
    reference = README[README.index("## Command-line reference") : README.index("### Logs")]
    command = typer.main.get_command(app)
    for name, sub in command.commands.items():
        assert f"hardneg-bench {name}" in reference, name
        for param in sub.params:
            names = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--") and o != "--help"]
            assert not names or any(o in reference for o in names), (name, names)
