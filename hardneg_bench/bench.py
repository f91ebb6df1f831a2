"""``hardneg-bench bench``: where the time of a training step goes.

In one run, with the same method, model, batch and precision, it times the training step
(:meth:`Trainer.step`) fed three ways:

* ``full``: the training loop's own batches: uint8 images held on the device and augmented there
  in whole batches (image folders: the DataLoader the loop uses);
* ``model_only``: one batch augmented once and reused: the ceiling, no data work at all;
* ``reference``: torchvision's per-image PIL pipeline in DataLoader workers, as the papers'
  official code feeds its model (and that pipeline alone, without the model: its ceiling);

and the method's objective alone; counts the FLOPs of one step (forward, backward and the
objective, :class:`torch.utils.flop_counter.FlopCounterMode`) for the model FLOP utilisation, and
optionally times the fast linear probe (features once, then the classifier).

Every measurement is timed in several rounds, the measurements taking turns within each round,
and reported from its median round (images/s, ms per step, waiting for data and the data part of
the step all from that one round, so they agree), with the range over the rounds; rounds far apart
mean the machine was busy, and the figures say so. The augmentation time is the data part of the
full pipeline's own steps, timed inside them: it cannot exceed the step.

The images are random uint8 tensors of the dataset's shape (throughput does not depend on the
pixels; no download needed) unless ``real_data`` is given.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Callable, Iterator

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from . import distributed
from .config import RunConfig
from .data.base import DatasetSpec, ImageSet, ImageTensorSet
from .engine.batches import crop_size_of, on_device, pretraining_batches
from .evaluations.features import extract_features
from .evaluations.linear import fast_linear_probe
from .engine.runtime import Runtime, autocast, device_name
from .engine.trainer import Trainer
from .methods import Batch
from .models.backbones import backbone_stem

# Dense (no sparsity) bf16/fp16 tensor-core peaks from NVIDIA's data sheets (H100 Tensor Core
# GPU data sheet: SXM 989.4 TFLOPS, PCIe 756 TFLOPS; H200 data sheet: 989 TFLOPS; A100 data
# sheet: 312 TFLOPS). The first name that occurs in the device's name is used.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.0), ("A100", 312.0))


def peak_tflops(device: torch.device, amp_dtype: torch.dtype | None) -> float | None:
    """The device's published dense peak for the step's precision, where known (bf16/fp16 on the
    GPUs above); None otherwise (give ``--peak-tflops``)."""
    if device.type != "cuda" or amp_dtype is None:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for model, peak in BF16_PEAK_TFLOPS if model in name), None)


def synthetic_images(spec: DatasetSpec, count: int, seed: int = 0) -> ImageTensorSet:
    """``count`` random uint8 images of the dataset's side length, with random labels."""
    generator = torch.Generator().manual_seed(seed)
    size = spec.image_size
    return ImageTensorSet(
        torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator),
        torch.randint(0, spec.num_classes, (count,), generator=generator),
    )


class PILImages:
    """An in-memory split served image by image as PIL images, as torchvision's CIFAR and STL-10
    datasets serve them to the official codes' DataLoaders."""

    def __init__(self, data: ImageTensorSet) -> None:
        self.data, self.labels = data, data.labels

    def __len__(self) -> int:
        return len(self.data)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.data.images[index].permute(1, 2, 0).numpy())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer: Trainer, batches: Iterator[Batch], batch_size: int, steps: int) -> dict:
    """One round: ``steps`` timed steps after an untimed one (an epoch's first batch carries its
    order and the loader workers' start). Its seconds, the host's wait for the batches, and the
    data part of the steps: the time to make each batch, measured inside the timed steps (CUDA
    events on the device's stream, so nothing waits), so it cannot exceed the steps' time."""
    trainer.step(next(batches))
    cuda = trainer.device.type == "cuda"
    events = []
    _sync(trainer.device)
    waited, started = 0.0, time.perf_counter()
    for _ in range(steps):
        asked = time.perf_counter()
        if cuda:
            events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            events[-1][0].record()
        batch = next(batches)
        if cuda:
            events[-1][1].record()
        waited += time.perf_counter() - asked
        trainer.step(batch)
    _sync(trainer.device)
    seconds = time.perf_counter() - started
    data = sum(begin.elapsed_time(end) for begin, end in events) / 1000 if cuda else waited
    return {"seconds": seconds, "waited": waited, "data_seconds": data}


def time_loading(batches: Iterator[Batch], steps: int) -> dict:
    """One round of a batch iterator alone: its seconds for ``steps`` batches after an untimed
    first one (the loader workers' start)."""
    next(batches)
    started = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return {"seconds": time.perf_counter() - started}


def step_flops(trainer: Trainer, batch: Batch) -> int:
    """FLOPs of one step's loss and backward pass (the optimizer's elementwise work not counted)."""
    with FlopCounterMode(display=False) as counter:
        with autocast(trainer.amp_dtype, trainer.device):
            loss = trainer.forward(batch)
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def objective_inputs(trainer: Trainer, batch: Batch) -> tuple[tuple, bool]:
    """What one step's loss hands to the method's objective (embeddings, and the queue or banks
    it contrasts them with), and whether autocast was on inside the objective."""
    model, captured, device_type = trainer.model, {}, trainer.device.type
    objective = model.objective

    def capture(*args):
        captured["args"] = args
        captured["autocast"] = torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)
        return objective(*args)

    model.objective = capture
    try:
        with autocast(trainer.amp_dtype, trainer.device):
            trainer.forward(batch)
    finally:
        del model.objective
    return captured["args"], captured["autocast"]


def objective_timer(trainer: Trainer, batch: Batch) -> Callable[[int], dict]:
    """A round of the method's objective alone, forward and backward, on the inputs one step gave
    it (the part of a step that is the method rather than the encoders): its seconds for N calls."""
    args, _ = objective_inputs(trainer, batch)
    leaves = [a.detach().requires_grad_() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]

    def once() -> None:
        trainer.model.objective(*leaves).backward()

    def round_(steps: int) -> dict:
        once()
        _sync(trainer.device)
        started = time.perf_counter()
        for _ in range(steps):
            once()
        _sync(trainer.device)
        return {"seconds": time.perf_counter() - started}

    return round_


BUSY_SPREAD = 0.25
"""Rounds of one measurement further apart than this share of their median (fastest to slowest)
mean something else used the machine meanwhile: the output warns, and the figures are not to be
trusted as the machine's speed."""


def spread_of(rounds: list[dict]) -> tuple[float, float, float]:
    """(fastest, slowest, (slowest - fastest) / median) seconds of the rounds."""
    seconds = sorted(r["seconds"] for r in rounds)
    return seconds[0], seconds[-1], (seconds[-1] - seconds[0]) / statistics.median(seconds)


def median_round(rounds: list[dict]) -> dict:
    """The round whose time is the median (the lower one of an even count): every figure reported
    for a measurement comes from this one round, so they agree with each other."""
    return sorted(rounds, key=lambda r: r["seconds"])[(len(rounds) - 1) // 2]


def step_figures(rounds: list[dict], batch_size: int, steps: int) -> dict:
    """A step measurement's figures: its median round's images/s, ms per step, share of the time
    waiting for data and data part per step; the range of images/s over the rounds."""
    r, (fastest, slowest, _) = median_round(rounds), spread_of(rounds)
    figures = {"images_per_s": steps * batch_size / r["seconds"], "step_ms": 1000 * r["seconds"] / steps}
    if "waited" in r:
        figures.update(data_wait_fraction=r["waited"] / r["seconds"], data_ms_per_step=1000 * r["data_seconds"] / steps)
    figures.update(images_per_s_range=[steps * batch_size / slowest, steps * batch_size / fastest], rounds_images_per_s=[steps * batch_size / x["seconds"] for x in rounds])
    return figures


def time_probe(cfg: RunConfig, spec: DatasetSpec, trainer: Trainer, train: ImageTensorSet, test: ImageTensorSet, runtime: Runtime) -> float:
    """Seconds of the fast linear probe of the trained encoder: features of both splits computed
    once on the device, then the classifier (``cfg.probe``)."""
    encoder = trainer.model.backbone
    _sync(runtime.device)
    started = time.perf_counter()
    features = [extract_features(encoder, on_device(split, runtime.device), spec, cfg.probe, runtime) for split in (train, test)]
    fast_linear_probe(*features, spec.num_classes, cfg.probe, cfg.seed)
    _sync(runtime.device)
    return time.perf_counter() - started


def bench(cfg: RunConfig, spec: DatasetSpec, runtime: Runtime, steps: int, warmup: int, data: ImageSet | None = None, reference: bool = True, probe_images: int = 0, peak: float | None = None, rounds: int = 3) -> dict:
    """Every figure of one bench run (see the module docstring) as a JSON-ready dict;
    ``probe_images`` > 0 also times the fast probe on that many training images (and test images
    in the dataset's proportion)."""
    p, device = cfg.pretrain, runtime.device
    distributed.check_batch(p.batch_size)
    count = p.batch_size * (warmup + steps)
    images = data if data is not None else synthetic_images(spec, count)
    if len(images) < count:
        raise ValueError(f"{warmup + steps} steps of {p.batch_size} need {count} images; {spec.name} has {len(images)}")
    pretrain_images = spec.split_sizes.get(p.split) or (len(data) if data is not None else None)
    bank_size = max(len(images), pretrain_images or 0)  # memory banks (and ring searches over them) at their real size
    trainer = Trainer.build(cfg, spec, bank_size, steps_per_epoch=warmup + steps, runtime=runtime)
    views = trainer.model.views

    def epoch(source) -> Iterator[Batch]:
        return pretraining_batches(source, p.augment, spec, p.batch_size, device, 0, runtime.num_workers, views)

    device_images = on_device(images, device)
    first = next(epoch(device_images))
    eager = Trainer.build(cfg, spec, bank_size, 1, Runtime(device)) if runtime.compile else trainer
    flops = step_flops(eager, first) / p.batch_size
    pil = PILImages(images) if isinstance(images, ImageTensorSet) else images
    # each measurement is timed in ``rounds`` rounds, the measurements taking turns within a
    # round, so that a busy patch of the machine slows all of them rather than one
    measurements: dict[str, Callable[[int], dict]] = {
        "full": lambda n: time_steps(trainer, epoch(device_images), p.batch_size, n),
        "model_only": lambda n: time_steps(trainer, itertools.repeat(first), p.batch_size, n),
    }
    if reference:
        measurements["reference"] = lambda n: time_steps(trainer, epoch(pil), p.batch_size, n)
        measurements["reference_data_only"] = lambda n: time_loading(epoch(pil), n)
    measurements["objective"] = objective_timer(trainer, first)
    for name, measure in measurements.items():
        measure(warmup if name in ("full", "model_only") else 1)
    timed: dict[str, list[dict]] = {name: [] for name in measurements}
    for _ in range(rounds):
        for name, measure in measurements.items():
            timed[name].append(measure(steps))
    results = {name: step_figures(timed[name], p.batch_size, steps) for name in ("full", "model_only", *(("reference", "reference_data_only") if reference else ()))}
    if reference:
        results["reference"]["workers"] = runtime.num_workers
    objective = median_round(timed["objective"])["seconds"]
    full = results["full"]["images_per_s"]
    ratios = {"full_over_model_only": full / results["model_only"]["images_per_s"]}
    if reference:
        ratios["full_over_reference"] = full / results["reference"]["images_per_s"]
    peak = peak if peak is not None else peak_tflops(device, trainer.amp_dtype)
    achieved = flops * full / 1e12
    out = {
        "method": cfg.method,
        "dataset": spec.name,
        "data": "real" if data is not None else "synthetic",
        "backbone": cfg.model.backbone,
        "stem": backbone_stem(cfg.model.backbone, cfg.model.stem, crop_size_of(p.augment, spec)),
        "crop_size": crop_size_of(p.augment, spec),
        "batch_size": p.batch_size,
        "precision": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32",
        "compile": runtime.compile,
        "device": device_name(device),
        "processes": distributed.world_size(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "steps": steps,
        "warmup": warmup,
        "rounds": rounds,
        **results,
        # the data part of the full pipeline's median round: batches held on the device are
        # indexed and augmented there, inside the step (a DataLoader's workers augment ahead)
        "augment_ms_per_step": results["full"]["data_ms_per_step"] if hasattr(device_images, "images") else None,
        "objective_ms_per_step": 1000 * objective / steps,
        "objective_ms_range": [1000 * x / steps for x in spread_of(timed["objective"])[:2]],
        "ratios": ratios,
        "flops_per_image": flops,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "mfu": achieved / peak if peak else None,
        "epoch_seconds": pretrain_images / full if pretrain_images else None,
        "pretrain_images": pretrain_images,
        "warnings": busy_warnings(timed, rounds),
    }
    if probe_images:
        sizes = spec.split_sizes
        test_images = max(1, round(probe_images * sizes["test"] / sizes["train"])) if "test" in sizes and "train" in sizes else probe_images
        out["probe_images"] = [probe_images, test_images]
        out["probe_seconds"] = time_probe(cfg, spec, trainer, synthetic_images(spec, probe_images, 1), synthetic_images(spec, test_images, 2), runtime)
    return out


LABELS = {"full": "full pipeline", "model_only": "model only", "reference": "reference pipeline", "reference_data_only": "reference loader alone", "objective": "objective alone"}


def busy_warnings(timed: dict[str, list[dict]], rounds: int) -> list[str]:
    """What makes the figures untrustworthy: one line per measurement whose rounds spread more than
    :data:`BUSY_SPREAD` of their median (the machine was busy), or that there was one round only."""
    if rounds < 2:
        return ["one round per measurement: no spread to tell whether the machine was busy (give --rounds 3 or more)"]
    found = []
    for name, measured in timed.items():
        fastest, slowest, spread = spread_of(measured)
        if spread > BUSY_SPREAD:
            found.append(f"{LABELS[name]}: its {rounds} rounds took {1000 * fastest:.0f} to {1000 * slowest:.0f} ms, {100 * spread:.0f}% of their median apart: the machine was busy")
    return found
