"""Typed run configuration: plain YAML mapped onto dataclasses, validated, hashed.

A run's config is resolved in layers (:mod:`hardneg_bench.recipes` lists them), each a YAML
mapping merged over the previous one by :func:`merge_layers`, which also records which layer set
each key; keys no layer sets keep the dataclass defaults. Any unknown key or badly typed value is a
:class:`ConfigError` whose message names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from .data.normalization import DATASET, NORMALIZATIONS


class ConfigError(ValueError):
    """A bad configuration; the message is one line that names the offending key."""


def added_field(default: Any, **kwargs: Any) -> Any:
    """A field added after stage keys were first issued. While it holds its default it is left out
    of stage keys (:func:`to_dict` with ``keyed=True``), so every key made before the field existed
    still finds its stored result; set to anything else, it is part of the key."""
    return field(default=default, metadata={"keyed_when_set": True}, **kwargs)


# --------------------------------------------------------------------------------------------
# The sections of a run


@dataclass
class AugmentConfig:
    """Contrastive augmentations (SimCLR's recipe), drawn independently per image and per view."""

    crop_size: int | None = None
    """Output side length; None uses the dataset's native image size."""
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    """Colour-jitter strengths: brightness, contrast, saturation, hue."""
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1
    """Gaussian-blur kernel side as a fraction of the crop (SimCLR: 10%), made odd, at least 3."""
    grayscale_before_jitter: bool = added_field(False)
    """Grayscale before colour jitter instead of after: the order of CMC's eval_moco_ins.py
    (HobbitLong/CMC@7b227be, lines 162-166) and of the Ring code's default transforms
    (mhw32/contrastive-ring-public@fb3e1c2 src/datasets/datasets.py load_default_transforms).
    SimCLR's order (jitter, then grayscale) is the default."""

    def __post_init__(self) -> None:
        require(self.crop_size is None or self.crop_size >= 8, "crop_size", "must be at least 8")
        require(0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, "crop_scale", "must satisfy 0 < min <= max <= 1")
        require(0 < self.crop_ratio[0] <= self.crop_ratio[1], "crop_ratio", "must satisfy 0 < min <= max")
        require(all(j >= 0 for j in self.jitter) and self.jitter[3] <= 0.5, "jitter", "strengths must be >= 0 and hue <= 0.5")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            require(0 <= getattr(self, name) <= 1, name, "must be a probability in [0, 1]")
        require(0 < self.blur_sigma[0] <= self.blur_sigma[1], "blur_sigma", "must satisfy 0 < min <= max")


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    """``tiny`` (CPU runs), ``resnet18`` or ``resnet50``."""
    stem: str = "auto"
    """``cifar`` (3x3 stride-1 conv, no max-pool), ``imagenet`` (torchvision's 7x7 stride-2 conv and
    max-pool) or ``auto``: cifar for crops up to 96 px, imagenet above."""
    width: float = 1.0
    """Channel multiplier of the backbone's stages (CMC's streams are half-width ResNets)."""
    bn_splits: int = 1
    """BatchNorm over this many sub-batches while pretraining: MoCo's one-GPU stand-in for
    shuffle-BN (8 in MoCo's CIFAR demo); 1 is plain BatchNorm."""
    projector_layers: int = 2
    """2: Linear-[BN]-ReLU-Linear (SimCLR, MoCo-v2); 1: one Linear layer (InsDis, CMC)."""
    projector_hidden_dim: int | None = None
    """Hidden width of the projection MLP; None uses the backbone's feature width."""
    projector_out_dim: int = 128
    projector_batchnorm: bool = True
    """BatchNorm after the hidden layer (SimCLR, HCL/DCL code); MoCo-v2's head has none."""
    normalization: str = added_field("dataset")
    """The input normalisation the encoder is trained and evaluated with (transfers included):
    ``dataset`` (each dataset's own mean and std) or a name of data/normalization.py, as a
    source code normalises: ``cifar10-kuangliu`` (HCL/DCL image/utils.py, MoCo's CIFAR-10 demo,
    on every dataset), ``imagenet`` (the Ring code), ``cifar10``, ``cifar100``."""

    def __post_init__(self) -> None:
        require(self.stem in ("auto", "cifar", "imagenet"), "stem", "must be auto, cifar or imagenet")
        require(self.normalization in (DATASET, *NORMALIZATIONS), "normalization", f"must be one of {', '.join((DATASET, *NORMALIZATIONS))}, got {self.normalization!r}")
        require(self.projector_out_dim > 0, "projector_out_dim", "must be positive")
        require(self.width > 0, "width", "must be positive")
        require(self.bn_splits >= 1, "bn_splits", "must be at least 1")
        require(self.projector_layers in (1, 2), "projector_layers", "must be 1 or 2")
        require(self.projector_hidden_dim is None or self.projector_hidden_dim > 0, "projector_hidden_dim", "must be positive")


@dataclass
class OptimizerConfig:
    name: str = "adam"
    """``sgd``, ``adam`` or ``lars``."""
    lr: float = 1e-3
    weight_decay: float = 1e-6
    momentum: float = 0.9
    """SGD and LARS momentum (Adam ignores it)."""
    nesterov: bool = False
    lars_trust_coefficient: float = 0.001

    def __post_init__(self) -> None:
        require(self.name in ("sgd", "adam", "lars"), "name", f"must be sgd, adam or lars, got {self.name!r}")
        require(self.lr > 0, "lr", "must be positive")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")


@dataclass
class ScheduleConfig:
    name: str = "constant"
    """``constant``, ``cosine`` (to ``final_lr_factor`` x lr) or ``step`` (x ``gamma`` at each
    epoch of ``milestones``); updated every step."""
    warmup_epochs: float = 0.0
    """Linear warm-up from ``warmup_start_factor`` x lr, before the schedule proper."""
    warmup_start_factor: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    final_lr_factor: float = 0.0

    def __post_init__(self) -> None:
        require(self.name in ("constant", "cosine", "step"), "name", f"must be constant, cosine or step, got {self.name!r}")
        require(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
        require(list(self.milestones) == sorted(self.milestones), "milestones", "must be increasing")


@dataclass
class PretrainConfig:
    epochs: int = 400
    batch_size: int = 256
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    precision: str = "auto"
    diagnostics_every: int = 10
    """Hardness diagnostics (methods/hardness.py) on every N-th training step of labelled data,
    averaged per epoch; 0 switches them off."""
    split: str = "pretrain"
    """The split pretrained on: ``pretrain`` (e.g. STL-10 train+unlabeled) or ``train`` (the
    labelled training images only, as the Ring code pretrains STL-10)."""
    """``auto`` (bf16 autocast on CUDA, fp32 elsewhere), ``fp32``, ``bf16`` or ``fp16``."""
    checkpoint_every: int = 10
    """Epochs between checkpoints (the last epoch is always saved)."""

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs", "must be at least 1")
        require(self.batch_size >= 2, "batch_size", "must be at least 2")
        require(self.precision in ("auto", "fp32", "bf16", "fp16"), "precision", "must be auto, fp32, bf16 or fp16")
        require(self.diagnostics_every >= 0, "diagnostics_every", "must be >= 0 (0: off)")
        require(self.split in ("pretrain", "train"), "split", f"must be pretrain or train, got {self.split!r}")
        require(self.checkpoint_every >= 1, "checkpoint_every", "must be at least 1")


def _probe_optimizer() -> OptimizerConfig:
    # HCL/DCL linear.py: Adam lr 1e-3, weight decay 1e-6 (joshr17/HCL@7b4647f image/linear.py).
    return OptimizerConfig(name="adam", lr=1e-3, weight_decay=1e-6)


@dataclass
class ProbeConfig:
    """Linear classifier on the frozen backbone's pooled features. The defaults are the clean
    protocol (the frozen encoder untouched, PyTorch's layer initialisation, the last epoch
    reported); each paper table sets what its source code does (experiments/tables/*.yaml)."""

    protocol: str = "fast"
    """``fast``: features of the un-augmented images computed once, classifier trained on them;
    ``paper``: every epoch runs augmented images through the frozen backbone, as the papers do."""
    epochs: int = 100
    batch_size: int = 512
    optimizer: OptimizerConfig = field(default_factory=_probe_optimizer)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig | None = None
    """Training augmentation of the ``paper`` protocol; None uses the pretraining augmentations
    (as the HCL/DCL linear evaluation does)."""
    image_size: int | None = None
    """Evaluation image size; None keeps the native size of 32/96-px datasets (HCL's test
    transform) and center-crops 224 after resizing to 256 for ImageNet-100."""
    test_resize: int | None = added_field(None)
    """Resize test images to this side before centre-cropping ``image_size`` (the Ring code's
    Resize(256) + CenterCrop(224) of 32-px CIFAR images, src/datasets/datasets.py); None resizes
    in-memory images straight to ``image_size`` and folder images to ``image_size`` / 0.875."""
    encoder_batchnorm: str = added_field("eval")
    """BatchNorm mode of the frozen encoder while the classifier trains (``paper`` protocol).
    ``eval`` (default; MoCo main_lincls.py, CMC's linear scripts): stored statistics, untouched.
    ``train``: batch statistics, and the running statistics rewritten at every step and used by
    the test pass, as HCL's and DCL's linear.py (``net.train()``) and the Ring code's
    TransferSystem (PyTorch Lightning puts the whole system in train mode) do. It runs on a copy
    of the encoder: the stored encoder and every other evaluation of it are untouched."""
    classifier_init: str = added_field("pytorch")
    """``pytorch``: nn.Linear's default (HCL/DCL linear.py, the Ring code's LogisticRegression);
    ``normal``: weights N(0, 0.01^2), bias 0 (MoCo main_lincls.py:240-241, CMC
    models/LinearModel.py ``initilize``)."""
    drop_last: bool = added_field(False)
    """Drop each epoch's last incomplete training batch (the Ring code's create_dataloader)."""
    report_epoch: str = added_field("last")
    """``last``: the test accuracy after the last epoch (HCL's linear.py); ``best``: the best test
    accuracy over the epochs, tested after each (MoCo main_lincls.py:412, CMC's linear scripts).
    ``best`` selects on the test split, as those scripts do; ``last`` does not."""

    def __post_init__(self) -> None:
        require(self.protocol in ("fast", "paper"), "protocol", f"must be fast or paper, got {self.protocol!r}")
        require(self.epochs >= 1, "epochs", "must be at least 1")
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.image_size is None or self.image_size >= 8, "image_size", "must be at least 8")
        require(self.test_resize is None or (self.image_size is not None and self.test_resize >= self.image_size), "test_resize", "needs image_size and must be at least image_size")
        require(self.encoder_batchnorm in ("eval", "train"), "encoder_batchnorm", f"must be eval or train, got {self.encoder_batchnorm!r}")
        require(self.encoder_batchnorm == "eval" or self.protocol == "paper", "encoder_batchnorm", "train needs protocol paper (the fast protocol computes features once)")
        require(self.classifier_init in ("pytorch", "normal"), "classifier_init", f"must be pytorch or normal, got {self.classifier_init!r}")
        require(self.report_epoch in ("last", "best"), "report_epoch", f"must be last or best, got {self.report_epoch!r}")


@dataclass
class KnnConfig:
    """Weighted kNN on L2-normalised backbone features, as the HCL/DCL code monitors it."""

    k: int = 200
    temperature: float = 0.5
    feature: str = added_field("backbone")
    """``backbone``: the pooled backbone feature (HCL/DCL main.py ``test()``); ``head``: the
    projection head's output, as MoCo's CIFAR-10 demo monitors kNN on encoder_q's 128-d fc output
    (facebookresearch/moco colab/moco_cifar10_demo.ipynb ``test``)."""

    def __post_init__(self) -> None:
        require(self.k >= 1, "k", "must be at least 1")
        require(self.temperature > 0, "temperature", "must be positive")
        require(self.feature in ("backbone", "head"), "feature", f"must be backbone or head, got {self.feature!r}")


FEWSHOT_HEADS = ("nearest_mean", "logistic")


@dataclass
class FewShotConfig:
    """Few-shot episodes on the frozen features of each dataset's test split (Meta-Dataset's
    convention: N-way K-shot episodes, 15 queries per class, 600 episodes, mean accuracy and its
    95% interval), classified by nearest class mean (cosine) and by a per-episode logistic
    regression (evaluations/fewshot.py), on every transfer target named ``DATASET:fewshot``. The
    episodes depend only on the labels and the run's seed, so every encoder is tested on the same
    ones."""

    ways: int = 5
    shots: tuple[int, ...] = (1, 5)
    queries: int = 15
    episodes: int = 600
    heads: tuple[str, ...] = FEWSHOT_HEADS

    def __post_init__(self) -> None:
        require(self.ways >= 2, "ways", "must be at least 2")
        require(bool(self.shots) and all(s >= 1 for s in self.shots), "shots", "must be a non-empty list of numbers >= 1")
        require(self.queries >= 1, "queries", "must be at least 1")
        require(self.episodes >= 2, "episodes", "must be at least 2 (the interval needs a spread)")
        require(bool(self.heads) and all(h in FEWSHOT_HEADS for h in self.heads), "heads", f"must name some of {', '.join(FEWSHOT_HEADS)}")


@dataclass(frozen=True)
class DetectionSchedule:
    """A detection fine-tuning schedule as detectron2's solver and input settings define it:
    ``iterations`` of ``batch_size`` images (SOLVER.MAX_ITER), the learning rate x0.1 at each of
    ``steps`` (SOLVER.STEPS, SOLVER.GAMMA 0.1), a linear warm-up over ``warmup_iterations`` from
    0.001 x the rate (SOLVER.WARMUP_ITERS, WARMUP_FACTOR 1/1000), the shorter image side drawn
    from ``min_size_train`` per training image (INPUT.MIN_SIZE_TRAIN, sampling ``choice``) and
    ``min_size_test`` in testing, the longer side at most ``max_size`` (INPUT.MAX_SIZE_TRAIN and
    MAX_SIZE_TEST, both 1333: facebookresearch/detectron2@02b5c4e detectron2/config/defaults.py
    lines 61, 65)."""

    iterations: int
    steps: tuple[int, ...]
    warmup_iterations: int
    min_size_train: tuple[int, ...]
    min_size_test: int = 800
    max_size: int = 1333

    def shortened(self, iterations: int) -> "DetectionSchedule":
        """The schedule over ``iterations``: the steps and the warm-up keep their fractions of it
        (rounded to whole iterations)."""
        scale = iterations / self.iterations
        return replace(self, iterations=iterations, steps=tuple(round(s * scale) for s in self.steps), warmup_iterations=round(self.warmup_iterations * scale))


DETECTION_SCHEDULES: dict[str, DetectionSchedule] = {
    # pascal_voc_R_50_C4_24k.yaml lines 8-9, 13-16: MIN_SIZE_TRAIN (480, ..., 800), MIN_SIZE_TEST 800,
    # STEPS (18000, 22000), MAX_ITER 24000, WARMUP_ITERS 100
    "voc-24k": DetectionSchedule(24000, (18000, 22000), 100, tuple(range(480, 801, 32))),
    # detectron2@02b5c4e configs/Base-RCNN-C4.yaml (COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml's
    # base): STEPS (60000, 80000), MAX_ITER 90000, MIN_SIZE_TRAIN (640, ..., 800); WARMUP_ITERS is
    # detectron2's default 1000 (defaults.py line 550); MoCo's repository has no 1x config
    "coco-1x": DetectionSchedule(90000, (60000, 80000), 1000, tuple(range(640, 801, 32))),
    # coco_R_50_C4_2x.yaml lines 5-13: MIN_SIZE_TRAIN (640, ..., 800), MIN_SIZE_TEST 800,
    # STEPS (120000, 160000), MAX_ITER 180000; WARMUP_ITERS: detectron2's default 1000
    "coco-2x": DetectionSchedule(180000, (120000, 160000), 1000, tuple(range(640, 801, 32))),
}
"""The schedules of MoCo's detection transfer (facebookresearch/moco@132aea9 detection/configs/) by name."""

DETECTION_ARCHS = ("c4", "fpn")
DETECTION_TASKS = ("boxes", "masks", "keypoints")


@dataclass
class DetectionConfig:
    """Fine-tuning a detector initialised from the encoder on a detection dataset (transfer target
    ``voc0712:detection`` or ``coco2017:detection``), then testing it: MoCo's detection transfer
    (facebookresearch/moco@132aea9 detection/, run on detectron2). The defaults are
    ``pascal_voc_R_50_C4_24k_moco.yaml`` with its base ``Base-RCNN-C4-BN.yaml``; what they do not
    set is detectron2's default (facebookresearch/detectron2@02b5c4e detectron2/config/defaults.py,
    ``D2`` below). SGD with momentum 0.9 (D2 line 534), weight decay 1e-4 (line 538) and none on
    normalisation layers (WEIGHT_DECAY_NORM 0.0, line 541) is fixed (hardneg_bench/detection/solver.py)."""

    arch: str = "c4"
    """``c4``: Faster / Mask R-CNN R50-C4 with MoCo's extra BatchNorm after res5 (Base-RCNN-C4-BN.yaml
    ``Res5ROIHeadsExtraNorm``); ``fpn``: torchvision's R50-FPN detectors (keypoints need it)."""
    task: str = "boxes"
    """``boxes`` (pascal_voc_R_50_C4_24k.yaml MASK_ON: False), ``masks`` (coco_R_50_C4_2x.yaml
    MASK_ON: True: box and mask AP) or ``keypoints`` (COCO person keypoints, arch fpn)."""
    schedule: str = "voc-24k"
    """A name of :data:`DETECTION_SCHEDULES`: ``voc-24k``, ``coco-1x`` or ``coco-2x``."""
    trials: int = 5
    """Fine-tunings of one encoder, each its own stage (trial k: its own initialisation of the new
    layers and its own data order): "These results are means of 5 trials ... We recommend to run
    5 trials and compute means" (facebookresearch/moco@132aea9 detection/README.md line 61)."""
    batch_size: int = 16
    """Images per iteration over all processes: Base-RCNN-C4-BN.yaml SOLVER.IMS_PER_BATCH 16."""
    lr: float = 0.02
    """Base-RCNN-C4-BN.yaml SOLVER.BASE_LR 0.02."""
    iterations: int | None = None
    """None: the schedule's; N: the schedule shortened to N iterations, its steps and warm-up at
    the same fractions of it (departs: detectron2's SOLVER.MAX_ITER alone keeps the steps)."""
    precise_bn_iterations: int = 200
    """Iterations of training batches over which BatchNorm statistics are recomputed before testing
    (Base-RCNN-C4-BN.yaml TEST.PRECISE_BN.ENABLED True; D2 line 622 NUM_ITER 200); 0: off."""
    checkpoint_every: int = 5000
    """Iterations between checkpoints (D2 line 556 SOLVER.CHECKPOINT_PERIOD 5000); the last is
    always saved, and a SIGTERM saves one where it stops."""
    precision: str = "auto"
    """``auto`` (bf16 autocast on CUDA, fp32 elsewhere), ``fp32`` or ``bf16``: autocast runs the
    convolutions and linear layers; boxes, anchors, RoIAlign, the losses and post-processing stay
    in float32 (departs: MoCo trained in float32, D2 line 595 SOLVER.AMP off)."""
    image_size: int | None = None
    """None: the schedule's image sizes. N: every image resized to fit N x N pixels (its longer
    side N) in training and testing, for CPU-sized runs (tests)."""

    def __post_init__(self) -> None:
        require(self.arch in DETECTION_ARCHS, "arch", f"must be one of {', '.join(DETECTION_ARCHS)}, got {self.arch!r}")
        require(self.task in DETECTION_TASKS, "task", f"must be one of {', '.join(DETECTION_TASKS)}, got {self.task!r}")
        require(not (self.arch == "c4" and self.task == "keypoints"), "task", "keypoints needs arch fpn (detectron2's C4 RoI heads have no keypoint head)")
        require(self.schedule in DETECTION_SCHEDULES, "schedule", f"must be one of {', '.join(DETECTION_SCHEDULES)}, got {self.schedule!r}")
        require(self.trials >= 1, "trials", "must be at least 1")
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.lr > 0, "lr", "must be positive")
        require(self.iterations is None or self.iterations >= 1, "iterations", "must be at least 1")
        require(self.precise_bn_iterations >= 0, "precise_bn_iterations", "must be >= 0 (0: off)")
        require(self.checkpoint_every >= 1, "checkpoint_every", "must be at least 1")
        require(self.precision in ("auto", "fp32", "bf16"), "precision", "must be auto, fp32 or bf16")
        require(self.image_size is None or self.image_size >= 32, "image_size", "must be at least 32")

    def resolved_schedule(self) -> DetectionSchedule:
        """The named schedule, shortened to ``iterations`` when set and at ``image_size`` when set."""
        schedule = DETECTION_SCHEDULES[self.schedule]
        if self.iterations is not None:
            schedule = schedule.shortened(self.iterations)
        if self.image_size is not None:
            schedule = replace(schedule, min_size_train=(self.image_size,), min_size_test=self.image_size, max_size=self.image_size)
        return schedule


@dataclass
class RunConfig:
    """Everything that determines a run's results (and so its keys in the run store)."""

    method: str = "simclr"
    dataset: str = "shapes"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    method_params: Any = None
    """The method's own typed parameters (its registry entry names the dataclass)."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    transfer: tuple[str, ...] | None = None
    """Transfer targets, each ``DATASET`` (a linear probe trained and tested there) or
    ``DATASET:PROTOCOL`` (``linear``, ``knn``, ``fewshot``, ``detection``: hardneg_bench/evaluations/); None uses
    the dataset's default target with the linear probe."""
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    """The episodes of the ``fewshot`` protocol."""
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    """The fine-tuning and test of the ``detection`` protocol (``voc0712:detection``)."""
    random_init_baseline: bool = True
    """Also evaluate a randomly initialised encoder of the same architecture, as a floor."""


# --------------------------------------------------------------------------------------------
# Mapping plain data onto the dataclasses


class FieldError(ConfigError):
    """A bad value of one field, raised by a dataclass's ``__post_init__``; :func:`from_dict`
    turns it into a ConfigError naming the full key."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name} {message}")
        self.field_name, self.message = field_name, message


def require(ok: bool, field_name: str, message: str) -> None:
    """Raise a :class:`FieldError` for ``field_name`` unless ``ok``."""
    if not ok:
        raise FieldError(field_name, message)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` (plain YAML data) as type ``tp``, or a ConfigError naming ``path``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key '{path}' must be a list of {len(args)} values, got {list(value)!r}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
        return {_convert(k, key_type, path): _convert(v, value_type, f"{path}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, bool, str) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"config key '{path}' must be {_type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and badly typed values."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{path or '<root>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
            raise ConfigError(f"unknown config key '{full}'{hint}")
        kwargs[key] = _convert(value, hints[key], full)
    try:
        return cls(**kwargs)
    except FieldError as err:
        full = f"{path}.{err.field_name}" if path else err.field_name
        raise ConfigError(f"config key '{full}' {err.message}") from None


def to_dict(obj: Any, keyed: bool = False) -> Any:
    """Plain data (dicts, lists, scalars) for a config dataclass, ready for YAML or JSON. With
    ``keyed`` (a stage key's config) an :func:`added_field` at its default is left out."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: to_dict(getattr(obj, f.name), keyed)
            for f in dataclasses.fields(obj)
            if not (keyed and f.metadata.get("keyed_when_set") and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, keyed) for v in obj]
    return obj


def config_key(payload: Any) -> str:
    """A short stable hash of plain data or a dataclass (sorted-key JSON, SHA-256)."""
    text = json.dumps(to_dict(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Layers: YAML files, --set overrides, merging


def deep_merge(base: Mapping, override: Mapping, replaced: Callable[[tuple[str, ...], Any], None] | None = None, _path: tuple[str, ...] = ()) -> dict:
    """``override`` merged into a copy of ``base``; nested mappings merge, everything else replaces.
    ``replaced(path, value)`` is told of every key path whose value the override replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value, replaced, (*_path, str(key)))
        else:
            merged[key] = value
            if replaced is not None:
                replaced((*_path, str(key)), value)
    return merged


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of nested mappings by dotted key (``{'a': {'b': 1}}`` -> ``{'a.b': 1}``); lists
    and other values are leaves, an empty mapping has none."""
    if not isinstance(data, Mapping):
        return {prefix: data}
    leaves: dict[str, Any] = {}
    for key, value in data.items():
        leaves.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def merge_layers(layers: Iterable[tuple[str, Mapping]]) -> tuple[dict, dict[str, str]]:
    """The layers ``(source, mapping)`` merged in order, and for every leaf key of the result the
    source of the layer that set it."""
    merged: dict = {}
    sources: dict[str, str] = {}
    for source, layer in layers:

        def replaced(path: tuple[str, ...], value: Any, source: str = source) -> None:
            dotted = ".".join(path)
            for key in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
                del sources[key]
            sources.update({key: source for key in flatten(value, dotted)})

        merged = deep_merge(merged, layer, replaced)
    return merged, sources


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when PyYAML has it
    """PyYAML's safe loader, but reading ``1e-4`` as a number (YAML 1.2) rather than a string:
    PyYAML follows YAML 1.1, whose floats need a dot (``1.0e-4``), a trap for config writers."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def load_yaml(path: Path) -> dict:
    """A YAML file that must hold a mapping; a clear one-line error otherwise."""
    try:
        data = parse_yaml(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def parse_override(text: str) -> dict:
    """``'pretrain.optimizer.lr=0.1'`` as the nested mapping ``{'pretrain': {'optimizer': {'lr': 0.1}}}``;
    the value is read as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML") from None
    nested: Any = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested
