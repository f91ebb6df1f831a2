"""The chain of stages behind ``hardneg-bench run``.

    pretrain (or random-init, or a released checkpoint) --> probe, knn, and each transfer target's
                                                            evaluation (hardneg_bench/evaluations/)

Each stage's config holds everything its result depends on, including its parent's key, and its
key is the hash of that config. A stage whose key has a result in the store is skipped; an
interrupted pretraining resumes from its checkpoint. Every finished stage appends one record to
the ledger, which is all that ``report`` reads.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torchvision

from . import __version__, distributed
from .checkpoints import ImportedEncoder
from .config import RunConfig, config_key, to_dict
from .data.base import DatasetSpec, ImageSet
from .data.normalization import DATASET, normalized
from .data.registry import get_dataset
from .engine.batches import on_device
from .engine.pretrain import ENCODER, TrainingDiverged, load_encoder, load_encoder_with_head, pretrain, save_random_init
from .engine.trainer import encoder_spec
from .engine.runtime import Runtime
from .evaluations.base import Evaluation
from .evaluations.features import extract_features
from .evaluations.registry import EVALUATIONS, Target
from .methods.registry import runs_as
from .store import RunStore, atomic_torch_save

RANDOM_INIT = "random-init"
CHECKPOINT = "checkpoint"
"""The stage that reads an encoder file into the run store (``hardneg-bench evaluate``)."""


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    """Versions and commit recorded with every ledger record."""
    return {
        "hardneg_bench": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
    }


def runs_as_label(cfg: RunConfig) -> dict | None:
    """``{"method", "why"}`` when ``cfg``'s settings switch its method's distinctive part off over
    its epochs, so that it trains another method's objective (MoCHi inside its warm-up is MoCo-v2);
    None otherwise."""
    found = runs_as(cfg.method, cfg.method_params, cfg.pretrain.epochs)
    return None if found is None else {"method": found[0], "why": found[1]}


def pretrain_stage(cfg: RunConfig) -> tuple[dict, dict]:
    """The pretraining stage's config (its key is the hash) and its report label; the label's
    ``group`` is the key without the seed, shared by every seed of one configuration, and its
    ``runs_as`` is :func:`runs_as_label` (every evaluation of the encoder inherits the label)."""
    config = {k: to_dict(getattr(cfg, k), keyed=True) for k in ("method", "dataset", "seed", "model", "method_params", "pretrain")}
    label = {
        "method": cfg.method,
        "dataset": cfg.dataset,
        "backbone": cfg.model.backbone,
        "epochs": cfg.pretrain.epochs,
        "seed": cfg.seed,
        "group": config_key({**config, "seed": None}),
        "runs_as": runs_as_label(cfg),
    }
    return config, label


def run_dataset(cfg: RunConfig, name: str) -> DatasetSpec:
    """Dataset ``name`` as ``cfg`` trains and evaluates on it: normalised as ``model.normalization`` says."""
    return normalized(get_dataset(name), cfg.model.normalization)


def random_init_stage(cfg: RunConfig) -> tuple[dict, dict]:
    """The random-init baseline's stage config and label: keyed by the encoder architecture only,
    so every method with the same encoder shares it."""
    config = {"method": RANDOM_INIT, "dataset": cfg.dataset, "seed": cfg.seed, "encoder": encoder_spec(cfg, run_dataset(cfg, cfg.dataset)).to_dict()}
    label = {"method": RANDOM_INIT, "dataset": cfg.dataset, "backbone": cfg.model.backbone, "epochs": 0, "seed": cfg.seed, "group": config_key({**config, "seed": None})}
    return config, label


def checkpoint_stage(cfg: RunConfig, imported: ImportedEncoder, name: str) -> tuple[dict, dict]:
    """The config of a released checkpoint read into our encoder format (keyed by the file's
    content and how it is read, not by its name) and its report label."""
    config = {"sha256": imported.sha256, "format": imported.format, "normalization": cfg.model.normalization}
    label = {
        "method": f"{name} ({imported.format} weights)",
        "checkpoint": name,
        "format": imported.format,
        "dataset": cfg.dataset,
        "backbone": imported.record["encoder"]["backbone"],
        "epochs": "released",
        "seed": cfg.seed,
        "group": config_key(config),
        "runs_as": None,
    }
    return config, label


@dataclass(frozen=True)
class Encoder:
    """A pretraining, random-init or checkpoint stage output (``stage`` names which) and what a
    report row is labelled with."""

    key: str
    label: dict
    stage: str = "pretrain"


@dataclass
class Pipeline:
    cfg: RunConfig
    store: RunStore
    runtime: Runtime
    data_root: Path
    download: bool = True
    records: list[dict] = field(default_factory=list)
    _data: dict = field(default_factory=dict)

    # -- data ---------------------------------------------------------------------------------

    def data(self, spec: DatasetSpec, split: str) -> ImageSet:
        """A split, loaded once per run."""
        if (spec.name, split) not in self._data:
            self._data[spec.name, split] = spec.load(split, self.data_root, self.download)
        return self._data[spec.name, split]

    def device_data(self, spec: DatasetSpec, split: str):
        if (spec.name, split, "device") not in self._data:
            self._data[spec.name, split, "device"] = on_device(self.data(spec, split), self.runtime.device)
        return self._data[spec.name, split, "device"]

    # -- stages -------------------------------------------------------------------------------

    def _stage(self, stage: str, config: dict, label: dict, compute: Callable[[Path], dict], needs: tuple = (), together: bool = True) -> dict:
        """The stage's record, computed unless its key is already done. ``needs`` lists the
        (dataset, split) pairs it reads: they are loaded first, so a missing dataset fails
        before anything is written. ``together``: every process of the run calls this (and
        ``compute`` writes in process 0 only); whether the stage is done is then process 0's
        answer in all of them, so that none computes alone. Otherwise process 0 alone calls it."""
        key = config_key(config)
        done = (lambda: distributed.main_decides(self.store.is_done(stage, key), self.runtime.device)) if together else (lambda: self.store.is_done(stage, key))
        if done():
            return self._cached(stage, key)
        for spec, split in needs:
            self.data(spec, split)
        main = distributed.is_main()
        with self.store.stage_lock(stage, key) if main else contextlib.nullcontext():
            if done():  # another command finished it while we waited for its lock
                return self._cached(stage, key)
            run_dir = self.store.stage_dir(stage, key)
            if main:
                self.store.write_config(stage, key, config)
            started = time.perf_counter()
            record = {"stage": stage, "key": key, "parent": config.get("parent"), **label}
            provenance = {"config": config, "environment": environment()}
            try:
                metrics = compute(run_dir)
            except TrainingDiverged as err:
                if main:
                    self.store.fail({**record, "error": str(err), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **provenance})
                raise
            record.update(metrics=metrics, wall_time_s=round(time.perf_counter() - started, 3), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **provenance)
            if main:
                self.store.finish(record)
        self.records.append(record)
        return record

    def _cached(self, stage: str, key: str) -> dict:
        record = self.store.read_result(stage, key)
        if distributed.is_main():
            self.store.append_ledger(record, unless_present=True)
        self.records.append(record)
        return record

    def pretrained_encoder(self) -> Encoder:
        cfg, spec = self.cfg, run_dataset(self.cfg, self.cfg.dataset)
        config, label = pretrain_stage(cfg)
        # everything the run reads, the transfer datasets too: a missing one fails now, not after pretraining
        targets = [(t.evaluation, self.target_dataset(t.evaluation, t.dataset)) for t in self.transfer_targets()]
        needs = ((spec, cfg.pretrain.split), (spec, "train"), (spec, "test"), *((ds, split) for evaluation, ds in targets for split in evaluation.splits))
        record = self._stage("pretrain", config, label, lambda run_dir: pretrain(cfg, spec, self.data(spec, cfg.pretrain.split), run_dir, self.runtime), needs)
        return Encoder(record["key"], label)

    def random_init_encoder(self) -> Encoder:
        cfg, spec = self.cfg, run_dataset(self.cfg, self.cfg.dataset)
        config, label = random_init_stage(cfg)
        record = self._stage("pretrain", config, label, lambda run_dir: save_random_init(cfg, spec, run_dir))
        return Encoder(record["key"], label)

    def encoder_module(self, encoder: Encoder, head: bool = False) -> torch.nn.Module:
        """The stored encoder (followed by its projection head with ``head``), frozen."""
        path = self.store.stage_dir(encoder.stage, encoder.key) / ENCODER
        return load_encoder_with_head(path, self.runtime.device) if head else load_encoder(path, self.runtime.device)

    def features(self, encoder: Encoder, spec: DatasetSpec, split: str, head: bool = False):
        """Frozen features and labels of a split, extracted once per run for every evaluation."""
        cache_key = ("features", encoder.key, spec.name, split, head)
        if cache_key not in self._data:
            self._data[cache_key] = extract_features(self.encoder_module(encoder, head), self.device_data(spec, split), spec, self.cfg.probe, self.runtime)
        return self._data[cache_key]

    def target_dataset(self, evaluation: Evaluation, name: str):
        """The dataset ``evaluation`` reads for ``name`` (a one-line error when it is missing)."""
        return evaluation.dataset(self.cfg, name, self.data_root) if evaluation.dataset is not None else run_dataset(self.cfg, name)

    def evaluation(self, evaluation: Evaluation, encoder: Encoder, name: str) -> list[dict]:
        """Every stage of ``evaluation`` for ``encoder`` on the dataset ``name`` (a transfer when it
        is not the pretraining dataset), each cached by its own key."""
        dataset = self.target_dataset(evaluation, name)
        needs = tuple((dataset, split) for split in evaluation.splits)
        records = []
        for stage in evaluation.stages(self.cfg, encoder.key, name, name != self.cfg.dataset):
            label = {**encoder.label, "eval_dataset": name, **stage.label}
            compute = lambda _, stage=stage: evaluation.compute(self, encoder, dataset, stage)
            records.append(self._stage(stage.stage, stage.config, label, compute, needs, together=evaluation.data_parallel))
        return records

    def transfer_targets(self) -> list[Target]:
        """``cfg.transfer`` (``DATASET`` or ``DATASET:PROTOCOL``), or the dataset's default
        transfer target with the linear probe."""
        names = self.cfg.transfer if self.cfg.transfer is not None else (get_dataset(self.cfg.dataset).transfer_target,)
        return [Target.parse(name) for name in names if name]

    def evaluate(self, *encoders: Encoder) -> None:
        """For each encoder, the linear probe and kNN on the pretraining dataset, then every
        transfer target. Every process of the run calls this. With several processes, the
        data-parallel evaluations (detection fine-tuning) of every encoder come first, in all the
        processes together; then process 0 alone runs the others while the rest return (they
        would otherwise wait in a collective through hours of probes, past its timeout)."""
        plan = [(evaluation, encoder, name) for encoder in encoders for evaluation, name in self._evaluations()]
        if distributed.world_size() > 1:
            together = [step for step in plan if step[0].data_parallel]
            plan = together + ([step for step in plan if not step[0].data_parallel] if distributed.is_main() else [])
        for evaluation, encoder, name in plan:
            self.evaluation(evaluation, encoder, name)

    def _evaluations(self) -> list[tuple[Evaluation, str]]:
        """(evaluation, dataset) of a run: the linear probe and kNN on the pretraining dataset,
        then every transfer target."""
        own = self.cfg.dataset
        return [(EVALUATIONS["linear"], own), (EVALUATIONS["knn"], own), *((t.evaluation, t.dataset) for t in self.transfer_targets())]

    def checkpoint_encoder(self, path: Path, imported: ImportedEncoder) -> Encoder:
        """An encoder file (``path``, read as ``imported``) stored in our encoder format once, as
        the ``checkpoint`` stage: the evaluations then run on it as on a pretraining. The input
        normalisation its format expects replaces the config's."""
        if imported.normalization != DATASET:
            self.cfg = replace(self.cfg, model=replace(self.cfg.model, normalization=imported.normalization))
        config, label = checkpoint_stage(self.cfg, imported, path.name)

        def compute(run_dir: Path) -> dict:
            if distributed.is_main():
                atomic_torch_save(imported.record, run_dir / ENCODER)
            return {"sha256": imported.sha256, "format": imported.format, "origin": str(path.resolve()), "code": imported.source, "normalization": self.cfg.model.normalization}

        record = self._stage(CHECKPOINT, config, label, compute)
        return Encoder(record["key"], label, CHECKPOINT)

    def run_checkpoint(self, path: Path, imported: ImportedEncoder) -> list[dict]:
        """Probe, kNN and transfer of the encoder in ``path`` (``hardneg-bench evaluate``)."""
        self.evaluate(self.checkpoint_encoder(path, imported))
        return self.records

    def run(self) -> list[dict]:
        """Walk the chain; return the records of every stage of this run (cached or new). With
        several processes all of them pretrain and fine-tune detectors, and process 0 alone runs
        the other evaluations (:meth:`evaluate`)."""
        distributed.check_shares(self.cfg.pretrain.batch_size, self.cfg.model.bn_splits)
        encoders = [self.pretrained_encoder()]
        if self.cfg.random_init_baseline:
            encoders.append(self.random_init_encoder())
        self.evaluate(*encoders)
        return self.records
