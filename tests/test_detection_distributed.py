"""The detection stage on two processes (Gloo, the CPU), as detectron2 fine-tunes on MoCo's 8 GPUs:
each process trains on its share of every batch with the gradients averaged, and the update equals
the one a single process computes from the two shares' losses (checked with BatchNorm frozen, so
that the shares interact through the gradient alone; the synchronised BatchNorm is checked against
BatchNorm over the whole batch in test_distributed.py). Through the pipeline: every process
fine-tunes the detectors first, with every BatchNorm synchronised, and ends with the same weights;
the test images shared among the processes give the metrics one process computes; process 0 alone
writes, then runs the probes while the others return."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from hardneg_bench.config import DetectionConfig
from hardneg_bench.detection.datasets import detection_dataset
from hardneg_bench.detection.inference import evaluate_detector
from hardneg_bench.detection.loader import TrainingImages, training_loader
from hardneg_bench.detection.models import build_detector
from hardneg_bench.detection.precise_bn import recompute_batchnorm
from hardneg_bench.detection.solver import lr_factor
from hardneg_bench.detection.train import CHECKPOINT, DetectorTrainer, fine_tune
from hardneg_bench.engine.runtime import derive_seed
from hardneg_bench.evaluations import detection as detection_evaluation
from hardneg_bench.evaluations.detection import detector_spec
from hardneg_bench.models.sync_batchnorm import SyncBatchNorm
from hardneg_bench.store import RunStore, load_checkpoint
from voc_squares import CPU, pipeline, squares_voc

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = ["detection.image_size=48", "detection.batch_size=4", "detection.lr=0.02", "detection.iterations=4", "detection.checkpoint_every=2", "detection.precise_bn_iterations=2", "detection.trials=1"]
SEED, PROCESSES, CLASSES, WIDTH = 5, 2, 20, 0.0625


FROZEN = ["detection.lr=0.00005"]
"""Without BatchNorm's normalisation the tiny detector diverges at the pipeline's rate."""


def detection_config(data: Path, *overrides: str) -> DetectionConfig:
    return pipeline(Path("unused"), data, *SETTINGS, *overrides).cfg.detection


def frozen_detector(cfg: DetectionConfig, data: Path) -> nn.Module:
    """The tiny C4 detector drawn from ``SEED``, each BatchNorm frozen with the statistics of the
    first two training images (without them a ResNet's activations blow up)."""
    torch.manual_seed(SEED)
    detector = build_detector(detector_spec(cfg, CLASSES, WIDTH))
    images = TrainingImages(detection_dataset("voc0712", "train", data))
    batch = [images[index, False] for index in range(2)]
    recompute_batchnorm(detector.train(), [batch], lambda items: detector([image.float() / 255 for image, _ in items], [target for _, target in items]))
    for module in list(detector.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, child.eps)
                for buffer in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, buffer).copy_(getattr(child, buffer).detach())
                setattr(module, name, frozen)
    return detector


def _fine_tune_and_keep(out: Path, rank: int):
    """``fine_tune`` that also saves, per process, the detector it trained and whether every
    BatchNorm of it is synchronised."""
    original = detection_evaluation.fine_tune

    def fine_tune_and_keep(trainer, *args, **kwargs):
        result = original(trainer, *args, **kwargs)
        norms = [m for m in trainer.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        kept = {"state": trainer.model.state_dict(), "norms": len(norms), "synchronised": all(isinstance(m, SyncBatchNorm) for m in norms)}
        torch.save(kept, out / f"pipeline-detector-{rank}.pt")
        return result

    return fine_tune_and_keep


def worker(rank: int, init_file: str, out: str, data: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=PROCESSES)
    out_dir, data_dir = Path(out), Path(data)
    try:
        cfg = detection_config(data_dir, *FROZEN)
        trainer = DetectorTrainer.build(frozen_detector(cfg, data_dir), cfg.lr, cfg.precision, CPU.device)
        fine_tune(trainer, detection_dataset("voc0712", "train", data_dir), cfg, SEED, out_dir / "frozen", CPU)
        torch.save(trainer.model.state_dict(), out_dir / f"frozen-{rank}.pt")

        detection_evaluation.fine_tune = _fine_tune_and_keep(out_dir, rank)
        p = pipeline(out_dir / "runs", data_dir, *SETTINGS)
        p.evaluate(p.random_init_encoder())
        torch.save(p.records, out_dir / f"records-{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detection-ddp")
    squares_voc(out / "data", 8)
    mp.spawn(worker, args=(str(out / "init"), str(out), str(out / "data")), nprocs=PROCESSES)
    return out


def reference_fine_tune(data: Path, ranks: tuple[int, ...]) -> dict:
    """One process's fine-tuning from the shares of ``ranks``: at every iteration each share's
    batch (the loader's rows of that process) and random draws (the seed of that process), the
    mean of their losses' gradients, one SGD step at the schedule's rate."""
    cfg = detection_config(data, *FROZEN)
    trainer = DetectorTrainer.build(frozen_detector(cfg, data), cfg.lr, cfg.precision, CPU.device)
    train = detection_dataset("voc0712", "train", data)
    loaders = [iter(training_loader(train, cfg.batch_size // PROCESSES, derive_seed(SEED, "order"), 0, 0, False, rank, PROCESSES)) for rank in range(PROCESSES)]
    schedule = cfg.resolved_schedule()
    trainer.model.train()
    for iteration in range(schedule.iterations):
        batches = [next(loader) for loader in loaders]
        trainer.optimizer.zero_grad()
        for rank in ranks:
            torch.manual_seed(derive_seed(SEED, "iteration", iteration, rank))
            (sum(trainer.losses(batches[rank]).values()) / len(ranks)).backward()
        for group in trainer.optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(iteration, schedule)
        trainer.optimizer.step()
    return trainer.model.state_dict()


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm().clamp_min(1e-12))


def test_data_parallel_fine_tuning_is_the_mean_gradient_of_the_shares(two_processes):
    states = [torch.load(two_processes / f"frozen-{rank}.pt") for rank in range(PROCESSES)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # the processes agree bit for bit
    initial = frozen_detector(detection_config(two_processes / "data", *FROZEN), two_processes / "data").state_dict()
    both, first_only = reference_fine_tune(two_processes / "data", (0, 1)), reference_fine_tune(two_processes / "data", (0,))
    trained = [k for k in initial if initial[k].is_floating_point() and not torch.equal(initial[k], states[0][k])]
    assert len(trained) > 50  # every layer moved (the frozen BatchNorm's buffers did not)
    updates = {k: states[0][k] - initial[k] for k in trained}
    assert max(relative_gap(both[k] - initial[k], updates[k]) for k in trained) < 1e-4
    # the check discriminates: process 0's share alone gives another update
    assert max(relative_gap(first_only[k] - initial[k], updates[k]) for k in trained) > 0.05


def test_the_pipeline_fine_tunes_in_every_process_then_process_zero_probes(two_processes):
    records = [torch.load(two_processes / f"records-{rank}.pt", weights_only=False) for rank in range(PROCESSES)]
    assert [r["stage"] for r in records[0]] == ["pretrain", "detection", "probe", "knn"]
    assert [r["stage"] for r in records[1]] == ["pretrain", "detection"]  # process 1 returned after the fine-tuning
    detections = [next(r for r in rs if r["stage"] == "detection") for rs in records]
    same = ("AP", "AP50", "AP75", "iterations")
    assert detections[0]["key"] == detections[1]["key"] and {k: detections[0]["metrics"][k] for k in same} == {k: detections[1]["metrics"][k] for k in same}
    assert detections[0]["metrics"]["processes"] == 2  # the record says so (the dry-run's estimate leaves it out)

    store = RunStore(two_processes / "runs")
    ledger = list(store.ledger())
    assert sorted(r["stage"] for r in ledger) == ["detection", "knn", "pretrain", "probe"]  # written once, by process 0

    kept = [torch.load(two_processes / f"pipeline-detector-{rank}.pt") for rank in range(PROCESSES)]
    assert all(k["norms"] > 50 and k["synchronised"] for k in kept)  # backbone and res5 head alike
    assert all(torch.equal(kept[0]["state"][k], kept[1]["state"][k]) for k in kept[0]["state"])  # precise BN's statistics too
    key = detections[0]["key"]
    final = load_checkpoint(store.stage_dir("detection", key) / CHECKPOINT, key, torch.device("cpu"))
    assert final["precise_bn"] and all(torch.equal(final["model"][k], kept[0]["state"][k]) for k in final["model"])

    # the test images were shared between the processes: one process testing them all agrees
    cfg = detection_config(two_processes / "data")
    detector = build_detector(detector_spec(cfg, CLASSES, WIDTH))
    detector.load_state_dict(final["model"])
    alone = evaluate_detector(detector, detection_dataset("voc0712", "test", two_processes / "data"), CPU.device, None)
    assert {k: alone[k] for k in ("AP", "AP50", "AP75")} == pytest.approx({k: detections[0]["metrics"][k] for k in ("AP", "AP50", "AP75")}, abs=1e-9)
