"""`benchmarks/gpu_check.py`, the one command a GPU session runs, kept working on the CPU: its
quick mode runs every section at tiny sizes and writes the JSON and the markdown summary."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hardneg_bench.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out), *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    return done, json.loads((out / "gpu_check.json").read_text())


@pytest.fixture(scope="module")
def quick_check(tmp_path_factory):
    """The quick check with room to spare: it takes about 50 s on two idle cores, and a busy CI
    machine must not turn a slow section into one left out."""
    out = tmp_path_factory.mktemp("gpu-check")
    return (out, *run_check(out, "--budget", "600"))


def test_the_quick_check_runs_every_section_on_the_cpu_and_passes(quick_check):
    out, done, record = quick_check
    sections = {s["name"]: s for s in record["sections"]}
    assert list(sections) == list(load_script().SECTIONS)
    failed = {name: (s["reason"], [c for c in s["checks"] if not c["ok"]]) for name, s in sections.items() if s["status"] != "passed"}
    assert not failed and done.returncode == 0, failed
    assert record["quick"] and record["device"].startswith("cpu") and record["budget_s"] == 600 and record["elapsed_s"] < 600
    # what each section showed, not only that it ran
    steps = sections["steps"]["figures"]["cases"]
    assert sorted(c["method"] for c in steps if c["dataset"] == "shapes") == sorted(METHODS)
    assert {(c["method"], c["dataset"], c["crop"]) for c in steps if c["dataset"] != "shapes"} == {("simclr", "stl10", 96), ("moco-v2", "imagenet100", 224)}
    assert all(c["objective_input_dtypes"] == ["float32"] and not c["autocast_in_objective"] and len(c["losses"]) == 2 for c in steps)
    end_to_end = sections["end_to_end"]["figures"]
    assert end_to_end["exactly_equal"] and set(end_to_end["resumed_minus_straight"]) == {"pretrain final_loss", "probe cifar10 test_accuracy", "knn cifar10 test_accuracy", "transfer cifar100 test_accuracy"}
    assert "ring" in end_to_end["report"]
    assert sections["torchrun"]["figures"]["numbers"]["pretrain"]["process_group"] == "gloo"
    detectors = {d["detector"]: d for d in sections["detection"]["figures"]["detectors"]}
    assert list(detectors) == ["Faster R-CNN R50-C4 (VOC), tiny", "Mask R-CNN R50-C4 (COCO), tiny"]
    faster_losses = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}  # torchvision's names
    assert set(detectors["Faster R-CNN R50-C4 (VOC), tiny"]["losses"]) == faster_losses
    assert set(detectors["Mask R-CNN R50-C4 (COCO), tiny"]["losses"]) == faster_losses | {"loss_mask"}
    for d in detectors.values():  # fp32 on the CPU (precision auto), two timed iterations of two 64 px images
        assert (d["precision"], d["backbone_dtype"], d["loss_dtypes"], d["images_per_iteration"], d["image_size"]) == ("fp32", "float32", ["float32"], 2, "64x64")
        assert all(len(v) == 2 and all(math.isfinite(x) for x in v) for v in d["losses"].values()) and d["ms_per_iteration"] > 0
    # detectron2's initialisation (class scores N(0, 0.01)): the 21 or 81 classes (background
    # included) equally likely at first, a classification loss of ln(21) or ln(81) (the warm-up's
    # tiny rate barely moves it)
    assert abs(detectors["Faster R-CNN R50-C4 (VOC), tiny"]["losses"]["loss_classifier"][0] - math.log(21)) < 0.1
    assert abs(detectors["Mask R-CNN R50-C4 (COCO), tiny"]["losses"]["loss_classifier"][0] - math.log(81)) < 0.1
    ratios = sections["step_ratios"]["figures"]["rows"]
    assert [(r["method"], r["base"]) for r in ratios] == [("hcl", "simclr"), ("sscl", "simclr"), ("mochi", "moco-v2"), ("ring", "moco-v2"), ("ir-ring", "ir"), ("cmc-ring", "cmc")]
    # on the CPU no target is judged, and the summary says so
    targets = [t for s in record["sections"] for t in s["targets"]]
    assert len(targets) >= 14 and all(t["met"] is None for t in targets)
    summary = (out / "gpu_check.md").read_text()
    assert "These are CPU figures (no GPU)" in summary and all(f"## {name}:" in summary for name in sections)
    assert "| Faster R-CNN R50-C4 (VOC), tiny | 2 x 64x64 | fp32 (float32) |" in summary and "| Mask R-CNN R50-C4 (COCO), tiny | 2 x 64x64 |" in summary
    assert "11 skipped" in (out / "pytest.log").read_text()  # every CUDA-only test was collected


def test_a_gpu_summary_judges_each_target(quick_check):
    """The summary a GPU run writes (targets judged), from the quick run's record."""
    _, _, record = quick_check
    first, second = next(s for s in reversed(record["sections"]) if s["targets"])["targets"][:2]
    first["met"], second["met"] = True, False
    summary = load_script().markdown(record, judged=True)
    assert f"| {first['what']} |" in summary and "| yes |" in summary and "| **no** |" in summary
    assert "These are CPU figures" not in summary


def test_sections_that_do_not_fit_the_budget_are_listed_as_not_run(tmp_path):
    done, record = run_check(tmp_path, "--budget", "1")
    assert done.returncode == 0 and [s["status"] for s in record["sections"]] == ["not run"] * 8
    assert all(s["reason"].startswith("time budget") for s in record["sections"])
    done, record = run_check(tmp_path / "only", "--only", "step_ratios", "pytest", "--skip", "pytest")
    assert [s["name"] for s in record["sections"] if s["status"] != "not run"] == ["step_ratios"] and done.returncode == 0
    assert {s["reason"] for s in record["sections"] if s["name"] != "step_ratios"} == {"not chosen (--only/--skip)"}
    done, record = run_check(tmp_path / "detection", "--only", "detection")
    assert [s["name"] for s in record["sections"] if s["status"] == "passed"] == ["detection"] and done.returncode == 0
