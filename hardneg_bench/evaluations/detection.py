"""Detection transfer (``transfer: [voc0712:detection]``): a detector built on the encoder is
fine-tuned on the dataset's train split and tested on its test split, as MoCo does (He et al.
2020, section 4.2; facebookresearch/moco@132aea9 detection/): ``detection.trials`` fine-tunings,
each its own stage (its seed: the run's and the trial's), reported together.

The detector is MoCo's R50-C4 (or torchvision's R50-FPN, ``detection.arch``) on the encoder's
ResNet-50: the encoder must be a ResNet-50 with the ImageNet stem (7x7 stride-2 convolution and
max-pool), else one error line says so. Its width is the encoder's: a narrower ResNet-50
(``model.width`` below 1, for CPU tests) gives an R50-C4 whose every width, heads included, is
scaled alike (:class:`~hardneg_bench.detection.models.DetectorSpec` ``width``); with
``detection.image_size`` its images are small too. That is the tiny variant: nothing else changes.

Under torchrun the stage runs in every process (the evaluation is ``data_parallel``): each
fine-tunes on its share of every batch (:mod:`hardneg_bench.detection.train`, as detectron2 on
MoCo's 8 GPUs) and tests its share of the test images; process 0 evaluates them and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from .. import distributed
from ..config import ConfigError, DetectionConfig, RunConfig, config_key, to_dict
from ..detection.datasets import DETECTION_DATASETS, Item, detection_dataset
from ..detection.inference import evaluate_detector
from ..detection.models import DetectorSpec, build_detector, load_encoder
from ..detection.train import DetectorTrainer, fine_tune
from ..engine.pretrain import ENCODER
from ..engine.runtime import derive_seed, seed_everything
from ..models.backbones import resolved_stem
from ..store import load_data
from .base import Evaluation, EvaluationStage

if TYPE_CHECKING:
    from ..pipeline import Encoder, Pipeline

STAGE = "detection"
DETECTOR_TASKS = {"boxes": "box", "masks": "mask", "keypoints": "keypoint"}
"""``detection.task`` -> :class:`DetectorSpec` ``task``."""


@dataclass(frozen=True)
class DetectionTarget:
    """A detection dataset read for one task; the pipeline loads and caches its splits by ``name``."""

    dataset: str
    task: str

    @property
    def name(self) -> str:
        return f"{self.dataset}:{self.task}"

    @property
    def test_split(self) -> str:
        """VOC's ``test`` (2007), COCO's ``val``."""
        return DETECTION_DATASETS[self.dataset].splits[-1]

    def load(self, split: str, root: Path, download: bool = False) -> Dataset[Item]:
        """The split as it is on disk under ``root`` (nothing is downloaded: one error line names
        what is missing and where to get it)."""
        return detection_dataset(self.dataset, split, root, self.task)


def detection_target(cfg: RunConfig, name: str, root: Path) -> DetectionTarget:
    """``name`` as a detection dataset for ``detection.task``; an unknown dataset, a task it has no
    annotations for, or a batch the processes cannot share is one ConfigError line, and a split
    whose files are not under ``root`` one DatasetMissingError line (checked before pretraining;
    the files are read when the stage starts)."""
    if name not in DETECTION_DATASETS:
        raise ConfigError(f"config key 'transfer': {name!r} is not a detection dataset (known: {', '.join(DETECTION_DATASETS)})")
    distributed.check_batch(cfg.detection.batch_size, "detection.batch_size")
    spec = DETECTION_DATASETS[name]
    if cfg.detection.task not in spec.tasks:
        raise ConfigError(f"config key 'detection.task': {name} has no {cfg.detection.task} annotations (it has {', '.join(spec.tasks)})")
    for split in spec.splits:
        spec.require(split, root, cfg.detection.task)
    return DetectionTarget(name, cfg.detection.task)


def detection_stage(cfg: RunConfig, encoder_key: str, dataset: str, trial: int) -> dict:
    """The config of trial ``trial`` of the encoder ``encoder_key`` on ``dataset``."""
    return {"parent": encoder_key, "dataset": dataset, "seed": cfg.seed, "trial": trial, "detection": to_dict(cfg.detection, keyed=True)}


def _stages(cfg: RunConfig, encoder_key: str, dataset: str, transfer: bool) -> list[EvaluationStage]:
    d = cfg.detection
    return [EvaluationStage(STAGE, detection_stage(cfg, encoder_key, dataset, k), {"trial": k, "detector": d.arch, "task": d.task}) for k in range(d.trials)]


def check_encoder(spec: dict) -> None:
    """A one-line ConfigError unless the stored encoder (``encoder.pt``'s spec) is a ResNet-50
    with the ImageNet stem."""
    stem = resolved_stem(spec["stem"], spec["image_size"]) if spec["stem"] else None
    if spec["backbone"] != "resnet50" or stem != "imagenet" or spec.get("lab_split"):
        what = f"{spec['backbone']}" + (f" with the {stem} stem" if stem else "") + (" in Lab streams" if spec.get("lab_split") else "")
        raise ConfigError(
            f"detection transfer needs a ResNet-50 encoder with the ImageNet stem (7x7 stride-2 conv1 and max-pool), as MoCo's R50-C4 detector; this encoder is a {what}: pretrain with --backbone resnet50 --set model.stem=imagenet"
        )


def detector_spec(cfg: DetectionConfig, num_classes: int, width: float) -> DetectorSpec:
    """The detector ``cfg`` fine-tunes: MoCo's config (:class:`DetectorSpec`'s defaults) with the
    task, the dataset's classes, the encoder's width and the schedule's image sizes."""
    schedule = cfg.resolved_schedule()
    return DetectorSpec(
        arch=cfg.arch,
        task=DETECTOR_TASKS[cfg.task],
        num_classes=num_classes,
        width=width,
        min_size_train=schedule.min_size_train,
        max_size_train=schedule.max_size,
        min_size_test=schedule.min_size_test,
        max_size_test=schedule.max_size,
    )


def _compute(pipeline: "Pipeline", encoder: "Encoder", target: DetectionTarget, stage: EvaluationStage) -> dict:
    cfg = pipeline.cfg.detection
    trial = stage.config["trial"]
    record = load_data(pipeline.store.stage_dir(encoder.stage, encoder.key) / ENCODER, "cpu")
    check_encoder(record["encoder"])
    train, test = pipeline.data(target, "train"), pipeline.data(target, target.test_split)
    seed = derive_seed(pipeline.cfg.seed, STAGE, trial)
    seed_everything(seed)  # the new layers' initialisation
    detector = build_detector(detector_spec(cfg, len(train.classes), record["encoder"]["width"]))
    load_encoder(detector, record["state_dict"])
    trainer = DetectorTrainer.build(detector, cfg.lr, cfg.precision, pipeline.runtime.device)
    run_dir = pipeline.store.stage_dir(stage.stage, config_key(stage.config))
    trained = fine_tune(trainer, train, cfg, seed, run_dir, pipeline.runtime, f"{STAGE}/{target.dataset} trial {trial}")
    metrics = evaluate_detector(trainer.model, test, trainer.device, trainer.amp_dtype)
    return {**metrics, "test_accuracy": metrics["AP50"], **trained}


DETECTION = Evaluation(
    STAGE,
    "a detector on the encoder fine-tuned on the train split and tested on the test split (AP), per trial",
    (),
    _stages,
    _compute,
    detection_target,
    data_parallel=True,
)
