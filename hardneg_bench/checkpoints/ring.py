"""The Ring code (mhw32/contrastive-ring-public): PyTorch Lightning checkpoints of its systems.

Layout, from mhw32/contrastive-ring-public@fb3e1c2: scripts/run.py trains a
``pl.LightningModule`` with ``pl.callbacks.ModelCheckpoint``, which saves
``{"state_dict": system.state_dict(), "epoch", "global_step", "optimizer_states", ...}``;
src/systems/systems.py ``PretrainNCESystem`` holds ``self.model`` = src/models/resnet2.py
``CustomResNet(resnet_version, out_dim, conv3x3)`` and ``self.memory_bank`` (src/objectives/memory.py
``MemoryBank``, buffer ``_bank``); ``PretrainMoCoSystem`` adds ``model_k`` (the key encoder) and
the buffers ``queue``, ``queue_ptr``. ``CustomResNet.features`` = Sequential of torchvision
resnet18/50's children but fc: ``features.0`` conv1, ``.1`` bn1, (``.2`` relu, ``.3`` maxpool or
Identity), ``.4``-``.7`` layer1-4, (``.8`` avgpool); the 3x3 stem only when the config sets
``conv3x3`` (default: torchvision's 7x7), so the stem is read from conv1's kernel. Head: ``l1``
Linear(n, n), ReLU, ``l2`` Linear(n, out_dim). Inputs: ImageNet normalisation on every dataset
(src/datasets/datasets.py).
"""

from __future__ import annotations

from .base import Format, LayoutError, Rule, linear_head, record_of, resnet_spec, split_keys, state_dict_in

NAME = "ring"
SOURCE = "mhw32/contrastive-ring-public@fb3e1c2 src/models/resnet2.py, src/systems/systems.py"
STAGES = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
RULES = (
    Rule("model.features.", "backbone"),
    Rule("model.l1.", "head"),
    Rule("model.l2.", "head"),
    Rule("model_k.", None, "the MoCo key encoder"),
    Rule("memory_bank.", None, "the memory bank"),
    Rule("queue_ptr", None, "the queue pointer"),
    Rule("queue", None, "the MoCo queue"),
)


def detect(payload) -> bool:
    sd = payload.get("state_dict") if isinstance(payload, dict) else None
    return isinstance(sd, dict) and "model.features.0.weight" in sd


def read(payload) -> tuple[dict, str]:
    sd = state_dict_in(payload, "state_dict")
    parts = split_keys(sd, RULES, NAME)
    backbone = {}
    for key, value in parts.get("backbone", {}).items():
        index, _, rest = key.partition(".")
        if index not in STAGES:
            raise LayoutError(f"key {value[0]!r}: model.features.{index} is not a weighted stage of CustomResNet (0, 1, 4-7)")
        backbone[f"{STAGES[index]}.{rest}"] = value
    head_weights = {k: v for k, v in sd.items() if k.startswith(("model.l1.", "model.l2."))}
    head = linear_head({k[len("model."):]: (k, v) for k, v in head_weights.items()}, "l1", "l2")
    return record_of(resnet_spec(backbone), backbone, head, "imagenet"), "imagenet"


FORMAT = Format(NAME, SOURCE, detect, read)
