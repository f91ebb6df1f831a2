"""``hardneg-bench export``: a finished pretraining's encoder as a torchvision ResNet state dict.

Our ResNet backbones are torchvision's :class:`~torchvision.models.ResNet` with ``fc`` an
``nn.Identity`` (models/backbones.py; the ``cifar`` stem swaps ``conv1`` for a 3x3 stride-1
convolution and ``maxpool`` for an identity), so their state dict is torchvision's without
``fc.*``. :func:`export` writes it three ways into a folder: ``NAME.pth`` (``torch.save``),
``NAME.safetensors``, and ``NAME.json`` saying what it is and how to build the model that loads it
(``load``), with the input normalisation it was trained with. Encoders that are not one plain
torchvision ResNet (the tiny CNN, CMC's two Lab streams, a width other than 1) are refused.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .data.normalization import DATASET
from .engine.pretrain import ENCODER
from .models import EncoderSpec, build_encoder
from .models.backbones import RESNETS, resolved_stem
from .store import RunStore, atomic_torch_save, atomic_write_bytes, atomic_write_text

SUFFIXES = (".pth", ".safetensors", ".json")
STEM_SWAP = {
    "cifar": "m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = torch.nn.Identity(); ",
    "imagenet": "",
}


class ExportRefused(ValueError):
    """The stage cannot be exported (not found, not finished, not a torchvision ResNet, a file in
    the way); the message is one line."""


@dataclass(frozen=True)
class Exported:
    paths: tuple[Path, ...]
    metadata: dict


def pretraining_by_key(store: RunStore, prefix: str) -> str:
    """The full key of the finished pretraining stage whose key is (or starts with) ``prefix``."""
    found = store.find(prefix)
    if not found:
        started = sorted(p.name for p in (store.root / "pretrain").glob(f"{glob.escape(prefix)}*") if p.is_dir()) if prefix and (store.root / "pretrain").is_dir() else []
        if len(started) == 1:
            raise ExportRefused(f"the pretraining {started[0]} has not finished (no result.json in {store.stage_dir('pretrain', started[0])}): run it to the end first")
        raise ExportRefused(f"no finished stage has the key {prefix!r} in {store.root} (hardneg-bench list runs)")
    if len(found) > 1:
        raise ExportRefused(f"{len(found)} stages start with {prefix!r}: give more of the key")
    stage, key = found[0]
    if stage != "pretrain":
        parent = store.read_result(stage, key).get("parent")
        raise ExportRefused(f"{key} is a {stage} stage; export takes a pretraining stage's key" + (f" (this one evaluates the encoder {parent})" if parent else ""))
    return key


def refusal(spec: EncoderSpec) -> str | None:
    """Why ``spec``'s encoder is not a plain torchvision ResNet; None when it is."""
    if spec.lab_split:
        return f"CMC's encoder is two {spec.backbone} streams (the L channel and the ab channels of Lab, 1 and 2 input channels, width {spec.width:g}, the Lab conversion inside), not one torchvision ResNet: it cannot be exported as a torchvision state dict"
    if spec.backbone not in RESNETS:
        return f"the {spec.backbone} backbone is not a torchvision model (only resnet18 and resnet50 encoders export as torchvision state dicts)"
    if spec.width != 1:
        return f"a {spec.backbone} of width {spec.width:g} has other layer widths than torchvision's {spec.backbone}: it cannot be loaded into one"
    return None


def load_snippet(backbone: str, stem: str) -> str:
    """Python that builds the torchvision model this state dict loads into (``state_dict`` given)."""
    return f"m = torchvision.models.{backbone}(); m.fc = torch.nn.Identity(); {STEM_SWAP[stem]}m.load_state_dict(state_dict)"


def torchvision_model(backbone: str, stem: str) -> torch.nn.Module:
    """torchvision's ``backbone`` as :func:`load_snippet` builds it (weights random)."""
    import torchvision

    m = getattr(torchvision.models, backbone)()
    m.fc = torch.nn.Identity()
    if stem == "cifar":
        m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = torch.nn.Identity()
    return m


def _normalisation(record: dict, spec: EncoderSpec) -> tuple[str, list[float], list[float]]:
    """The input normalisation the encoder was trained with: its name (``model.normalization``) and
    mean and std, those the stage built its encoder with (run_dataset's, in the EncoderSpec)."""
    model = (record.get("config") or {}).get("model") or {}
    name = model.get("normalization", DATASET)
    mean, std = [float(v) for v in spec.input_mean], [float(v) for v in spec.input_std]
    if mean == [0.0, 0.0, 0.0] and std == [1.0, 1.0, 1.0] and record.get("dataset"):  # a file older than input_mean: recompute
        from .data.normalization import normalized
        from .data.registry import get_dataset

        data = normalized(get_dataset(record["dataset"]), name)
        mean, std = [float(v) for v in data.mean], [float(v) for v in data.std]
    return name, mean, std


def export(store: RunStore, key: str, out: Path, name: str | None = None, force: bool = False) -> Exported:
    """Write the encoder of the finished pretraining ``key`` as ``out/NAME.{pth,safetensors,json}``;
    an existing file is replaced only with ``force``."""
    from safetensors.torch import save as safetensors_bytes

    from .pipeline import environment

    record = store.read_result("pretrain", key)
    path = store.stage_dir("pretrain", key) / ENCODER
    if not path.is_file():
        raise ExportRefused(f"the pretraining {key} has finished but {path} is missing: remove {path.parent} and run it again")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    spec = EncoderSpec(**saved["encoder"])
    why = refusal(spec)
    if why is not None:
        raise ExportRefused(f"cannot export {key}: {why}")
    stem = resolved_stem(spec.stem, spec.image_size)
    name = name or f"{record.get('method', 'encoder')}-{record.get('dataset', 'data')}-{spec.backbone}-{key}"
    if out.exists() and not out.is_dir():
        raise ExportRefused(f"--out {out} is a file, not a folder")
    paths = tuple(out / f"{name}{suffix}" for suffix in SUFFIXES)
    if not force:
        existing = [str(p) for p in paths if p.exists()]
        if existing:
            raise ExportRefused(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''} already; not written over without --force")

    # our encoder, loaded as evaluation loads it: its state dict is exactly torchvision's minus fc
    encoder = build_encoder(spec)
    encoder.load_state_dict(saved["state_dict"])
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in encoder.state_dict().items() if not k.startswith("fc.")}
    reference = torchvision_model(spec.backbone, stem)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        raise ExportRefused(f"cannot export {key}: its state dict does not match torchvision's {spec.backbone} ({len(set(got) ^ set(expected))} keys differ, {sum(got.get(k) != s for k, s in expected.items() if k in got)} shapes)")

    normalization, mean, std = _normalisation(record, spec)
    env = environment()
    metadata = {
        "format": "torchvision ResNet state dict without fc (fc = torch.nn.Identity)",
        "method": record.get("method"),
        "dataset": record.get("dataset"),
        "backbone": spec.backbone,
        "stem": stem,
        "files": {"pth": paths[0].name, "safetensors": paths[1].name},
        "load": load_snippet(spec.backbone, stem),
        "read_state_dict": {"pth": f"state_dict = torch.load({paths[0].name!r}, weights_only=True)", "safetensors": f"state_dict = safetensors.torch.load_file({paths[1].name!r})"},
        "input_size": spec.image_size,
        "input_channels": 3,
        "input_mean": mean,
        "input_std": std,
        "input_normalization": normalization,
        "input_note": "RGB scaled to [0, 1], then (x - mean) / std per channel; input_size is the pretraining crop in px"
        + ("; with model.normalization 'dataset' each dataset was evaluated with its own statistics (these are the pretraining dataset's)" if normalization == DATASET else ""),
        "feature_dim": encoder.feature_dim,
        "stage_key": key,
        "epochs": record.get("epochs"),
        "seed": record.get("seed"),
        "hardneg_bench_version": env["hardneg_bench"],
        "git_commit": env["git_commit"],
        "exported_with": env,
        "trained_with": record.get("environment"),
        "config": record.get("config"),
    }
    atomic_torch_save(state, paths[0])
    atomic_write_bytes(paths[1], safetensors_bytes(state, metadata={"format": "pt", "stage_key": key, "backbone": spec.backbone, "stem": stem}))
    atomic_write_text(paths[2], json.dumps(metadata, indent=1) + "\n")
    return Exported(paths, metadata)
