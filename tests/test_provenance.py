"""Where each config key came from, before a run (`hardneg-bench config`) and after it (the keys a
finished run changed from its recipe, in `list runs`, the run report and `config --key`)."""

from __future__ import annotations

import re
import pandas as pd
import yaml

from inprocess_cli import invoke
from hardneg_bench.config import config_key, merge_layers
from hardneg_bench.evaluations.linear import probe_stage
from hardneg_bench.pipeline import pretrain_stage, random_init_stage
from hardneg_bench.recipes import experiments_dir, resolve_config
from hardneg_bench.store import RunStore


def test_merge_layers_names_the_layer_that_set_each_key():
    merged, sources = merge_layers([
        ("one", {"a": {"b": 1, "c": 2}, "x": [1, 2]}),
        ("two", {"a": {"c": 3}, "y": None}),
        ("three", {"a": None}),  # a leaf replacing a mapping takes its keys away
        ("four", {"a": {"d": 4}}),  # and a mapping over that leaf starts afresh
    ])
    assert merged == {"a": {"d": 4}, "x": [1, 2], "y": None}
    assert sources == {"a.d": "four", "x": "one", "y": "two"}


def yaml_comments(text: str) -> dict[str, str]:
    """``--format yaml``'s leaves: dotted key -> its comment (the source)."""
    found, path = {}, []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        key, _, rest = line.strip().partition(":")
        path = path[:depth] + [key]
        if "  # " in rest:
            found[".".join(path)] = rest.rsplit("  # ", 1)[1]
    return found


def test_config_prints_every_key_with_its_layer_and_reads_back_as_the_same_config(tmp_path, monkeypatch):
    user = tmp_path / "mine.yaml"
    user.write_text("pretrain:\n  epochs: 5\n  batch_size: 128\nprobe:\n  epochs: 7\n")
    args = ["--method", "hcl", "--dataset", "shapes", "--config", str(user), "--epochs", "3", "--set", "method_params.beta=2", "--set", "probe.epochs=9"]
    done = invoke(monkeypatch, "config", *args, "--format", "yaml", runs=tmp_path / "runs")
    assert done.exit_code == 0, done.output
    sources = yaml_comments(done.stdout)
    recipes = experiments_dir()
    # each source, checked against the recipe files themselves
    assert yaml.safe_load((recipes / "datasets" / "shapes.yaml").read_text())["model"]["backbone"] == "tiny"
    assert sources["model.backbone"] == "datasets/shapes.yaml"
    assert "stem" in yaml.safe_load((recipes / "methods" / "simclr.yaml").read_text())["common"]["model"]  # HCL extends SimCLR
    assert sources["model.stem"] == "methods/simclr.yaml common"
    assert sources["method_params.temperature"] == "methods/hcl.yaml common"
    assert sources["pretrain.optimizer.momentum"] == "default"  # no layer sets it
    assert sources["pretrain.batch_size"] == f"--config {user}"
    assert sources["pretrain.epochs"] == "command-line flag"  # --epochs over --config
    assert sources["probe.epochs"] == "--set probe.epochs=9"  # --set over --config
    assert sources["method_params.beta"] == "--set method_params.beta=2"
    assert (sources["method"], sources["dataset"]) == ("--method", "--dataset")
    # the printed config is the config: read back as a --config file it resolves to the same run
    printed = tmp_path / "printed.yaml"
    printed.write_text(done.stdout)
    again = resolve_config(config_file=printed)
    assert again == resolve_config("hcl", "shapes", user, {"pretrain": {"epochs": 3}}, ["method_params.beta=2", "probe.epochs=9"])
    assert (again.pretrain.epochs, again.pretrain.batch_size, again.probe.epochs, again.method_params.beta) == (3, 128, 9, 2.0)
    table = invoke(monkeypatch, "config", *args, runs=tmp_path / "runs").stdout
    assert re.search(r"method_params\.beta\s+│\s+2\.0\s+│\s+--set method_params\.beta=2", table)


def finish_run(store: RunStore, cfg, accuracy: float) -> str:
    """The ledger records a finished run of ``cfg`` leaves (pretraining, its probe, and the
    random-init baseline's), with the stage configs the pipeline builds; the pretraining key."""
    keys = []
    for config, label in (pretrain_stage(cfg), random_init_stage(cfg)):
        key = config_key(config)
        store.finish({"stage": "pretrain", "key": key, "parent": None, **label, "metrics": {}, "finished_at": "2026-01-01T00:00:00", "config": config})
        probe = probe_stage(cfg, key, cfg.dataset)
        store.finish({"stage": "probe", "key": config_key(probe), "parent": key, **label, "eval_dataset": cfg.dataset, "protocol": cfg.probe.protocol,
                      "metrics": {"test_accuracy": accuracy}, "finished_at": "2026-01-01T00:00:00", "config": probe})
        keys.append(key)
    return keys[0]


def test_runs_that_differ_from_their_recipe_say_how_in_list_runs_the_report_and_config_key(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    store = RunStore(runs)
    quick = ["pretrain.epochs=1", "probe.epochs=5"]
    finish_run(store, resolve_config("hcl", "shapes", overrides=quick), 20.0)
    beta_two = finish_run(store, resolve_config("hcl", "shapes", overrides=[*quick, "method_params.beta=2"]), 21.0)
    finish_run(store, resolve_config("cmc", "shapes", overrides=quick), 22.0)  # CMC's baseline: Lab streams

    report = markdown_frame(invoke(monkeypatch, "report", "--runs", "--format", "markdown", "--no-write", runs=runs).stdout)
    labels = sorted(report["method"])
    assert labels == sorted([
        "hcl (pretrain.epochs=1)",
        "hcl (method_params.beta=2.0, pretrain.epochs=1)",
        "cmc (pretrain.epochs=1)",
        "random-init",  # the tiny CNN, as both HCL runs build it: one baseline, no change from the plain encoder
        "random-init (encoder.width=0.5, encoder.lab_split=true)",  # CMC's half-width L and ab streams
    ]), labels
    assert "config" not in report.columns  # the labels tell every row apart: no hash needed
    assert dict(zip(report["method"], report["linear (fast)"]))["hcl (method_params.beta=2.0, pretrain.epochs=1)"] == "21.00 (1 seed)"

    listed = invoke(monkeypatch, "list", "runs", runs=runs).stdout
    assert listed.count("method_params.beta=2.0") == 2  # the pretraining and its probe
    assert "probe.epochs=5" in listed  # a probe's own change from the recipe

    shown = invoke(monkeypatch, "config", "--key", beta_two[:6], runs=runs)
    assert shown.exit_code == 0, shown.output
    assert re.search(r"method_params\.beta\s+│\s+2\.0\s+│\s+this run \(the recipe: 1\.0\)", shown.stdout)
    assert re.search(r"method_params\.temperature\s+│\s+0\.5\s+│\s+the recipe \(methods/hcl\.yaml common\)", shown.stdout)
    unknown = invoke(monkeypatch, "config", "--key", "ffffffff", runs=runs)
    assert unknown.exit_code == 2 and len(unknown.stderr.strip().splitlines()) == 1 and "ffffffff" in unknown.stderr


def markdown_frame(markdown: str) -> pd.DataFrame:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in markdown.splitlines() if line.startswith("|") and not line.startswith("|--")]
    return pd.DataFrame(rows[1:], columns=rows[0])


def test_list_methods_for_a_dataset_shows_each_methods_recipe_there(tmp_path, monkeypatch):
    done = invoke(monkeypatch, "list", "methods", "--dataset", "cifar10", runs=tmp_path / "runs")
    assert done.exit_code == 0, done.output
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("│") and line.split("│")[1].strip()}
    moco = yaml.safe_load((experiments_dir() / "methods" / "moco-v2.yaml").read_text())
    ring = yaml.safe_load((experiments_dir() / "methods" / "ring.yaml").read_text())
    # MoCo-v2 on CIFAR-10: the Ring code's MoCo baseline (K = 4096); Ring's own block: 65536
    assert f"queue_size={moco['datasets']['cifar10']['method_params']['queue_size']}" in rows["moco-v2"]
    assert f"queue_size={ring['datasets']['cifar10']['method_params']['queue_size']}" in rows["ring"]
    defaults = invoke(monkeypatch, "list", "methods", runs=tmp_path / "runs").stdout
    assert "queue_size=65536" in [line for line in defaults.splitlines() if line.startswith("│ moco-v2")][0]  # the dataclass default


def test_bad_input_to_config_and_list_methods_is_one_line_and_exit_2(tmp_path, monkeypatch):
    for args, fragment in (
        (["config", "--method", "nope", "--dataset", "shapes"], "unknown method 'nope'"),
        (["config", "--dataset", "shapes"], "both a method and a dataset are needed"),
        (["config", "--method", "hcl", "--dataset", "shapes", "--set", "pretrain.epoch=1"], "unknown config key 'pretrain.epoch'"),
        (["list", "methods", "--dataset", "nope"], "unknown dataset 'nope'"),
    ):
        done = invoke(monkeypatch, *args, runs=tmp_path / "runs")
        assert done.exit_code == 2 and len(done.stderr.strip().splitlines()) == 1 and fragment in done.stderr, (args, done.output)
    assert not (tmp_path / "runs").exists()


def test_the_readmes_config_list_and_published_lines_work_as_written(tmp_path, monkeypatch):
    """Every `hardneg-bench config|list|published` line of the README's shell blocks, as written
    (a `> FILE` redirection checked as the output it would write)."""
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    lines = [line for line in lines if re.match(r"hardneg-bench (config|list|published)\b", line)]
    assert any(line.startswith("hardneg-bench config") for line in lines) and any("--template" in line for line in lines)
    monkeypatch.chdir(tmp_path)
    for line in lines:
        command, _, redirect = line.partition(">")
        done = invoke(monkeypatch, *shlex.split(command)[1:], runs=tmp_path / "runs")
        assert done.exit_code == 0, (line, done.output)
        if redirect.strip():  # `config ... --format yaml > FILE`: FILE is a --config giving that run
            Path(redirect.strip()).write_text(done.stdout)
            args = shlex.split(command)
            expected = resolve_config(args[args.index("--method") + 1], args[args.index("--dataset") + 1])
            assert resolve_config(config_file=Path(redirect.strip())) == expected
