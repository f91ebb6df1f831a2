"""Runs whose settings switch their method's distinctive part off (MoCHi inside its warm-up, a ring
that keeps every negative, HCL at beta 0, DCL at tau+ 0, SSCL without synthetic negatives): the
rule on each parameter class names the method they train, checked against the objectives; the
ledger label records it, ``run`` says it, and every report marks the cell."""

from __future__ import annotations

import io
import json
import random

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fake_ledger import table_ledger, write_ledger
from hardneg_bench.cli import app
from hardneg_bench.config import config_key
from hardneg_bench.losses import _bank_terms, ring_negatives
from hardneg_bench.methods import METHODS, get_method
from hardneg_bench.methods.registry import runs_as
from hardneg_bench.models import EncoderSpec, build_encoder, projection_head
from hardneg_bench.pipeline import Pipeline, pretrain_stage
from hardneg_bench.recipes import resolve_config
from hardneg_bench.reports.tables import load_table


def make_method(name: str, **params):
    entry = get_method(name)
    spec = EncoderSpec("tiny", "auto", 16, lab_split=entry.cls.lab_split, input_mean=(0.5,) * 3, input_std=(0.25,) * 3)
    return entry.cls(build_encoder(spec), lambda d: projection_head(d, 32, 8, batchnorm=False), entry.params(**params), 32)


def objective(method, inputs):
    torch.manual_seed(7)  # the same random draws (MoCHi's and SSCL's mixes) for both methods
    return method.objective(*inputs)


def inputs_for(method):
    torch.manual_seed(3)
    if hasattr(method, "queue"):
        return torch.randn(4, 8), torch.randn(4, 8), method.queue
    return torch.randn(6, 8), torch.randn(6, 8)


QUEUE = dict(queue_size=64)
# (method, its parameters, epochs, the method it trains, that method's parameters as set by hand)
REDUCED = [
    ("mochi", dict(**QUEUE, n_hard=8, n_mix=4, n_mix_query=4, warmup_epochs=3), 3, "moco-v2", QUEUE),
    ("mochi", dict(**QUEUE, n_hard=8, n_mix=0, n_mix_query=0, warmup_epochs=0), 5, "moco-v2", QUEUE),
    ("ring", dict(**QUEUE, outer=1.0, inner=0.0), 5, "moco-v2", dict(**QUEUE, temperature=0.07)),
    ("ring", dict(**QUEUE, outer=0.1, inner=0.0, anneal_epochs=4), 1, "moco-v2", dict(**QUEUE, temperature=0.07)),  # the annealing starts at the whole queue
    ("ring", dict(**QUEUE, outer=1.0, inner=0.01), 5, "moco-v2", dict(**QUEUE, temperature=0.07)),  # int(0.01 * 64) = 0 keys left out
    ("hcl", dict(beta=0.0), 5, "dcl", {}),
    ("hcl", dict(beta=0.0, tau_plus=0.0), 5, "simclr", {}),
    ("dcl", dict(tau_plus=0.0), 5, "simclr", {}),
    ("sscl", dict(n_hard=4, n_synthetic=0), 5, "hcl", {}),
    ("sscl", dict(n_hard=4, n_synthetic=0, beta=0.0, tau_plus=0.0), 5, "simclr", {}),
]
# the same methods with their distinctive part in force in some epoch
DISTINCT = [
    ("mochi", dict(**QUEUE, n_hard=8, n_mix=4, n_mix_query=4, warmup_epochs=3), 4, "moco-v2", QUEUE),
    # epoch 1 of the annealing leaves the least similar keys out (at t = 1, so that they count)
    ("ring", dict(**QUEUE, outer=0.1, inner=0.0, anneal_epochs=4, temperature=1.0), 2, "moco-v2", dict(**QUEUE, temperature=1.0)),
    ("ring", dict(**QUEUE, outer=1.0, inner=0.02), 1, "moco-v2", dict(**QUEUE, temperature=0.07)),  # int(0.02 * 64) = 1 key left out
    ("hcl", dict(beta=0.5), 1, "dcl", {}),
    ("dcl", dict(tau_plus=0.1), 1, "simclr", {}),
    ("sscl", dict(n_hard=4, n_synthetic=1), 1, "hcl", {}),
]


@pytest.mark.parametrize("name,params,epochs,base,base_params", REDUCED)
def test_a_switched_off_method_computes_its_base_objective_in_every_epoch(name, params, epochs, base, base_params):
    torch.manual_seed(0)
    method = make_method(name, **params)
    torch.manual_seed(0)
    reference = make_method(base, **base_params)
    assert runs_as(name, method.params, epochs)[0] == base
    inputs = inputs_for(method)
    for epoch in range(epochs):
        method.on_epoch_start(epoch)
        assert torch.allclose(objective(method, inputs), objective(reference, inputs), atol=1e-6), epoch


@pytest.mark.parametrize("name,params,epochs,base,base_params", DISTINCT)
def test_a_method_in_force_is_not_marked_and_differs_from_its_base(name, params, epochs, base, base_params):
    method, reference = make_method(name, **params), make_method(base, **base_params)
    assert runs_as(name, method.params, epochs) is None
    method.on_epoch_start(epochs - 1)
    inputs = inputs_for(method)
    assert not torch.allclose(objective(method, inputs), objective(reference, inputs), atol=1e-4)


def test_a_ring_of_the_whole_bank_draws_from_every_entry():
    """IR-Ring and CMC-Ring draw their negatives from the ring's candidates, sorted by similarity:
    with outer 1 and inner 0 these are all the entries, so the loss is IR's (and each CMC term's)
    for the same draws of entries."""
    torch.manual_seed(1)
    z, bank, indices = torch.randn(4, 8), torch.nn.functional.normalize(torch.randn(32, 8), dim=1), torch.arange(4)
    logits = torch.nn.functional.normalize(z, dim=1) @ bank.T / 0.07
    picks = torch.randint(0, 32, (4, 16))
    order = logits.topk(32, dim=1).indices  # where the ring puts each entry
    whole_ring = _bank_terms(z, indices, bank, 0.07, 16, (1.0, 0.0), picks, None)
    assert torch.allclose(whole_ring, _bank_terms(z, indices, bank, 0.07, 16, None, order.gather(1, picks), None))
    assert ring_negatives(logits, 0.5, 0.0).shape[1] == 16  # a narrower ring leaves entries out
    for name, base in (("ir-ring", "ir"), ("cmc-ring", "cmc")):
        assert runs_as(name, get_method(name).params(outer=1.0, inner=0.0), 5)[0] == base
        assert runs_as(name, get_method(name).params(outer=1.0, inner=1e-9), 5) is None  # the bank size is not known to the rule: only inner 0 is certain
        assert runs_as(name, get_method(name).params(), 5) is None


def test_every_method_with_its_default_parameters_is_itself():
    for name, entry in METHODS.items():
        assert runs_as(name, entry.params(), 200) is None, name


def test_the_ledger_label_records_what_the_run_trains():
    inside = resolve_config("mochi", "shapes", flags={"pretrain": {"epochs": 3}})  # the shapes recipe warms up for 3 epochs
    label = pretrain_stage(inside)[1]
    assert label["runs_as"]["method"] == "moco-v2" and "3-epoch warm-up" in label["runs_as"]["why"]
    assert pretrain_stage(resolve_config("mochi", "shapes", flags={"pretrain": {"epochs": 4}}))[1]["runs_as"] is None


def test_run_says_so_before_training_and_marks_its_results(tmp_path, monkeypatch):
    def finished(self):  # the records a run of this config leaves, without training it
        config, label = pretrain_stage(self.cfg)
        return [
            {"stage": "pretrain", "key": config_key(config), "parent": None, **label, "metrics": {}},
            {"stage": "probe", "key": "p", "parent": config_key(config), **label, "eval_dataset": "shapes", "protocol": "fast", "metrics": {"test_accuracy": 42.0}},
        ]

    monkeypatch.setattr(Pipeline, "run", finished)
    env = {"HARDNEG_BENCH_RUNS": str(tmp_path), "COLUMNS": "250"}
    result = CliRunner().invoke(app, ["run", "--method", "mochi", "--dataset", "shapes", "--epochs", "2", "--device", "cpu"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    note = next(i for i, line in enumerate(lines) if line.startswith("note: this mochi run trains moco-v2's objective"))
    assert "3-epoch warm-up covers the whole 2-epoch run" in lines[note]
    assert note < next(i for i, line in enumerate(lines) if "hardneg-bench results" in line)  # said before the run's table
    assert "mochi ‡" in result.stdout and "‡ mochi on shapes, 2 epochs, trained as moco-v2" in result.stdout
    plain = CliRunner().invoke(app, ["run", "--method", "mochi", "--dataset", "shapes", "--epochs", "4", "--device", "cpu"], env=env)
    assert plain.exit_code == 0 and "note:" not in plain.stdout and "‡" not in plain.stdout


def test_every_report_marks_the_cells_of_such_runs(tmp_path):
    """The shapes table at one epoch: MoCHi is inside its 3-epoch warm-up there, every other row is
    itself."""
    runs = tmp_path / "runs"
    write_ledger(runs, table_ledger(load_table("shapes"), 1, random.Random(0), ["pretrain.epochs=1"])[0])

    def report(*args):
        result = CliRunner().invoke(app, ["report", *args, "--runs-dir", str(runs), "--no-write"], env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        return result.stdout

    table = ["--table", "shapes", "--set", "pretrain.epochs=1"]
    for shown in (report(*table), report(*table, "--format", "markdown")):
        marked = [line for line in shown.splitlines() if "‡" in line and "seed" in line]
        assert len(marked) == 1 and "MoCHi" in marked[0]
        assert "‡ MoCHi on shapes trained as moco-v2: its 3-epoch warm-up covers the whole 1-epoch run" in " ".join(shown.split())
    assert r"\ddag{}" in report(*table, "--format", "latex")
    for rows in (json.loads(report(*table, "--format", "json")), pd.read_csv(io.StringIO(report(*table, "--format", "csv"))).to_dict(orient="records")):
        assert {r["row"]: r["runs_as"] for r in rows if isinstance(r["runs_as"], str)} == {"MoCHi": "moco-v2"}
    for shown in (report("--runs"), report("--runs", "--format", "markdown")):
        assert [line.split()[1] for line in shown.splitlines() if "‡" in line and "seed" in line] == ["mochi"]
    assert {r["method"] for r in json.loads(report("--runs", "--format", "json")) if r["runs_as"] == "moco-v2"} == {"mochi"}
    diagnostics = report("--diagnostics", "--format", "markdown")
    assert [line.split("|")[1].strip() for line in diagnostics.splitlines() if "‡" in line] == ["mochi ‡ (as moco-v2)"]
