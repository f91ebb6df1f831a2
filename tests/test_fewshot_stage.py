"""Few-shot transfer as a run's stage: ``transfer: [DATASET:fewshot]`` names the domains; each (shots, head)
is one cached stage on the encoder's test-split features, its mean and 95% interval in the ledger,
and equal to the episodes computed directly from the same encoder and seed."""

import torch

from hardneg_bench.data.registry import get_dataset
from hardneg_bench.engine.batches import on_device
from hardneg_bench.evaluations.features import extract_features
from hardneg_bench.evaluations.fewshot import mean_and_ci95, nearest_mean_accuracy, sample_episodes
from hardneg_bench.engine.pretrain import ENCODER, load_encoder
from hardneg_bench.engine.runtime import Runtime, derive_seed
from hardneg_bench.pipeline import Pipeline
from hardneg_bench.recipes import resolve_config
from hardneg_bench.reports.run_report import results_frame
from hardneg_bench.store import RunStore

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
FAST = ["pretrain.epochs=1", "probe.epochs=2", "knn.k=5", "random_init_baseline=false", "transfer=[shapes-novel:fewshot]", "fewshot.shots=[1, 3]", "fewshot.episodes=50", "fewshot.queries=5"]


def test_fewshot_stages_match_a_direct_computation_and_are_cached(tmp_path):
    store = RunStore(tmp_path / "runs")
    cfg = resolve_config("simclr", "shapes", overrides=FAST)
    records = Pipeline(cfg, store, CPU, tmp_path / "data", False).run()
    fewshot = {(r["fewshot"]["shots"], r["fewshot"]["head"]): r for r in records if r["stage"] == "fewshot"}
    assert set(fewshot) == {(1, "nearest_mean"), (1, "logistic"), (3, "nearest_mean"), (3, "logistic")}

    pretraining = next(r for r in records if r["stage"] == "pretrain")
    spec = get_dataset("shapes-novel")
    encoder = load_encoder(store.stage_dir("pretrain", pretraining["key"]) / ENCODER, CPU.device)
    x, y = extract_features(encoder, on_device(spec.load("test", tmp_path / "data", False), CPU.device), spec, cfg.probe, CPU)
    episodes = sample_episodes(y, 5, 3, 5, 50, derive_seed(cfg.seed, "fewshot", "shapes-novel"))
    mean, ci95 = mean_and_ci95(nearest_mean_accuracy(x, episodes))
    assert abs(fewshot[3, "nearest_mean"]["metrics"]["test_accuracy"] - mean) < 1e-9
    assert abs(fewshot[3, "nearest_mean"]["metrics"]["ci95"] - ci95) < 1e-9
    assert fewshot[3, "nearest_mean"]["metrics"]["test_accuracy"] > fewshot[1, "nearest_mean"]["metrics"]["test_accuracy"] - 5  # more shots do not hurt much

    columns = set(results_frame(records)["column"])
    assert "5-way 3-shot nearest-mean -> shapes-novel" in columns and "5-way 1-shot logistic -> shapes-novel" in columns

    again = Pipeline(cfg, store, CPU, tmp_path / "data", False).run()
    assert sorted(r["key"] for r in again if r["stage"] == "fewshot") == sorted(r["key"] for r in fewshot.values())
    assert len([r for r in store.ledger() if r["stage"] == "fewshot"]) == 4  # nothing computed twice
