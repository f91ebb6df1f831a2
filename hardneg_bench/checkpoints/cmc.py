"""CMC (HobbitLong/CMC): ``ckpt_epoch_<n>.pth`` of train_CMC.py (two Lab streams) and of
train_moco_ins.py (InsDis / MoCo single-stream ResNet-50).

Layout, from HobbitLong/CMC@7b227be: train_CMC.py saves ``{"opt": args (argparse.Namespace),
"model": model.state_dict(), "contrast": contrast.state_dict(), "optimizer", "epoch"[, "amp"]}``
with ``model = MyResNetsCMC(name)`` (models/resnet.py), whose ``self.encoder =
nn.DataParallel(ResNetV1/V2/V3(name))``: keys ``encoder.module.l_to_ab.<resnet>`` (the L stream, 1
input channel) and ``encoder.module.ab_to_l.<resnet>`` (the ab stream, 2 channels), each a
models/resnet.py ``ResNet`` of width 0.5 (V1), 1 (V2) or 2 (V3): torchvision's names (conv1 7x7
with 64 channels at every width, bn1, layer1-4 of ``int(64 * width)`` base planes, ``fc`` to the
embedding, no weights in avgpool / l2norm). train_moco_ins.py saves the same dict (plus
``"model_ema"``, the momentum encoder) for ``InsResNet50(width)``, ``self.encoder =
nn.DataParallel(resnet50(width=width))``: keys ``encoder.module.<resnet>``.

Mapped onto our :class:`~hardneg_bench.models.colour.LabSplitEncoder` (``lab_split: true``):
``l_to_ab`` -> ``l_stream``, ``ab_to_l`` -> ``ab_stream``; the per-stream ``fc`` (CMC's two
heads) is dropped, as our CMC records store no head. CMC's input is Lab normalised to about
[-1, 1] with the sRGB gamut's extremes (train_CMC.py ``get_train_loader``); our LabSplitEncoder
takes RGB normalised with the spec's ``input_mean``/``input_std``, un-normalises it and applies
that same Lab conversion and normalisation itself. The spec records ImageNet statistics, so the
import's ``normalization`` is ``imagenet``: feed ImageNet-normalised RGB and the streams see
exactly CMC's Lab input. CMC's ``AvgPool2d(7)`` equals our global average pool on 224-px inputs
(7x7 maps), the size CMC trains and evaluates at.

InsResNet50 files: one ResNet-50 of the file's width, ``fc`` (Linear to 128, then L2 norm) the
one-layer head; ``model_ema`` ignored; inputs ImageNet-normalised RGB (train_moco_ins.py).
"""

from __future__ import annotations

from ..data.normalization import NORMALIZATIONS
from ..models.encoder import EncoderSpec
from .base import Format, LayoutError, Rule, linear_head, record_of, resnet_spec, split_keys, state_dict_in, strict_state_dict

NAME = "cmc"
SOURCE = "HobbitLong/CMC@7b227be models/resnet.py, train_CMC.py, train_moco_ins.py"
TWO_STREAMS = (
    Rule("encoder.module.l_to_ab.fc.", None, "the L stream's head"),
    Rule("encoder.module.ab_to_l.fc.", None, "the ab stream's head"),
    Rule("encoder.module.l_to_ab.", "l_stream"),
    Rule("encoder.module.ab_to_l.", "ab_stream"),
)
ONE_STREAM = (Rule("encoder.module.fc.", "head"), Rule("encoder.module.", "backbone"))


def detect(payload) -> bool:
    sd = payload.get("model") if isinstance(payload, dict) else None
    return isinstance(sd, dict) and any(isinstance(k, str) and k.startswith(("encoder.module.l_to_ab.", "encoder.module.conv1.")) for k in sd)


def read(payload) -> tuple[dict, str]:
    sd = state_dict_in(payload, "model")
    if any(k.startswith(("encoder.module.l_to_ab.", "encoder.module.ab_to_l.")) for k in sd):
        return _two_streams(sd)
    parts = split_keys(sd, ONE_STREAM, NAME)
    backbone = parts.get("backbone", {})
    head = linear_head({f"fc.{k}": v for k, v in parts.get("head", {}).items()}, "fc", None)
    return record_of(resnet_spec(backbone), backbone, head, "imagenet"), "imagenet"


def _two_streams(sd) -> tuple[dict, str]:
    parts = split_keys(sd, TWO_STREAMS, NAME)
    l_weights, ab_weights = parts.get("l_stream", {}), parts.get("ab_stream", {})
    l_spec, ab_spec = resnet_spec(l_weights), resnet_spec(ab_weights)
    if (l_spec.backbone, l_spec.width) != (ab_spec.backbone, ab_spec.width):
        raise LayoutError(f"the L stream is a {l_spec.backbone} of width {l_spec.width:g}, the ab stream a {ab_spec.backbone} of width {ab_spec.width:g}: our Lab encoder has one of each")
    mean, std = NORMALIZATIONS["imagenet"]
    spec = EncoderSpec(backbone=l_spec.backbone, stem=l_spec.stem, image_size=224, width=l_spec.width, lab_split=True, input_mean=tuple(mean), input_std=tuple(std))
    weights = {f"l_stream.{k}": v for k, v in l_weights.items()} | {f"ab_stream.{k}": v for k, v in ab_weights.items()}
    from ..models.encoder import build_encoder

    derived = {k: v for k, v in build_encoder(spec).state_dict().items() if k in ("input_mean", "input_std", "lab_mean", "lab_std")}
    return {"encoder": spec.to_dict(), "state_dict": strict_state_dict(spec, weights, derived)}, "imagenet"


FORMAT = Format(NAME, SOURCE, detect, read)
