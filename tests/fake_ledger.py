"""Ledger records of a paper table's runs, as the pipeline writes them, without training anything:
the pretraining, probe (or kNN) and random-init records of each cell and seed, with made-up
accuracies and per-epoch hardness diagnostics. Reports read only the ledger, so these test them."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from hardneg_bench.config import config_key
from hardneg_bench.evaluations.linear import probe_stage
from hardneg_bench.evaluations.registry import EVALUATIONS
from hardneg_bench.pipeline import pretrain_stage, random_init_stage


def _evaluation(table, seeded, encoder_key: str, label: dict, dataset: str, accuracy: float) -> dict:
    """The record of the table's evaluation (its metric) of ``dataset``, as the pipeline stores it
    (a few-shot record with the half-width of its 95% interval)."""
    (stage,) = EVALUATIONS[table.metric].stages(seeded, encoder_key, dataset, table.transfer(dataset))
    metrics = {"test_accuracy": accuracy, **({"ci95": accuracy / 50} if table.metric == "fewshot" else {})}
    return {"stage": stage.stage, "key": config_key(stage.config), "parent": encoder_key, **label, "eval_dataset": dataset, **stage.label, "metrics": metrics}


def table_ledger(table, seeds: dict[str, int] | int, rng: random.Random, overrides: list[str] = (), noise: bool = False) -> tuple[list[dict], dict]:
    """Records of ``seeds`` finished seeds per row (a number for every row, or by row label) of
    ``table`` run with ``overrides``; and the truth: (row label, dataset) -> our accuracies.
    ``noise`` adds records the report must ignore (another probe setting, another configuration)."""
    records, truth = [], {}
    for row, dataset in table.cells():
        cfg = table.cell_config(row, dataset, overrides=overrides)
        epochs = cfg.pretrain.epochs
        for seed in range(seeds if isinstance(seeds, int) else seeds[row.label]):
            seeded = replace(cfg, seed=seed)
            config, label = pretrain_stage(seeded)
            key = config_key(config)
            diagnostics = [{"epoch": e + 1, "hardest_same_class": rng.uniform(0.05, 0.2), "hardest_similarity": rng.uniform(-0.5, 1.0), "chance_same_class": 0.1} for e in range(epochs)]
            records.append({"stage": "pretrain", "key": key, "parent": None, **label, "config": config, "metrics": {"diagnostics": diagnostics}})
            accuracy = rng.uniform(20, 90)
            records.append(_evaluation(table, seeded, key, label, dataset, accuracy))
            truth.setdefault((row.label, dataset), []).append(accuracy)
            init_config, init_label = random_init_stage(seeded)
            init_key = config_key(init_config)
            records.append({"stage": "pretrain", "key": init_key, "parent": None, **init_label, "config": init_config, "metrics": {}})
            records.append(_evaluation(table, seeded, init_key, init_label, dataset, rng.uniform(10, 20)))
            if noise:
                other_probe = replace(seeded, probe=replace(seeded.probe, epochs=seeded.probe.epochs + 1))
                records.append({"stage": "probe", "key": config_key(probe_stage(other_probe, key, dataset)), "parent": key, **label, "metrics": {"test_accuracy": 0.0}})
                other = replace(seeded, pretrain=replace(seeded.pretrain, epochs=seeded.pretrain.epochs + 1))
                other_config, other_label = pretrain_stage(other)
                records.append({"stage": "pretrain", "key": config_key(other_config), **other_label, "metrics": {}})
    return records, truth


def write_ledger(runs: Path, records: list[dict]) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    with (runs / "ledger.jsonl").open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
