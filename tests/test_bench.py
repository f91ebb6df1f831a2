"""`hardneg-bench bench`: the figures it prints and writes are what it measured, consistent with
each other, and its FLOP count agrees with an independent count of the model's forward pass."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hardneg_bench.bench import bench, objective_inputs, synthetic_images
from hardneg_bench.engine.batches import on_device, pretraining_batches
from hardneg_bench.engine.trainer import Trainer
from hardneg_bench.methods import METHODS
from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.engine.trainer import build_method
from hardneg_bench.recipes import resolve_config

from cli_runner import cli, files_under

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
SMALL = ["model.backbone=tiny", "pretrain.batch_size=16", "pretrain.precision=fp32"]


def forward_flops_per_view(cfg) -> float:
    """FLOPs of one image's embedding (backbone and projector), counted on the bare model."""
    spec = get_dataset(cfg.dataset)
    model = build_method(cfg, spec, 64).eval()
    with FlopCounterMode(display=False) as counter:
        model.embed(torch.zeros(4, 3, spec.image_size, spec.image_size))
    return counter.get_total_flops() / 4


def test_bench_command_prints_and_writes_consistent_figures(tmp_path):
    out = tmp_path / "bench.json"
    done = cli("bench", "--method", "simclr", "--dataset", "shapes", "--device", "cpu", "--workers", "0", "--steps", "2", "--rounds", "2", "--warmup", "1", "--probe-images", "64",
               "--peak-tflops", "0.5", "--json", str(out), *(a for s in SMALL for a in ("--set", s)), runs=tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    for label in ("full (data on the device", "model only", "reference (PIL, 0 workers)", "reference data alone", "range over 2 rounds", "GFLOP per image", "MFU"):
        assert label in done.stdout
    f = json.loads(out.read_text())
    sizes = get_dataset("shapes").split_sizes
    assert f["probe_images"] == [64, round(64 * sizes["test"] / sizes["train"])]
    assert (f["method"], f["dataset"], f["data"], f["batch_size"], f["precision"], f["device"].startswith("cpu"), f["rounds"]) == ("simclr", "shapes", "synthetic", 16, "fp32", True, 2)
    full, model_only, reference = (f[k]["images_per_s"] for k in ("full", "model_only", "reference"))
    assert f["ratios"] == pytest.approx({"full_over_model_only": full / model_only, "full_over_reference": full / reference})
    for timing in (f["full"], f["model_only"], f["reference"], f["reference_data_only"]):
        low, high = timing["images_per_s_range"]
        assert len(timing["rounds_images_per_s"]) == 2 and low == min(timing["rounds_images_per_s"]) and high == max(timing["rounds_images_per_s"])
        assert low <= timing["images_per_s"] <= high and timing["images_per_s"] in timing["rounds_images_per_s"]  # the median round's figure
    for timing in (f["full"], f["model_only"], f["reference"]):  # every figure of a measurement from its median round
        assert timing["step_ms"] == pytest.approx(1000 * 16 / timing["images_per_s"]) and 0 <= timing["data_wait_fraction"] < 1
        assert 0 <= timing["data_ms_per_step"] <= timing["step_ms"]
    assert f["augment_ms_per_step"] == f["full"]["data_ms_per_step"] > 0
    assert f["achieved_tflops"] == pytest.approx(f["flops_per_image"] * full / 1e12) and f["mfu"] == pytest.approx(f["achieved_tflops"] / 0.5)
    assert f["epoch_seconds"] == pytest.approx(5000 / full) and f["probe_seconds"] > 0 and f["objective_ms_per_step"] > 0
    assert f["objective_ms_range"][0] <= f["objective_ms_per_step"] <= f["objective_ms_range"][1]
    # two views, forward and backward: between 2x and 3x each view's forward FLOPs (the first
    # layer computes no input gradient; the objective adds a little)
    per_view = forward_flops_per_view(resolve_config("simclr", "shapes", overrides=SMALL))
    assert 2 * 2 * per_view <= f["flops_per_image"] <= 2 * 3 * per_view * 1.05
    # what it measured is kept in the run store, with the config it measured
    (kept,) = [json.loads(line) for line in (tmp_path / "runs" / "bench.jsonl").read_text().splitlines()]
    assert kept["full"] == f["full"] and kept["config"]["model"]["backbone"] == "tiny" and kept["config"]["pretrain"]["batch_size"] == 16
    assert "recorded in" in done.stdout and str(tmp_path / "runs" / "bench.jsonl") in done.stdout


def test_a_busy_patch_is_caught_by_the_rounds_and_cannot_make_augmentation_outlast_its_step(monkeypatch):
    """The machine turns busy halfway (every augmentation from the full pipeline's second round on
    takes 0.1 s longer), as when another job starts: the figures still agree with each other (the
    augmentation is part of the full step it was timed in, the ratios are the printed images/s'),
    and the spread of the full pipeline's rounds says the machine was busy."""
    import hardneg_bench.bench as bench_module
    from hardneg_bench.data.augment import BatchAugment

    calls, busy = {"time_steps": 0}, {"on": False}
    time_steps, augment = bench_module.time_steps, BatchAugment.__call__

    def counted(*args, **kwargs):
        calls["time_steps"] += 1
        busy["on"] = calls["time_steps"] > 4  # warm-up full, warm-up model only, round 1 of both
        return time_steps(*args, **kwargs)

    def slow(self, *args, **kwargs):
        if busy["on"]:
            time.sleep(0.1)
        return augment(self, *args, **kwargs)

    monkeypatch.setattr(bench_module, "time_steps", counted)
    monkeypatch.setattr(BatchAugment, "__call__", slow)
    f = bench(resolve_config("simclr", "shapes", overrides=SMALL), get_dataset("shapes"), CPU, steps=2, warmup=1, reference=False, rounds=3)
    views, steps = 2, 2
    assert calls["time_steps"] == 2 + 2 * 3
    # rounds 2 and 3 were slow, so the median round is a slow one: its data part holds the sleeps
    assert f["augment_ms_per_step"] == f["full"]["data_ms_per_step"] >= 1000 * 0.1 * views
    assert f["augment_ms_per_step"] <= f["full"]["step_ms"] == pytest.approx(1000 * 16 / f["full"]["images_per_s"])
    slowest_round = min(f["full"]["rounds_images_per_s"])
    assert f["full"]["images_per_s_range"][0] == slowest_round < f["full"]["images_per_s_range"][1]
    assert f["ratios"]["full_over_model_only"] == pytest.approx(f["full"]["images_per_s"] / f["model_only"]["images_per_s"])
    assert any(w.startswith("full pipeline:") and "the machine was busy" in w for w in f["warnings"]), f["warnings"]
    assert steps * 16 / slowest_round >= views * steps * 0.1  # (the slow rounds really slept)


@pytest.mark.parametrize("method,negatives", [("moco-v2", "queue_size"), ("ir", "n_negatives")])
def test_bench_times_queue_and_bank_methods(method, negatives):
    cfg = resolve_config(method, "shapes", overrides=SMALL)
    f = bench(cfg, get_dataset("shapes"), CPU, steps=2, warmup=1, reference=False, rounds=1)
    assert "reference" not in f and "reference_data_only" not in f and set(f["ratios"]) == {"full_over_model_only"} and f["mfu"] is None
    per_view = forward_flops_per_view(cfg)
    # the query view forward and backward (2-3x its forward); MoCo's key view forward only; the
    # objective: each anchor's dot products with its K + 1 candidates, forward and backward
    encoders = (2 * per_view, 3 * per_view) if method == "ir" else (3 * per_view, 4 * per_view)
    objective = 4 * cfg.model.projector_out_dim * (getattr(cfg.method_params, negatives) + 1)
    assert encoders[0] + objective * 0.95 <= f["flops_per_image"] <= (encoders[1] + objective) * 1.05


def test_bench_on_real_data_that_is_missing_fails_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "bench.json"
    done = cli("bench", "--method", "simclr", "--dataset", "cifar10", "--real-data", "--device", "cpu", "--json", str(out), runs=tmp_path / "runs", data=tmp_path / "data")
    assert done.returncode == 2 and "cifar10" in done.stderr.lower() and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and files_under(tmp_path) == set()


def test_synthetic_images_have_the_dataset_shape():
    spec = get_dataset("shapes")
    data = synthetic_images(spec, 5)
    assert data.images.shape == (5, 3, spec.image_size, spec.image_size) and data.images.dtype == torch.uint8
    assert int(data.labels.max()) < spec.num_classes


@pytest.mark.parametrize("method", sorted(METHODS))
def test_objective_inputs_are_what_the_objective_computes_on_in_float32(method):
    """Under bf16 autocast (here on the CPU) the objective is handed float32 embeddings and runs
    with autocast off; calling it on what was captured gives the step's loss."""
    cfg = resolve_config(method, "shapes", overrides=["model.backbone=tiny", "pretrain.batch_size=48", "pretrain.precision=bf16"])
    spec = get_dataset("shapes")
    trainer = Trainer.build(cfg, spec, 96, 1, CPU)
    batch = next(pretraining_batches(on_device(synthetic_images(spec, 48), CPU.device), cfg.pretrain.augment, spec, 48, CPU.device, 0, 0, trainer.model.views))
    args, autocast_on = objective_inputs(trainer, batch)
    embeddings = [a for a in args if torch.is_tensor(a) and a.is_floating_point() and a.requires_grad]
    assert trainer.amp_dtype == torch.bfloat16 and not autocast_on and embeddings
    assert all(a.dtype == torch.float32 for a in args if torch.is_tensor(a) and a.is_floating_point())
    torch.manual_seed(0)  # the objectives that draw negatives draw the same ones
    again = trainer.model.objective(*args)
    torch.manual_seed(0)
    assert torch.equal(again, trainer.model.objective(*args)) and again.dtype == torch.float32
