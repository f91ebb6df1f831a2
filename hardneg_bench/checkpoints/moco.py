"""MoCo v1/v2 (facebookresearch/moco): ``checkpoint_XXXX.pth.tar``.

Layout, from facebookresearch/moco@132aea9: main_moco.py saves
``{"epoch", "arch", "state_dict": model.state_dict(), "optimizer"}`` (save_checkpoint call) of
``DistributedDataParallel(MoCo(models.__dict__[arch], ..., mlp))`` (the only supported mode), so
every key starts with ``module.``; moco/builder.py ``MoCo`` holds ``encoder_q`` and ``encoder_k``
(torchvision ResNets with ``num_classes=dim``), v2's ``--mlp`` replacing ``fc`` by
``Sequential(Linear(d, d), ReLU(), fc)``, and the buffers ``queue`` and ``queue_ptr``.
main_lincls.py keeps ``module.encoder_q.*`` except ``module.encoder_q.fc.*``; here that fc is the
projection head (v1: one Linear, v2: Linear-ReLU-Linear). Inputs: ImageNet normalisation
(main_moco.py ``transforms.Normalize``).
"""

from __future__ import annotations

from .base import Format, Rule, linear_head, record_of, resnet_spec, split_keys, state_dict_in

NAME = "moco"
SOURCE = "facebookresearch/moco@132aea9 main_moco.py, moco/builder.py"
RULES = (
    Rule("module.encoder_q.fc.", "head"),
    Rule("module.encoder_q.", "backbone"),
    Rule("module.encoder_k.", None, "the momentum (key) encoder"),
    Rule("module.queue_ptr", None, "the queue pointer"),
    Rule("module.queue", None, "the queue of keys"),
)


def detect(payload) -> bool:
    sd = payload.get("state_dict") if isinstance(payload, dict) else None
    return isinstance(sd, dict) and any(isinstance(k, str) and k.startswith("module.encoder_q.") for k in sd)


def read(payload) -> tuple[dict, str]:
    parts = split_keys(state_dict_in(payload, "state_dict"), RULES, NAME)
    backbone = parts.get("backbone", {})
    head_weights = {f"fc.{k}": v for k, v in parts.get("head", {}).items()}
    spec = resnet_spec(backbone)
    head = None
    if head_weights:
        head = linear_head(head_weights, "fc.0", "fc.2") if "fc.0.weight" in head_weights else linear_head(head_weights, "fc", None)
    return record_of(spec, backbone, head, "imagenet"), "imagenet"


FORMAT = Format(NAME, SOURCE, detect, read)
