"""Released checkpoints of the official codes read into our encoder format (issue 15 items 2, 5).

None of the real released files can be downloaded here: each test writes a checkpoint in exactly
the layout the official code writes (module names reproduced from that code, cited in each
test's docstring), reads it with ``read_checkpoint`` and checks that our encoder, rebuilt from the
record alone, gives the writing module's features (eval mode, atol 1e-5).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck

from hardneg_bench.checkpoints import FORMATS, CheckpointError, read_checkpoint
from hardneg_bench.data.normalization import NORMALIZATIONS
from hardneg_bench.models.colour import LAB_MEAN, LAB_STD, rgb_to_lab
from hardneg_bench.models.encoder import EncoderSpec, build_encoder
from hardneg_bench.models.heads import projection_head


def ours(imported):
    encoder = build_encoder(EncoderSpec(**imported.record["encoder"]))
    encoder.load_state_dict(imported.record["state_dict"], strict=True)
    return encoder.eval()


def our_head(imported):
    head = projection_head(**imported.record["head"]["spec"])
    head.load_state_dict(imported.record["head"]["state_dict"], strict=True)
    return head.eval()


def randomise_bn(module: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so a BatchNorm mapped to the wrong place shows."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return module.eval()


class Parallel(nn.Module):
    """Stands for nn.DataParallel / DistributedDataParallel: the wrapped model as ``module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64)


# ---------------------------------------------------------------------------------------------
# MoCo


def moco_model(arch, mlp: bool) -> nn.Module:
    """facebookresearch/moco@132aea9 moco/builder.py MoCo.__init__: encoder_q/encoder_k =
    base_encoder(num_classes=dim), --mlp: fc = Sequential(Linear(d, d), ReLU(), fc); buffers
    queue (dim, K) and queue_ptr."""
    model = nn.Module()
    for name in ("encoder_q", "encoder_k"):
        enc = arch(num_classes=128)
        if mlp:
            d = enc.fc.weight.shape[1]
            enc.fc = nn.Sequential(nn.Linear(d, d), nn.ReLU(), enc.fc)
        setattr(model, name, randomise_bn(enc))
    model.register_buffer("queue", torch.randn(128, 16))
    model.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    return model


@pytest.mark.parametrize("arch,mlp", [(resnet50, False), (resnet18, True)], ids=["v1-resnet50", "v2-resnet18"])
def test_moco(tmp_path, images, arch, mlp):
    """Layout: main_moco.py (facebookresearch/moco@132aea9) save_checkpoint({'epoch', 'arch',
    'state_dict': model.state_dict(), 'optimizer'}) of DistributedDataParallel(MoCo): keys
    'module.encoder_q.*', 'module.encoder_k.*', 'module.queue', 'module.queue_ptr';
    main_lincls.py keeps module.encoder_q.* but fc. Features: encoder_q without its fc; head: fc."""
    model = moco_model(arch, mlp)
    torch.save({"epoch": 200, "arch": arch.__name__, "state_dict": Parallel(model).state_dict(), "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0, 1]}]}}, tmp_path / "checkpoint_0199.pth.tar")
    imported = read_checkpoint(tmp_path / "checkpoint_0199.pth.tar")
    assert imported.format == "moco" and imported.normalization == "imagenet"
    assert imported.record["encoder"]["backbone"] == arch.__name__ and imported.record["encoder"]["stem"] == "imagenet"
    fc = model.encoder_q.fc
    model.encoder_q.fc = nn.Identity()
    with torch.no_grad():
        expected = model.encoder_q(images)
        got = ours(imported)(images)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(our_head(imported)(got), fc(expected), atol=1e-5, rtol=1e-5)
    assert imported.record["head"]["spec"]["layers"] == (2 if mlp else 1)


# ---------------------------------------------------------------------------------------------
# HCL / DCL


class HCLModel(nn.Module):
    """Verbatim from joshr17/HCL@7b4647f image/model.py (and chingyaoc/DCL@7d6345f model.py)."""

    def __init__(self, feature_dim=128):
        super().__init__()
        self.f = []
        for name, module in resnet50().named_children():
            if name == "conv1":
                module = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            if not isinstance(module, nn.Linear) and not isinstance(module, nn.MaxPool2d):
                self.f.append(module)
        self.f = nn.Sequential(*self.f)
        self.g = nn.Sequential(nn.Linear(2048, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, feature_dim, bias=True))

    def forward(self, x):
        x = self.f(x)
        feature = torch.flatten(x, start_dim=1)
        out = self.g(feature)
        return F.normalize(feature, dim=-1), F.normalize(out, dim=-1)


@pytest.fixture(scope="module")
def hcl_file(tmp_path_factory):
    """Layout: image/main.py (joshr17/HCL@7b4647f) torch.save(model.state_dict()) of
    nn.DataParallel(Model(feature_dim)): keys 'module.f.<i>.*' and 'module.g.<i>.*'; chingyaoc/DCL
    main.py saves the same."""
    model = randomise_bn(HCLModel())
    path = tmp_path_factory.mktemp("hcl") / "cifar10_hard_model_256_0.1_1.0_400.pth"
    torch.save(Parallel(model).state_dict(), path)
    return model, path


@pytest.mark.parametrize("name", [None, "dcl"], ids=["detected-hcl", "named-dcl"])
def test_hcl_dcl(hcl_file, name):
    """HCL and DCL write identical keys: detection says hcl, format='dcl' reads it as DCL. Features:
    Model.f's flattened output (before F.normalize); head: Model.g."""
    model, path = hcl_file
    imported = read_checkpoint(path, format=name)
    assert imported.format == (name or "hcl") and imported.normalization == "cifar10-kuangliu"
    assert imported.record["encoder"]["stem"] == "cifar" and imported.record["encoder"]["backbone"] == "resnet50"
    assert imported.source.startswith("chingyaoc/DCL@7d6345f" if name else "joshr17/HCL@7b4647f")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feature = torch.flatten(model.f(x), start_dim=1)
        got = ours(imported)(x)
        torch.testing.assert_close(got, feature, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(our_head(imported)(got), model.g(feature), atol=1e-5, rtol=1e-5)
    assert not FORMATS["dcl"].auto


# ---------------------------------------------------------------------------------------------
# Ring


class CustomResNet(nn.Module):
    """mhw32/contrastive-ring-public@fb3e1c2 src/models/resnet2.py CustomResNet (names and forward)."""

    def __init__(self, base_model, out_dim, conv3x3=False):
        super().__init__()
        resnet = {"resnet18": resnet18, "resnet50": resnet50}[base_model]()
        num_ftrs = resnet.fc.in_features
        if conv3x3:
            resnet.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            resnet.maxpool = nn.Identity()
        self.features = nn.Sequential(*list(resnet.children())[:-1])
        self.l1 = nn.Linear(num_ftrs, num_ftrs)
        self.l2 = nn.Linear(num_ftrs, out_dim)

    def forward(self, x):
        h = self.features(x).flatten(1)
        return h, self.l2(F.relu(self.l1(h)))


@pytest.mark.parametrize("conv3x3,moco", [(False, False), (True, True)], ids=["nce-7x7", "moco-3x3"])
def test_ring(tmp_path, images, conv3x3, moco):
    """Layout: scripts/run.py's pl.callbacks.ModelCheckpoint saves {'state_dict':
    system.state_dict(), 'epoch', 'global_step', 'optimizer_states', ...}; src/systems/systems.py
    PretrainNCESystem has self.model (CustomResNet) and self.memory_bank (MemoryBank buffer
    '_bank', src/objectives/memory.py); PretrainMoCoSystem adds model_k and buffers queue,
    queue_ptr."""
    system = nn.Module()
    system.model = randomise_bn(CustomResNet("resnet18", 128, conv3x3))
    system.memory_bank = nn.Module()
    system.memory_bank.register_buffer("_bank", torch.randn(10, 128))
    if moco:
        system.model_k = CustomResNet("resnet18", 128, conv3x3)
        system.register_buffer("queue", torch.randn(16, 128))
        system.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    path = tmp_path / "epoch=199.ckpt"
    torch.save({"epoch": 199, "global_step": 1000, "pytorch-lightning_version": "0.9.0", "state_dict": system.state_dict(), "optimizer_states": [{"state": {}, "param_groups": []}], "lr_schedulers": []}, path)
    imported = read_checkpoint(path)
    assert imported.format == "ring" and imported.normalization == "imagenet"
    assert imported.record["encoder"]["stem"] == ("cifar" if conv3x3 else "imagenet")
    with torch.no_grad():
        h, z = system.model(images)
        got = ours(imported)(images)
        torch.testing.assert_close(got, h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(our_head(imported)(got), z, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# CMC


class CMCResNet(nn.Module):
    """HobbitLong/CMC@7b227be models/resnet.py ResNet (names, widths, forward to layer 6); its
    BasicBlock/Bottleneck have torchvision's names and computation (stride on conv2)."""

    def __init__(self, block, layers, low_dim=128, in_channel=3, width=1):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channel, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.base = int(64 * width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, self.base, layers[0])
        self.layer2 = self._make_layer(block, self.base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, self.base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, self.base * 8, layers[3], stride=2)
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.fc = nn.Linear(self.base * 8 * block.expansion, low_dim)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x, layer=6):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).view(x.size(0), -1)
        return x if layer == 6 else F.normalize(self.fc(x), dim=1)


def cmc_payload(model: nn.Module, opt: argparse.Namespace) -> dict:
    return {"opt": opt, "model": model.state_dict(), "contrast": {"params": torch.tensor([16384, 0.07, -1, -1, 0.5]), "memory_l": torch.randn(8, 128), "memory_ab": torch.randn(8, 128)}, "optimizer": {"state": {}, "param_groups": []}, "epoch": 240}


def test_cmc_two_streams(tmp_path):
    """Layout: train_CMC.py saves {'opt': args, 'model': model.state_dict(), 'contrast',
    'optimizer', 'epoch'} of MyResNetsCMC('resnet18v1'), whose encoder = nn.DataParallel(ResNetV1):
    keys 'encoder.module.l_to_ab.*' (1 channel, width 0.5) and 'encoder.module.ab_to_l.*' (2
    channels). CMC feeds Lab normalised with LAB_MEAN/LAB_STD; ours takes ImageNet-normalised RGB
    and converts (colour.py), so the features must match on the same RGB image at 224 px."""
    v1 = nn.Module()
    v1.l_to_ab = randomise_bn(CMCResNet(BasicBlock, [2, 2, 2, 2], in_channel=1, width=0.5))
    v1.ab_to_l = randomise_bn(CMCResNet(BasicBlock, [2, 2, 2, 2], in_channel=2, width=0.5))
    model = nn.Module()
    model.encoder = Parallel(v1)
    torch.save(cmc_payload(model, argparse.Namespace(model="resnet18v1", feat_dim=128, nce_k=16384, view="Lab")), tmp_path / "ckpt_epoch_240.pth")
    imported = read_checkpoint(tmp_path / "ckpt_epoch_240.pth")
    assert imported.format == "cmc" and imported.normalization == "imagenet"
    spec = imported.record["encoder"]
    assert spec["lab_split"] and spec["width"] == 0.5 and spec["backbone"] == "resnet18" and "head" not in imported.record
    rgb = torch.rand(1, 3, 224, 224)
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in NORMALIZATIONS["imagenet"])
    lab = (rgb_to_lab(rgb) - torch.tensor(LAB_MEAN).view(1, 3, 1, 1)) / torch.tensor(LAB_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.cat([v1.l_to_ab(lab[:, :1]), v1.ab_to_l(lab[:, 1:])], dim=1)
        torch.testing.assert_close(ours(imported)((rgb - mean) / std), expected, atol=1e-5, rtol=1e-4)


def test_cmc_insresnet50(tmp_path):
    """Layout: train_moco_ins.py saves the same dict plus 'model_ema' for InsResNet50, whose
    encoder = nn.DataParallel(resnet50(width)): keys 'encoder.module.*'; fc (Linear to 128) the head."""
    model, ema = nn.Module(), nn.Module()
    model.encoder = Parallel(randomise_bn(CMCResNet(Bottleneck, [3, 4, 6, 3])))
    ema.encoder = Parallel(CMCResNet(Bottleneck, [3, 4, 6, 3]))
    payload = cmc_payload(model, argparse.Namespace(model="resnet50", moco=True)) | {"model_ema": ema.state_dict()}
    torch.save(payload, tmp_path / "current.pth")
    imported = read_checkpoint(tmp_path / "current.pth")
    assert imported.format == "cmc" and not imported.record["encoder"]["lab_split"] and imported.normalization == "imagenet"
    x = torch.randn(1, 3, 224, 224)
    net = model.encoder.module
    with torch.no_grad():
        got = ours(imported)(x)
        torch.testing.assert_close(got, net(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(F.normalize(our_head(imported)(got), dim=1), net(x, layer=7), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# solo-learn, torchvision, ours


def solo_system(stem_3x3: bool) -> nn.Module:
    """vturrisi/solo-learn@c980e9e solo/methods/base.py: self.backbone (fc = Identity; CIFAR:
    conv1 3x3 padding 2, maxpool Identity), self.classifier; mocov2plus adds projector,
    momentum_backbone, momentum_projector, queue, queue_ptr."""
    system = nn.Module()
    system.backbone = randomise_bn(resnet18())
    system.backbone.fc = nn.Identity()
    if stem_3x3:
        system.backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
        system.backbone.maxpool = nn.Identity()
    system.classifier = nn.Linear(512, 100)
    system.projector = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 256))
    system.momentum_backbone = resnet18()
    system.momentum_backbone.fc = nn.Identity()
    system.momentum_projector = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 256))
    system.register_buffer("queue", torch.randn(2, 256, 16))
    system.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    return system


def test_solo_learn(tmp_path, images):
    """Lightning {'state_dict': system.state_dict(), ...} with 'backbone.*' keys (see solo_system);
    an ImageNet-stem file imports, a CIFAR-stem one (padding 2: not our stem) is refused in one line."""
    system = solo_system(False)
    torch.save({"epoch": 399, "global_step": 10, "state_dict": system.state_dict()}, tmp_path / "mocov2plus-imagenet100.ckpt")
    imported = read_checkpoint(tmp_path / "mocov2plus-imagenet100.ckpt")
    assert imported.format == "solo-learn" and imported.normalization == "imagenet" and "head" not in imported.record
    with torch.no_grad():
        torch.testing.assert_close(ours(imported)(images), system.backbone(images), atol=1e-5, rtol=1e-5)
    torch.save({"state_dict": solo_system(True).state_dict()}, tmp_path / "cifar.ckpt")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "cifar.ckpt")
    assert "'backbone.conv1.weight'" in one_line(err) and "pads by 2" in one_line(err) and "formats tried: solo-learn" in one_line(err)


def write_safetensors(tensors: dict[str, torch.Tensor], path) -> None:
    """The safetensors layout (8-byte header length, JSON header, raw little-endian bytes)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": {torch.float32: "F32", torch.int64: "I64"}[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision(tmp_path, images, suffix):
    """pytorch/vision torchvision/models/resnet.py ResNet's state dict (fc included, dropped)."""
    net = randomise_bn(resnet18())
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(net.state_dict(), path)
    else:
        write_safetensors(net.state_dict(), path)
    imported = read_checkpoint(path)
    assert imported.format == "torchvision" and imported.normalization == "imagenet"
    net.fc = nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(ours(imported)(images), net(images), atol=1e-5, rtol=1e-5)


def test_hardneg_bench_record(tmp_path, images):
    """Our own encoder.pt (engine/pretrain.py encoder_record): the record passes through."""
    spec = EncoderSpec(backbone="tiny", stem=None, image_size=32, width=0.5)
    encoder = randomise_bn(build_encoder(spec))
    head = projection_head(encoder.feature_dim, 32, 16, True)
    torch.save({"encoder": spec.to_dict(), "state_dict": encoder.state_dict(), "head": {"spec": {"in_dim": encoder.feature_dim, "hidden_dim": 32, "out_dim": 16, "batchnorm": True}, "state_dict": head.state_dict()}}, tmp_path / "encoder.pt")
    imported = read_checkpoint(tmp_path / "encoder.pt")
    assert imported.format == "hardneg-bench" and imported.normalization == "dataset"
    with torch.no_grad():
        torch.testing.assert_close(ours(imported)(images), encoder(images))
    assert len(imported.sha256) == 64


# ---------------------------------------------------------------------------------------------
# Errors and untrusted files


def test_renamed_key_names_it(tmp_path):
    model = moco_model(resnet18, True)
    sd = Parallel(model).state_dict()
    sd["module.encoder_q.layer1.0.convX.weight"] = sd.pop("module.encoder_q.layer1.0.conv1.weight")
    torch.save({"epoch": 1, "arch": "resnet18", "state_dict": sd}, tmp_path / "renamed.pth.tar")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "renamed.pth.tar")
    assert "'module.encoder_q.layer1.0.convX.weight'" in one_line(err) and "formats tried: moco" in one_line(err)
    sd["module.encoder_q.layer1.0.conv1.weight"] = sd.pop("module.encoder_q.layer1.0.convX.weight")
    sd["module.momentum_stuff"] = torch.zeros(1)  # an unknown key is not swallowed by a catch-all
    torch.save({"state_dict": sd}, tmp_path / "extra.pth.tar")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "extra.pth.tar")
    assert "'module.momentum_stuff'" in one_line(err)


def test_wrong_shape_names_it(tmp_path):
    sd = resnet18().state_dict()
    sd["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "bad.pth")
    message = one_line(err)
    assert "'layer2.0.conv1.weight'" in message and "(128, 64, 5, 5)" in message and "formats tried: torchvision" in message
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "bad.pth", format="moco")
    assert "formats tried: moco" in one_line(err)


@pytest.mark.parametrize("content", [os.urandom(256), b"model:\n  backbone: resnet18\n", b""], ids=["random-bytes", "yaml", "empty"])
def test_foreign_file_is_one_line(tmp_path, content):
    path = tmp_path / "thing.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert "not a PyTorch checkpoint" in one_line(err)


def test_unknown_layout_lists_formats_tried(tmp_path):
    torch.save({"weights": {"encoder.conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "other.pt")
    message = one_line(err)
    assert "no known checkpoint layout" in message and "formats tried: hardneg-bench, moco, hcl, ring, cmc, solo-learn, torchvision" in message


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_code_running_pickle_is_refused(tmp_path, writer):
    """Issue item 5: a pickle whose loading would run os.system is refused; the code never runs."""
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth.tar"
    payload = {"state_dict": RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = one_line(err)
    assert message.startswith(f"refused: {path} needs arbitrary code to unpickle (GLOBAL ") and "system" in message and "only weights are read" in message
    assert not marker.exists()


def test_unknown_format_name():
    with pytest.raises(CheckpointError) as err:
        read_checkpoint("x.pth", format="simclr")
    assert "known: hardneg-bench, moco" in one_line(err)
