"""Ledger records of a paper table's runs, as the pipeline writes them, without training anything:
the pretraining, probe (or kNN) and random-init records of each cell and seed, with made-up
accuracies and per-epoch hardness diagnostics; for a detection table, one detection record per
trial in the agreed detection stage format, written out here field by field. Reports read only the
ledger, so these test them."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from hardneg_bench.config import config_key, to_dict
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


BOX = ("AP", "AP50", "AP75")
COCO_SIZES = ("APs", "APm", "APl")
TASK_METRICS = {"boxes": (), "masks": ("mask_AP", "mask_AP50", "mask_AP75"), "keypoints": ("keypoint_AP", "keypoint_AP50", "keypoint_AP75")}
"""What a detection record's metrics hold besides the box AP (the agreed format): COCO adds the
AP by object size, and masks or keypoints their own AP."""


def detection_records(seeded, encoder_key: str, label: dict, dataset: str, rng: random.Random, device: str, gaps: bool = False) -> tuple[list[dict], dict[str, dict[int, float]]]:
    """One detection record per trial of ``seeded.detection`` for the encoder ``encoder_key``,
    keyed as the agreed format says; and the values written, by metric then trial. With ``gaps``,
    some values are None (what pycocotools' -1 becomes) and are left out of the values."""
    detection = to_dict(seeded.detection, keyed=True)
    names = (*BOX, *(COCO_SIZES if dataset == "coco2017" else ()), *TASK_METRICS[seeded.detection.task])
    records, values = [], {}
    for trial in range(seeded.detection.trials):
        config = {"parent": encoder_key, "dataset": dataset, "seed": seeded.seed, "trial": trial, "detection": detection}
        metrics = {name: None if gaps and rng.random() < 0.15 else rng.uniform(30, 85) for name in names}
        for name, value in metrics.items():
            if value is not None:
                values.setdefault(name, {})[trial] = value
        metrics.update(test_accuracy=metrics["AP50"], iterations=100, seconds_per_iteration=rng.uniform(0.2, 0.4), device=device, processes=1)
        extra = {"trial": trial, "detector": seeded.detection.arch, "task": seeded.detection.task}
        records.append({"stage": "detection", "key": config_key(config), "parent": encoder_key, **label, "eval_dataset": dataset, **extra, "config": config, "metrics": metrics})
    return records, values


def detection_ledger(table, seeds: dict[str, int] | int, rng: random.Random, device: str, overrides: list[str] = ()) -> tuple[list[dict], dict, dict]:
    """Records of ``seeds`` finished seeds per row of detection ``table`` run with ``overrides``
    (pretraining, every trial's detection record, the random-init encoder's too, written once per
    key as the pipeline does; and records the report must ignore: a detection of another config),
    with some values None; and by (row label, column, metric) the (seed, value) pairs in (seed,
    trial) order: ours, and the random-init encoder's. A row of released weights only is never
    pretrained."""
    records, truth, floors = [], {}, {}
    written: dict[str, dict] = {}  # pretraining keys, and the first detection key of each random-init encoder with its values
    for row, column in table.cells():
        if row.released_only:
            continue
        cfg = table.cell_config(row, column, overrides=overrides)
        dataset = column.partition(":")[0]
        for seed in range(seeds if isinstance(seeds, int) else seeds[row.label]):
            seeded = replace(cfg, seed=seed)
            config, label = pretrain_stage(seeded)
            key = config_key(config)
            if key not in written:  # a pretraining shared by the table's columns is written once
                written[key] = {}
                records.append({"stage": "pretrain", "key": key, "parent": None, **label, "config": config, "metrics": {}})
            found, values = detection_records(seeded, key, label, dataset, rng, device, gaps=True)
            init_config, init_label = random_init_stage(seeded)
            init, init_values = detection_records(seeded, config_key(init_config), init_label, dataset, rng, device)
            if init[0]["key"] in written:  # another row's random-init encoder of the same architecture
                init, init_values = [], written[init[0]["key"]]
            else:
                written[init[0]["key"]] = init_values
                records.append({"stage": "pretrain", "key": config_key(init_config), "parent": None, **init_label, "config": init_config, "metrics": {}})
            other = replace(seeded, detection=replace(seeded.detection, lr=seeded.detection.lr * 2))
            ignored, _ = detection_records(other, key, label, dataset, rng, device)
            records += found + init + ignored
            for into, given in ((truth, values), (floors, init_values)):
                for name, by_trial in given.items():
                    into.setdefault((row.label, column, name), []).extend((seed, by_trial[t]) for t in sorted(by_trial))
    return records, truth, floors


def released_detection_records(table, row, column: str, seeds: int, rng: random.Random, device: str, overrides: list[str] = ()) -> tuple[list[dict], dict]:
    """``reproduce --checkpoints``'s records of ``row``'s released weights on ``column`` for
    ``seeds`` evaluation seeds (the checkpoint stage and each trial's detection), and by metric
    the (seed, value) pairs in (seed, trial) order."""
    weights = row.released[column]
    cfg = table.cell_config(row, column, overrides=overrides)
    checkpoint_key = config_key({"sha256": f"sha256 of {weights.file}", "format": weights.format, "normalization": "imagenet"})
    label = {"method": f"{weights.file} ({weights.format} weights)", "checkpoint": weights.file, "format": weights.format, "dataset": cfg.dataset, "backbone": cfg.model.backbone, "epochs": "released", "group": checkpoint_key, "runs_as": None}
    records, truth = [], {}
    for seed in range(seeds):
        records.append({"stage": "checkpoint", "key": checkpoint_key, "parent": None, **label, "seed": seed, "metrics": {}})
        found, values = detection_records(replace(cfg, seed=seed), checkpoint_key, {**label, "seed": seed}, column.partition(":")[0], rng, device)
        records += found
        for name, by_trial in values.items():
            truth.setdefault(name, []).extend((seed, by_trial[t]) for t in sorted(by_trial))
    return records, truth
