"""Bad input, one case per row: exit code 2, one line naming the problem, before any work starts
and without writing anything (run store, data root, results). Run in-process, so the table
stays fast."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hardneg_bench.cli import app
from hardneg_bench.data.imagenet100 import class_list

RUN = ["run", "--method", "simclr", "--dataset", "shapes"]


def _set(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


CASES = [
    # config files and --set
    ("malformed YAML", ["run", "--config", "{inputs}/malformed.yaml"], "malformed.yaml"),
    ("config not a mapping", ["run", "--config", "{inputs}/list.yaml"], "list.yaml"),
    ("config file missing", ["run", "--config", "{inputs}/nope.yaml"], "nope.yaml"),
    ("--set without =", RUN + ["--set", "pretrain.epochs"], "--set expects key=value"),
    ("--set value not YAML", RUN + _set("pretrain.epochs=[1"), "is not valid YAML"),
    ("unknown key", RUN + _set("pretrain.epoch=3"), "unknown config key 'pretrain.epoch'"),
    ("unknown section", RUN + _set("nonsense.x=1"), "unknown config key 'nonsense'"),
    ("text for an integer", RUN + _set("pretrain.epochs=abc"), "pretrain.epochs"),
    ("fraction for an integer", RUN + _set("pretrain.batch_size=1.5"), "pretrain.batch_size"),
    ("not a boolean", RUN + _set("random_init_baseline=maybe"), "random_init_baseline"),
    ("zero epochs", RUN + ["--epochs", "0"], "pretrain.epochs"),
    ("negative epochs", RUN + _set("pretrain.epochs=-1"), "pretrain.epochs"),
    ("zero batch", RUN + ["--batch-size", "0"], "pretrain.batch_size"),
    ("batch larger than the dataset", RUN + ["--batch-size", "6000"], "larger than the 5000 pretrain images"),
    ("bn groups do not divide the batch", RUN + _set("model.bn_splits=3", "pretrain.batch_size=128"), "do not divide the batch"),
    ("zero bn groups", RUN + _set("model.bn_splits=0"), "model.bn_splits"),
    ("unknown precision", RUN + _set("pretrain.precision=fp8"), "pretrain.precision"),
    ("unknown optimizer", RUN + _set("pretrain.optimizer.name=rmsprop"), "pretrain.optimizer.name"),
    ("negative learning rate", RUN + _set("pretrain.optimizer.lr=-0.1"), "pretrain.optimizer.lr"),
    ("reversed crop scale", RUN + _set("pretrain.augment.crop_scale=[0.9, 0.1]"), "crop_scale"),
    ("unknown probe protocol", RUN + _set("probe.protocol=bogus"), "probe.protocol"),
    ("zero kNN neighbours", RUN + _set("knn.k=0"), "knn.k"),
    # method parameters
    ("zero temperature", RUN + _set("method_params.temperature=0"), "method_params.temperature"),
    ("tau_plus of 1", ["run", "--method", "dcl", "--dataset", "shapes"] + _set("method_params.tau_plus=1.0"), "method_params.tau_plus"),
    ("negative tau_plus", ["run", "--method", "hcl", "--dataset", "shapes"] + _set("method_params.tau_plus=-0.1"), "method_params.tau_plus"),
    ("ring inner of 1", ["run", "--method", "ring", "--dataset", "shapes"] + _set("method_params.inner=1.0"), "method_params.inner"),
    ("ring outer of 0", ["run", "--method", "ir-ring", "--dataset", "shapes"] + _set("method_params.outer=0"), "method_params.outer"),
    ("queue smaller than the batch", ["run", "--method", "moco-v2", "--dataset", "shapes"] + _set("method_params.queue_size=64", "pretrain.batch_size=128"), "queue_size"),
    # names
    ("no method", ["run", "--dataset", "shapes"], "both a method and a dataset"),
    ("unknown method", ["run", "--method", "nope", "--dataset", "shapes"], "unknown method 'nope'"),
    ("unknown dataset", ["run", "--method", "simclr", "--dataset", "nope"], "unknown dataset 'nope'"),
    ("unknown transfer dataset", RUN + _set("transfer=[nope]"), "unknown dataset 'nope'"),
    ("unknown backbone", RUN + ["--backbone", "vit"], "unknown backbone 'vit'"),
    ("unknown device", RUN + ["--device", "tpu"], "unknown device 'tpu'"),
    ("CUDA without a GPU", RUN + ["--device", "cuda"], "CUDA is not available"),
    ("unknown experiment", ["reproduce", "nope"], "unknown experiment table 'nope'"),
    ("reproduce: unknown key", ["reproduce", "shapes", "--set", "pretrain.epoch=1"], "unknown config key 'pretrain.epoch'"),
    ("unknown report table", ["report", "--table", "nope"], "unknown experiment table 'nope'"),
    ("unknown report format", ["report", "--format", "pdf"], "unknown report format 'pdf'"),
    ("bench: unknown method", ["bench", "--method", "nope", "--dataset", "shapes"], "unknown method 'nope'"),
    # data
    ("data root missing", RUN + ["--data-root", "{inputs}/no-such-folder"], "is not a folder"),
    ("data root is a file", RUN + ["--data-root", "{inputs}/malformed.yaml"], "is not a folder"),
    ("dataset not downloaded", ["run", "--method", "simclr", "--dataset", "cifar10", "--no-download"], "cifar10 not found"),
    ("ImageNet folder missing classes", ["run", "--method", "simclr", "--dataset", "imagenet100", "--data-root", "{inputs}/partial-imagenet"], "97 of its 100 class folders are missing"),
    # published numbers
    ("published file missing", ["published", "--published", "{inputs}/nope.yaml"], "is not a file"),
    ("published record without a source", ["published", "--published", "{inputs}/bad-published.yaml"], "must name where the number was published"),
    ("published file without records", ["published", "--published", "{inputs}/not-records.yaml"], "not-records.yaml must hold a mapping of keys"),
]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "malformed.yaml").write_text("pretrain: [1, 2\n")
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    record = "\n".join(f"    {line}" for line in [
        "id: mine", "paper: Me", "table: '1'", "row: mine", "method: simclr", "dataset: cifar10", "backbone: resnet18", "epochs: 200",
        "metric: top-1", "protocol: {kind: linear, mode: offline, epoch: last}", "value: 90.0", "source: ''"])
    (folder / "bad-published.yaml").write_text("records:\n  -\n" + record + "\n")
    (folder / "not-records.yaml").write_text("- 1\n")
    for split in ("train", "val"):
        for wnid in class_list()[:3]:
            (folder / "partial-imagenet" / "imagenet" / split / wnid).mkdir(parents=True)
    return folder


def files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_dir()}


@pytest.mark.parametrize("name,args,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, inputs, name, args, fragment):
    monkeypatch.chdir(tmp_path)  # report would write results/ here
    runs, data = tmp_path / "runs", tmp_path / "data"
    before = files(tmp_path)
    args = [a.format(inputs=inputs) for a in args]
    result = CliRunner().invoke(app, args, env={"HARDNEG_BENCH_RUNS": str(runs), "HARDNEG_BENCH_DATA": str(data), "COLUMNS": "300"})
    assert result.exit_code == 2, (result.output, result.exception)
    message = [line for line in result.output.splitlines() if line.strip()]
    assert len(message) == 1 and fragment in message[0], result.output
    assert files(tmp_path) == before


def test_the_table_has_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


def test_an_unreadable_data_root_is_bad_input(tmp_path, monkeypatch):
    """(Permissions cannot be taken away from root, who runs CI, so the check's answer is faked.)"""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    access = os.access
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != tmp_path / "data" and access(path, mode))
    result = CliRunner().invoke(app, RUN + ["--data-root", str(tmp_path / "data")], env={"HARDNEG_BENCH_RUNS": str(tmp_path / "runs"), "COLUMNS": "300"})
    assert result.exit_code == 2 and result.output.strip() == f"error: --data-root {tmp_path / 'data'} cannot be read (permission denied)"
    assert not (tmp_path / "runs").exists()
