"""The detection stage (hardneg_bench/evaluations/detection.py, hardneg_bench/detection/train.py):
a detector on the stored encoder fine-tuned and tested on VOC files written here in the released
layout (bright squares on a dark background, read by the real loader), cached, resumed exactly
after a kill; its schedule, flips, precise BatchNorm and report columns against hand computations."""

from __future__ import annotations

import json
import math
import multiprocessing
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fake_ledger import write_ledger
from voc_squares import CPU, ENCODER_SETTINGS, detection_records, pipeline, squares_voc
from hardneg_bench import faults
from hardneg_bench.config import DETECTION_SCHEDULES, ConfigError, DetectionConfig, config_key, to_dict
from hardneg_bench.detection.datasets import detection_dataset
from hardneg_bench.detection.inference import evaluate_detector
from hardneg_bench.detection.loader import COCO_PERSON_KEYPOINT_FLIP, batch_plan, flip_item
from hardneg_bench.detection.models import COCO_MIN_SIZE_TRAIN, VOC_MIN_SIZE_TRAIN, build_detector, load_encoder
from hardneg_bench.detection.precise_bn import recompute_batchnorm
from hardneg_bench.detection.solver import lr_factor, parameter_groups
from hardneg_bench.detection.train import CHECKPOINT, DetectorTrainer
from hardneg_bench.engine.preemption import Interrupted
from hardneg_bench.engine.pretrain import ENCODER
from hardneg_bench.engine.runtime import device_name
from hardneg_bench.evaluations.detection import detector_spec
from hardneg_bench.evaluations.registry import EVALUATIONS
from hardneg_bench.pipeline import pretrain_stage
from hardneg_bench.recipes import resolve_config
from hardneg_bench.reports.reproduce import ledger_detection_key, ledger_figures
from hardneg_bench.reports.run_report import render, results_frame, summary
from hardneg_bench.store import RunStore, load_checkpoint, load_data

pytestmark = pytest.mark.usefixtures("one_thread")

LEARN = ["detection.image_size=48", "detection.batch_size=2", "detection.lr=0.06", "detection.iterations=100", "detection.precise_bn_iterations=8", "detection.trials=1"]


# --- the stage learns, and is cached ---------------------------------------------------------------


def test_the_stage_learns_the_squares_and_a_second_run_is_cached(tmp_path):
    data = squares_voc(tmp_path / "data", 4)
    first = pipeline(tmp_path / "runs", data, *LEARN)
    (record,) = detection_records(first)
    metrics = record["metrics"]
    assert record["stage"] == "detection" and (record["trial"], record["detector"], record["task"], record["eval_dataset"]) == (0, "c4", "boxes", "voc0712")
    assert record["config"] == {"parent": record["parent"], "dataset": "voc0712", "seed": 0, "trial": 0, "detection": to_dict(first.cfg.detection, keyed=True)}
    assert set(metrics) == {"AP", "AP50", "AP75", "test_accuracy", "iterations", "seconds_per_iteration", "device", "processes"}
    assert metrics["test_accuracy"] == metrics["AP50"] and metrics["iterations"] == 100
    # what the dry-run's estimate reads: this stage times the C4 box detector at batch 2 on this CPU
    assert (metrics["device"], metrics["processes"]) == (device_name(CPU.device), 1)
    rates = ledger_figures([record], device_name(CPU.device), "detection", "seconds_per_iteration", ledger_detection_key)
    assert rates == {("c4", "boxes", 2): [metrics["seconds_per_iteration"]]} and metrics["seconds_per_iteration"] > 0

    # the same detector before fine-tuning: built and initialised as the stage builds it
    cfg = first.cfg.detection
    encoder = load_data(first.store.stage_dir("pretrain", record["parent"]) / ENCODER, "cpu")
    torch.manual_seed(0)
    untrained = build_detector(detector_spec(cfg, 20, encoder["encoder"]["width"]))
    load_encoder(untrained, encoder["state_dict"])
    before = evaluate_detector(untrained, detection_dataset("voc0712", "test", data), CPU.device, None)["AP50"]
    # VOC's AP is the mean over its 20 classes; every square is a car, the other 19 have AP 0
    car, car_before = 20 * metrics["AP50"], 20 * before
    assert car > 80 and car > car_before + 60, (car_before, car, metrics)

    # every iteration's rate is the schedule's, computed here by hand: 100 iterations of voc-24k
    # have steps at 75 and 92 (18000 / 240, 22000 / 240 rounded), a warm-up of round(100 / 240) = 0
    state = load_checkpoint(first.store.stage_dir("detection", record["key"]) / CHECKPOINT, record["key"], torch.device("cpu"))
    assert state["iteration"] == 100 and state["precise_bn"] and "optimizer" not in state  # the fine-tuned detector
    expected = [0.06 * (1 if i < 75 else 0.1 if i < 92 else 0.01) for i in range(100)]
    assert [h["lr"] for h in state["history"]] == pytest.approx(expected, rel=1e-12)
    assert all(math.isfinite(h["loss"]) for h in state["history"])

    ledger = list(first.store.ledger())
    again = pipeline(tmp_path / "runs", data, *LEARN)
    assert detection_records(again) == [record] and list(again.store.ledger()) == ledger  # nothing recomputed


# --- killed, resumed exactly ---------------------------------------------------------------------

RESUME = ["detection.image_size=48", "detection.batch_size=2", "detection.iterations=6", "detection.checkpoint_every=2", "detection.precise_bn_iterations=2", "detection.trials=1"]


def _child(root: str, data: str, target: str) -> None:
    torch.set_num_threads(1)
    faults.arm(target)
    try:
        detection_records(pipeline(Path(root), Path(data), *RESUME))
    except Interrupted as err:
        sys.exit(err.exit_code)


def run_child(root: Path, data: Path, target: str = "") -> int:
    process = multiprocessing.get_context("fork").Process(target=_child, args=(str(root), str(data), target))
    process.start()
    process.join(120)
    return process.exitcode


def final_state(root: Path) -> tuple[dict, dict]:
    (record,) = [r for r in RunStore(root).ledger() if r["stage"] == "detection"]
    state = load_checkpoint(root / "detection" / record["key"] / CHECKPOINT, record["key"], torch.device("cpu"))
    return record, state


def test_stopped_and_killed_the_stage_resumes_to_the_uninterrupted_weights(tmp_path):
    data = squares_voc(tmp_path / "data", 4)
    assert run_child(tmp_path / "straight", data) == 0
    stopped = tmp_path / "stopped"
    assert run_child(stopped, data, "step:3:SIGTERM") == 143  # a checkpoint of iteration 3, off the every-2 grid
    (checkpoint,) = stopped.glob(f"detection/*/{CHECKPOINT}")
    assert load_checkpoint(checkpoint, checkpoint.parent.name, torch.device("cpu"))["iteration"] == 3
    assert run_child(stopped, data, "step:2") == -9  # SIGKILL after iteration 5: iteration 4's checkpoint stays
    assert load_checkpoint(checkpoint, checkpoint.parent.name, torch.device("cpu"))["iteration"] == 4
    assert run_child(stopped, data) == 0
    (straight, straight_state), (resumed, resumed_state) = final_state(tmp_path / "straight"), final_state(stopped)
    assert straight["key"] == resumed["key"] and resumed_state["iteration"] == 6 and resumed_state["precise_bn"]
    assert straight_state["model"].keys() == resumed_state["model"].keys()
    assert all(torch.equal(straight_state["model"][k], resumed_state["model"][k]) for k in straight_state["model"])
    assert [h["loss"] for h in straight_state["history"]] == [h["loss"] for h in resumed_state["history"]]
    same = ("AP", "AP50", "AP75", "iterations")
    assert {k: straight["metrics"][k] for k in same} == {k: resumed["metrics"][k] for k in same}


# --- the parts against hand computations -------------------------------------------------------------


def test_schedules_are_moco_configs_and_detectron2_warmup_by_hand():
    # facebookresearch/moco@132aea9 detection/configs/pascal_voc_R_50_C4_24k.yaml: MAX_ITER 24000,
    # STEPS (18000, 22000), WARMUP_ITERS 100, MIN_SIZE_TRAIN (480, ..., 800), MIN_SIZE_TEST 800;
    # coco_R_50_C4_2x.yaml: 180000, (120000, 160000); detectron2 Base-RCNN-C4.yaml (1x): 90000, (60000, 80000)
    voc, coco1, coco2 = (DETECTION_SCHEDULES[n] for n in ("voc-24k", "coco-1x", "coco-2x"))
    assert (voc.iterations, voc.steps, voc.warmup_iterations, voc.min_size_train, voc.min_size_test) == (24000, (18000, 22000), 100, VOC_MIN_SIZE_TRAIN, 800)
    assert (coco1.iterations, coco1.steps, coco1.warmup_iterations, coco1.min_size_train) == (90000, (60000, 80000), 1000, COCO_MIN_SIZE_TRAIN)
    assert (coco2.iterations, coco2.steps, coco2.warmup_iterations, coco2.min_size_train) == (180000, (120000, 160000), 1000, COCO_MIN_SIZE_TRAIN)
    defaults = DetectionConfig()
    assert (defaults.batch_size, defaults.lr, defaults.trials, defaults.precise_bn_iterations, defaults.schedule, defaults.arch) == (16, 0.02, 5, 200, "voc-24k", "c4")
    # warm-up: 0.001 + 0.999 * i / 100 (linear from WARMUP_FACTOR 1/1000), then x0.1 at each step
    hand = {0: 0.001, 1: 0.001 + 0.999 / 100, 50: 0.5005, 99: 0.001 + 0.999 * 0.99, 100: 1.0, 17999: 1.0, 18000: 0.1, 21999: 0.1, 22000: 0.01, 23999: 0.01}
    assert {i: lr_factor(i, voc) for i in hand} == pytest.approx(hand, rel=1e-12)
    short = replace(defaults, iterations=240).resolved_schedule()  # the same fractions of 240
    assert (short.iterations, short.steps, short.warmup_iterations) == (240, (180, 220), 1)
    assert [lr_factor(i, short) for i in (0, 1, 179, 180, 220)] == pytest.approx([0.001, 1.0, 1.0, 0.1, 0.01])
    tiny = replace(defaults, image_size=64).resolved_schedule()
    assert (tiny.min_size_train, tiny.min_size_test, tiny.max_size) == ((64,), 64, 64)


def test_flipping_mirrors_boxes_masks_and_swaps_keypoints_by_hand():
    image = torch.arange(2 * 10, dtype=torch.uint8).reshape(1, 2, 10).expand(3, 2, 10)
    masks = torch.zeros(1, 2, 10, dtype=torch.uint8)
    masks[0, :, 1:3] = 1  # columns 1 and 2 -> 7 and 8
    keypoints = torch.zeros(1, 17, 3)
    keypoints[0, 1] = torch.tensor([2.5, 1.5, 2])  # left eye at pixel 2 (detectron2's +0.5)
    keypoints[0, 2] = torch.tensor([7.5, 0.5, 1])  # right eye at pixel 7
    keypoints[0, 0] = torch.tensor([4.0, 1.0, 0])  # nose, unlabelled
    keypoints[0, 5] = torch.tensor([11.0, 1.0, 2])  # left shoulder outside the 10 px width
    target = {"boxes": torch.tensor([[1.0, 0.0, 3.0, 2.0]]), "labels": torch.tensor([3]), "masks": masks, "keypoints": keypoints, "difficult": torch.tensor([False]), "image_id": "x"}
    flipped_image, flipped = flip_item(image, target, True, COCO_PERSON_KEYPOINT_FLIP)
    assert set(flipped) == {"boxes", "labels", "masks", "keypoints"}
    assert torch.equal(flipped_image[0, 0], torch.tensor([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8))
    assert flipped["boxes"].tolist() == [[7.0, 0.0, 9.0, 2.0]]  # x -> 10 - x, corners sorted
    assert flipped["masks"][0, 0].nonzero().flatten().tolist() == [7, 8]
    k = flipped["keypoints"][0]
    assert k[1].tolist() == [2.5, 0.5, 1] and k[2].tolist() == [7.5, 1.5, 2]  # the eyes mirrored and swapped
    assert k[0].tolist() == [0, 0, 0] and k[6].tolist() == [0, 0, 0] and not k[5].any()  # unlabelled and outside: zero
    assert COCO_PERSON_KEYPOINT_FLIP == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    same_image, same = flip_item(image, target, False, COCO_PERSON_KEYPOINT_FLIP)
    assert torch.equal(same_image, image) and torch.equal(same["boxes"], target["boxes"]) and same["keypoints"][0, 5].tolist() == [0, 0, 0]


def test_batch_plan_groups_by_orientation_and_shares_one_stream_among_processes():
    # one orientation, one image per batch: the plan is detectron2's stream itself, a new
    # permutation of the images every pass, and process r of 2 takes its elements r, r + 2, ...
    flat = [batch[0] for _, batch in zip(range(40), batch_plan([True] * 10, 1, seed=7))]
    assert all(sorted(i for i, _ in flat[k : k + 10]) == list(range(10)) for k in (0, 10, 20, 30))
    assert [i for i, _ in flat[:10]] != [i for i, _ in flat[10:20]] and 5 <= sum(f for _, f in flat) <= 35
    halves = [[batch[0] for _, batch in zip(range(20), batch_plan([True] * 10, 1, seed=7, rank=r, world=2))] for r in (0, 1)]
    assert halves[0] == flat[0::2] and halves[1] == flat[1::2]
    # two orientations: each batch is one bucket's, handed out when it holds two, in stream order
    wide = [i % 3 == 0 for i in range(10)]
    grouped = [batch for _, batch in zip(range(10), batch_plan(wide, 2, seed=7))]
    buckets, expected = ([], []), []
    for placed in flat[:20]:  # the same seed: the same stream
        bucket = buckets[0 if wide[placed[0]] else 1]
        bucket.append(placed)
        if len(bucket) == 2:
            expected.append(bucket[:])
            bucket.clear()
    assert grouped[: len(expected)] == expected and all(len({wide[i] for i, _ in batch}) == 1 for batch in grouped)


def test_precise_batchnorm_is_the_mean_of_the_batch_statistics():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3)).train()
    batches = [torch.randn(4, 2, 5, 5) * (i + 1) for i in range(3)]
    assert recompute_batchnorm(net, batches, net) == 3
    features = [net[0](x).detach() for x in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    variance = torch.stack([f.transpose(0, 1).flatten(1).var(1, unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(net[1].running_mean, mean)
    torch.testing.assert_close(net[1].running_var, variance)
    assert net[1].momentum == 0.1


def test_no_weight_decay_on_normalisation_and_bf16_leaves_float32_losses():
    torch.manual_seed(0)
    spec = detector_spec(DetectionConfig(image_size=64), 20, 0.0625)
    detector = build_detector(spec)
    decayed, free = parameter_groups(detector)
    norms = {id(p) for m in detector.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters(recurse=False)}
    assert decayed["weight_decay"] == 1e-4 and free["weight_decay"] == 0.0
    assert {id(p) for p in free["params"]} == norms and len(decayed["params"]) + len(free["params"]) == len(list(detector.parameters()))
    trainer = DetectorTrainer.build(detector, 0.02, "bf16", torch.device("cpu"))
    seen = []
    trainer.model.backbone.conv1.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    image[:, 16:48, 16:48] = 230
    losses = trainer.step([(image, {"boxes": torch.tensor([[16.0, 16.0, 48.0, 48.0]]), "labels": torch.tensor([7])})] * 2, 0.02)
    assert seen == [torch.bfloat16] and all(v.dtype == torch.float32 and math.isfinite(v) for v in losses.values())


def test_an_encoder_other_than_a_resnet50_with_the_imagenet_stem_is_refused_in_one_line(tmp_path):
    data = squares_voc(tmp_path / "data", 2)
    p = pipeline(tmp_path / "runs", data, "model.backbone=resnet18", *LEARN)
    with pytest.raises(ConfigError) as err:
        detection_records(p)
    assert "\n" not in str(err.value) and "needs a ResNet-50 encoder with the ImageNet stem" in str(err.value) and "resnet18" in str(err.value)
    with pytest.raises(ConfigError, match="not a detection dataset"):
        pipeline(tmp_path / "runs", data, "transfer=[voc07:detection]").pretrained_encoder()
    with pytest.raises(ConfigError, match="has no masks annotations"):
        pipeline(tmp_path / "runs", data, "detection.task=masks").pretrained_encoder()


def test_a_batch_the_processes_cannot_share_is_refused_before_pretraining(tmp_path, monkeypatch):
    """Each process fine-tunes on an equal share of every batch (detectron2's
    ``IMS_PER_BATCH / world size``): 16 images among 3 processes is refused in one line before
    anything trains; among 2 it passes that check and fails, before pretraining too, on the missing
    VOC files (one line naming the archive)."""
    from hardneg_bench import distributed
    from hardneg_bench.data.base import DatasetMissingError

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ConfigError, match="detection.batch_size 16 cannot be shared equally among 3 processes") as err:
        pipeline(tmp_path / "runs", tmp_path / "data").pretrained_encoder()
    assert "\n" not in str(err.value) and not (tmp_path / "runs").exists()
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(DatasetMissingError, match="VOCtrainval_06-Nov-2007.tar") as err:
        pipeline(tmp_path / "runs", tmp_path / "data").pretrained_encoder()
    assert "\n" not in str(err.value) and not (tmp_path / "runs").exists()


def test_the_detection_field_leaves_other_stage_keys_alone():
    plain = resolve_config("simclr", "shapes")
    changed = replace(plain, detection=replace(plain.detection, trials=2, lr=0.5))
    assert pretrain_stage(plain) == pretrain_stage(changed)
    stages = EVALUATIONS["detection"].stages(changed, "enc", "voc0712", True)
    assert [s.config["trial"] for s in stages] == [0, 1] and len({config_key(s.config) for s in stages}) == 2


# --- the report --------------------------------------------------------------------------------


def test_report_columns_are_ap50_ap_ap75_over_trials(tmp_path):
    cfg = resolve_config("simclr", "shapes", overrides=ENCODER_SETTINGS)
    config, label = pretrain_stage(cfg)
    key = config_key(config)
    records = [{"stage": "pretrain", "key": key, "parent": None, **label, "config": config, "metrics": {"final_loss": 1.0}}]
    values = {}
    for trial in range(5):
        metrics = {"AP": 40.0 + trial, "AP50": 60.0 + 2 * trial, "AP75": 30.0 - trial, "iterations": 10, "seconds_per_iteration": 1.0}
        stage = EVALUATIONS["detection"].stages(cfg, key, "voc0712", True)[0].config | {"trial": trial}
        records.append({"stage": "detection", "key": config_key(stage), "parent": key, **label, "eval_dataset": "voc0712", "trial": trial, "detector": "c4", "task": "boxes", "config": stage, "metrics": {**metrics, "test_accuracy": metrics["AP50"]}})
        for name in ("AP", "AP50", "AP75"):
            values.setdefault(name, []).append(metrics[name])
    write_ledger(tmp_path / "runs", records)
    frame = results_frame(RunStore(tmp_path / "runs").ledger())
    cells = summary(frame).set_index("column")
    for name, numbers in values.items():
        column = f"{name} -> voc0712"
        assert cells.loc[column, "mean"] == round(statistics.fmean(numbers), 2) and cells.loc[column, "std"] == round(statistics.stdev(numbers), 2)
        assert cells.loc[column, "count"] == 5 and cells.loc[column, "trials"] == 5
    markdown = render(frame, "markdown")
    assert f"{statistics.fmean(values['AP50']):.2f} ± {statistics.stdev(values['AP50']):.2f} (5 trials)" in markdown
    assert "| AP -> voc0712" in markdown and "AP75 -> voc0712" in markdown and "[" not in markdown  # trials are no variants


# --- COCO's test path --------------------------------------------------------------------------


class Replay(torch.nn.Module):
    """A "detector" that answers each test image with the next of ``outputs``."""

    def __init__(self, outputs: list[dict]) -> None:
        super().__init__()
        self.outputs = iter(outputs)

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        return [next(self.outputs)]


@pytest.mark.parametrize("task", ["masks", "keypoints"])
def test_coco_test_path_writes_what_detectron2_writes(tmp_path, task):
    """A detector answering COCO val2017 (files in the released format) with its non-crowd objects:
    its figures are pycocotools' on the records detectron2 writes, made here from the ground truth
    (the mask probabilities cut at 0.5, the keypoints back from detectron2's +0.5, the sorted
    category ids), and exact keypoints have keypoint AP 100."""
    from test_detection_datasets import write_coco

    from hardneg_bench.detection.coco_eval import CocoImagePredictions, coco_category_ids, evaluate_coco

    write_coco(tmp_path, "val")
    for annotation_file in (tmp_path / "coco" / "annotations").iterdir():  # without its two-point polygon, which pycocotools cannot rasterise
        content = json.loads(annotation_file.read_text())
        annotation_file.write_text(json.dumps({**content, "annotations": [a for a in content["annotations"] if a["id"] != 6]}))
    data = detection_dataset("coco2017", "val", tmp_path, task)
    ids = coco_category_ids(data.coco)
    outputs, expected = [], []
    for _, target in data:
        keep = ~target["iscrowd"]
        boxes, labels = target["boxes"][keep], target["labels"][keep]
        scores = torch.linspace(0.9, 0.5, len(boxes))
        output = {"boxes": boxes, "labels": labels, "scores": scores}
        image = {"image_id": target["image_id"], "boxes": boxes.numpy(), "scores": scores.numpy(), "category_ids": ids[labels.numpy() - 1]}
        if task == "masks":
            masks = target["masks"][keep]
            output["masks"] = (0.1 + 0.8 * masks.float())[:, None]  # probabilities either side of 0.5
            image["masks"] = masks.numpy()
        else:
            points = target["keypoints"][keep]
            output |= {"keypoints": torch.cat([points[..., :2], torch.ones_like(points[..., :1])], -1), "keypoints_scores": torch.full(points.shape[:2], 3.0)}
            image["keypoints"] = torch.cat([points[..., :2] - 0.5, torch.full_like(points[..., :1], 3.0)], -1).numpy()
        outputs.append(output)
        expected.append(CocoImagePredictions(**image))
    metrics = evaluate_detector(Replay(outputs), data, torch.device("cpu"), None)
    other, prefix = ("segm", "mask_") if task == "masks" else ("keypoints", "keypoint_")
    assert {k: v for k, v in metrics.items() if not k.startswith(prefix)} == evaluate_coco(data.coco, expected, "bbox").as_dict()
    assert {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)} == evaluate_coco(data.coco, expected, other).as_dict()
    if task == "keypoints":
        assert metrics["keypoint_AP"] == pytest.approx(100.0)
