"""Issue 14: our paper probe, set as a table sets it, against independent re-implementations of
the official evaluation loops it claims to follow:

* MoCo ``main_lincls.py`` (facebookresearch/moco@132aea9), table ``mochi-in100``;
* CMC ``eval_moco_ins.py`` and ``LinearProbing.py`` (HobbitLong/CMC@7b227be), table
  ``cmc-readme-in100`` (rows InsDis and CMC);
* the Ring code's ``TransferSystem`` (mhw32/contrastive-ring-public@fb3e1c2), table
  ``ring-table1`` on cifar10.

Each reference loop is written from the official file (file:line in the docstrings), does not call
our evaluation functions, starts from the classifier init the official code would draw with the
same seed and eats exactly the batches our probe fed (recorded through a wrapper of
``augmented_batches``). What is compared: classifier init, weights and bias after training, the
BatchNorm running statistics of the encoder the probe ran (ours: the deep copy, captured through
``copy.deepcopy`` as ``hardneg_bench.evaluations.linear`` looks it up), the test inputs (torchvision
Resize + CenterCrop against our ``test_geometry`` path), the final test predictions and the
reported accuracy (best or last epoch). Every protocol field the table sets is then reverted with
``dataclasses.replace`` and the comparison must report a mismatch.

Dtype: float32 on both sides. float64 is not possible for the classifier: ``paper_linear_probe``
casts the encoder's features with ``.float()`` and ``new_classifier`` builds a float32
``nn.Linear``; the reference mirrors that dtype and the op order, so the two differ only by
rounding (e.g. MoCo's lr ``30 * 0.1 * 0.1`` against our ``30 * 0.1 ** 2``, one ulp apart).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn
from torchvision import transforms

import hardneg_bench.evaluations.features as features_module
import hardneg_bench.evaluations.linear as evaluate
from hardneg_bench.data.augment import BatchAugment
from hardneg_bench.data.base import DatasetSpec, ImageTensorSet
from hardneg_bench.engine.batches import on_device
from hardneg_bench.engine.runtime import Runtime, derive_seed
from hardneg_bench.models import build_backbone
from hardneg_bench.models.colour import LabSplitEncoder
from hardneg_bench.reports.tables import load_table

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SEED = 3
N_TRAIN, N_TEST, BATCH, CLASSES = 72, 40, 16, 4  # 72 = 4 full batches of 16 + one of 8
# float32 on both sides with the same op order: the weights agree to a few ulps of the largest
# update (lr 30 x gradients of order 1 gives weights of order 1e-1..1e1); 1e-5 relative plus 1e-6
# absolute is ~100 ulps, far below any protocol difference (those move weights by >= 1e-3).
RTOL, ATOL = 1e-5, 1e-6
# torchvision's Resize on uint8 tensors rounds to uint8 (as the official PIL pipeline does); ours
# resizes the float image: at most half a grey level apart, divided by the smallest std.
GEOMETRY_ATOL = 0.5 / 255 / min(IMAGENET_STD) + 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these convolutions are tiny, and on a shared 2-core machine OpenMP's
    spinning threads made the file take minutes instead of seconds (measured: 177 s vs 8 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------
# data, encoders, table configs


def _images(n: int, side: int, seed: int) -> ImageTensorSet:
    """Noisy images whose colour depends on the class (learnable, but not perfectly)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    tint = torch.tensor([[200, 60, 60], [60, 200, 60], [60, 60, 200], [150, 150, 40]], dtype=torch.float)[labels]
    noise = torch.rand(n, 3, side, side, generator=g) * 255
    images = (0.35 * tint.view(n, 3, 1, 1) + 0.65 * noise).round().clamp(0, 255).to(torch.uint8)
    return ImageTensorSet(images, labels)


def _spec(side: int) -> DatasetSpec:
    return DatasetSpec("toy", "toy", CLASSES, side, IMAGENET_MEAN, IMAGENET_STD, load=lambda *a: None, split_sizes={})


def _with_statistics(encoder: nn.Module, channels: int = 3) -> nn.Module:
    """Non-trivial BatchNorm running statistics, as a pretrained encoder has; then eval mode."""
    torch.manual_seed(11)
    with torch.no_grad():
        encoder.train()(torch.randn(32, channels, 28, 28) * 2 + 0.5)
    return encoder.eval()


def _tiny_encoder() -> nn.Module:
    torch.manual_seed(12)
    return _with_statistics(build_backbone("tiny", "auto", 28, width=0.5))


def _tiny_lab_encoder() -> LabSplitEncoder:
    torch.manual_seed(13)
    encoder = LabSplitEncoder(build_backbone("tiny", "auto", 28, 1, 0.5), build_backbone("tiny", "auto", 28, 2, 0.5), IMAGENET_MEAN, IMAGENET_STD)
    return _with_statistics(encoder)


def _table_probe(table: str, row: int, dataset: str):
    """(probe config, training augmentation) of a table cell, as the table sets them."""
    t = load_table(table)
    cfg = t.cell_config(t.rows[row], dataset)
    return cfg.probe, cfg.probe.augment or cfg.pretrain.augment


def _shrunk(probe, epochs: int, milestones: tuple[int, ...], image_size: int, test_resize: int):
    """Only what must shrink for speed: epochs (milestones scaled alike), batch size, image sizes;
    every protocol field stays as the table sets it."""
    schedule = dataclasses.replace(probe.schedule, milestones=milestones)
    return dataclasses.replace(probe, epochs=epochs, batch_size=BATCH, schedule=schedule, image_size=image_size, test_resize=test_resize)


# ------------------------------------------------------------------------------------------------
# our probe, instrumented


def run_ours(encoder, train, test, spec, cfg, augment) -> SimpleNamespace:
    """``paper_linear_probe`` with recording wrappers around what it looks up in its module: the
    batches it feeds, the classifier it builds, the test inputs and logits, the encoder copy."""
    cap = SimpleNamespace(batches=[], classifier=None, init=None, test_inputs=[], logits=[], copies=[])
    real_batches, real_classifier, real_eval, real_accuracy = evaluate.augmented_batches, evaluate.new_classifier, features_module.eval_batches, evaluate._accuracy

    def batches(*args, **kwargs):
        epoch = []
        cap.batches.append(epoch)
        for images, labels in real_batches(*args, **kwargs):
            epoch.append((images.clone(), labels.clone()))
            yield images, labels

    def classifier(*args, **kwargs):
        cap.classifier = real_classifier(*args, **kwargs)
        cap.init = (cap.classifier.weight.detach().clone(), cap.classifier.bias.detach().clone())
        return cap.classifier

    def eval_batches(*args, **kwargs):
        inputs = []
        cap.test_inputs.append(inputs)
        for images, labels in real_eval(*args, **kwargs):
            inputs.append(images.clone())
            yield images, labels

    def accuracy(logits, labels):
        cap.logits.append(logits.detach().clone())
        return real_accuracy(logits, labels)

    def deepcopy(obj, *args):
        cap.copies.append(copy.deepcopy(obj, *args))
        return cap.copies[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate, "augmented_batches", batches)
        mp.setattr(evaluate, "new_classifier", classifier)
        mp.setattr(features_module, "eval_batches", eval_batches)
        mp.setattr(evaluate, "_accuracy", accuracy)
        mp.setattr(evaluate, "copy", SimpleNamespace(deepcopy=deepcopy))
        result = evaluate.paper_linear_probe(encoder, on_device(train, CPU.device), on_device(test, CPU.device), spec, cfg, augment, CPU, SEED)
    cap.accuracy = result["test_accuracy"]
    cap.probe_encoder = cap.copies[-1] if cap.copies else encoder
    return cap


# ------------------------------------------------------------------------------------------------
# the official pieces, re-implemented


def official_test_inputs(images: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """transforms.Resize(resize) + CenterCrop(crop) + ToTensor + Normalize on each uint8 image
    (main_lincls.py:379-385; eval_moco_ins.py:176-180 with Resize(224 + 32); LinearProbing.py:
    142-147; Ring datasets.py:161-167)."""
    t = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])
    return torch.stack([TF.normalize(t(image).float() / 255, list(IMAGENET_MEAN), list(IMAGENET_STD)) for image in images])


def official_loader(recorded, n_train: int, drop_last: bool):
    """The official DataLoader's epoch from the batches our probe drew: without drop_last every
    image once (main_lincls.py:367-374, eval_moco_ins.py:186-188, LinearProbing.py loader);
    with drop_last only full batches (Ring systems.py:32-41, drop_last=shuffle). Returns (batches,
    images per epoch the official loader feeds)."""
    batches = [(x, y) for x, y in recorded if not (drop_last and len(y) < BATCH)]
    return batches, (n_train // BATCH * BATCH if drop_last else n_train)


def _percent(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Acc@1 as the scripts' accuracy() / Ring's argmax count (main_lincls.py:613-627)."""
    return (logits.argmax(1) == labels).sum().item() * 100.0 / len(labels)


def moco_main_lincls(encoder, in_dim, epochs_batches, test_x, test_y, lr, milestones, n_train):
    """facebookresearch/moco@132aea9 main_lincls.py, the fc on a frozen encoder."""
    torch.manual_seed(derive_seed(SEED, "probe-init"))
    fc = nn.Linear(in_dim, CLASSES)  # :233 models.__dict__[arch]() builds fc with its default init
    fc.weight.data.normal_(mean=0.0, std=0.01)  # :240
    fc.bias.data.zero_()  # :241
    init = (fc.weight.detach().clone(), fc.bias.detach().clone())
    optimizer = torch.optim.SGD(fc.parameters(), lr, momentum=0.9, weight_decay=0.0)  # :309-311
    best_acc1, accs, seen = 0.0, [], []
    for epoch, recorded in enumerate(epochs_batches):  # :398
        group_lr = lr  # :604-610 adjust_learning_rate, 0-based epoch
        for milestone in milestones:
            group_lr *= 0.1 if epoch >= milestone else 1.0
        for group in optimizer.param_groups:
            group["lr"] = group_lr
        encoder.eval()  # :450
        batches, expected = official_loader(recorded, n_train, drop_last=False)
        seen.append((sum(len(y) for _, y in batches), expected))
        for images, target in batches:  # :453-474
            with torch.no_grad():
                features = encoder(images)
            loss = F.cross_entropy(fc(features), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        encoder.eval()  # :494 validate
        with torch.no_grad():
            logits = fc(encoder(test_x))
        accs.append(_percent(logits, test_y))
        best_acc1 = max(accs[-1], best_acc1)  # :412
    return SimpleNamespace(init=init, weight=fc.weight.detach(), bias=fc.bias.detach(), reported=best_acc1, accs=accs, predictions=logits.argmax(1), encoder=encoder, seen=seen)


def cmc_linear_eval(encoder, in_dim, epochs_batches, test_x, test_y, lr, decay_epochs, decay_rate, n_train, lab_split: bool):
    """HobbitLong/CMC@7b227be eval_moco_ins.py (InsDis, MoCo) / LinearProbing.py (CMC)."""
    torch.manual_seed(derive_seed(SEED, "probe-init"))
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, CLASSES))  # LinearModel.py:97-100, layer 6
    for m in classifier.modules():  # LinearModel.py:102-106 initilize
        if isinstance(m, nn.Linear):
            m.weight.data.normal_(0, 0.01)
            m.bias.data.fill_(0.0)
    fc = classifier[1]
    init = (fc.weight.detach().clone(), fc.bias.detach().clone())
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=0.9, weight_decay=0)  # eval_moco_ins.py:219-222

    def features(x):
        if lab_split:  # LinearProbing.py:233-234
            feat_l, feat_ab = encoder.streams(x)
            return torch.cat((feat_l.detach(), feat_ab.detach()), dim=1)
        return encoder(x).detach()  # eval_moco_ins.py:383-384

    best_acc1, accs, seen = 0.0, [], []
    for epoch, recorded in zip(range(1, len(epochs_batches) + 1), epochs_batches):  # :290, 1-based
        steps = np.sum(epoch > np.asarray(decay_epochs))  # util.py:7-13 adjust_learning_rate
        if steps > 0:
            for group in optimizer.param_groups:
                group["lr"] = lr * (decay_rate**steps)
        encoder.eval()  # :362
        classifier.train()  # :363
        batches, expected = official_loader(recorded, n_train, drop_last=False)
        seen.append((sum(len(y) for _, y in batches), expected))
        for images, target in batches:  # :371-395
            with torch.no_grad():
                feat = features(images)
            loss = F.cross_entropy(classifier(feat), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        encoder.eval()  # :427-428 validate
        classifier.eval()
        with torch.no_grad():
            logits = classifier(features(test_x))
        accs.append(_percent(logits, test_y))
        if accs[-1] > best_acc1:  # :316-317
            best_acc1 = accs[-1]
    return SimpleNamespace(init=init, weight=fc.weight.detach(), bias=fc.bias.detach(), reported=best_acc1, accs=accs, predictions=logits.argmax(1), encoder=encoder, seen=seen)


def ring_transfer_system(stored_encoder, in_dim, epochs_batches, test_x, test_y, n_train):
    """mhw32/contrastive-ring-public@fb3e1c2 src/systems/systems.py TransferSystem under PyTorch
    Lightning 1.1.8 (config/transfer.json: lr 0.01, momentum 0.9, weight decay 1e-5)."""
    encoder = copy.deepcopy(stored_encoder)  # the system owns its own loaded encoder (:440-459)
    for p in encoder.parameters():  # :429 utils.frozen_params
        p.requires_grad = False
    torch.manual_seed(derive_seed(SEED, "probe-init"))
    model = nn.Linear(in_dim, CLASSES)  # :489, logreg.py LogisticRegression: nn.Linear default init
    init = (model.weight.detach().clone(), model.bias.detach().clone())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)  # :545-559, no scheduler
    accs, seen = [], []
    for recorded in epochs_batches:
        encoder.train()  # Lightning's model.train() on the whole system: BatchNorm on batch statistics
        model.train()
        batches, expected = official_loader(recorded, n_train, drop_last=True)  # :32-41
        seen.append((sum(len(y) for _, y in batches), expected))
        for img, label in batches:
            embs = encoder(img).view(img.size(0), -1)  # :492-496
            loss = F.cross_entropy(model(embs), label)  # :498-501
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        encoder.eval()  # Lightning validates in eval mode, with the rewritten running statistics
        model.eval()
        with torch.no_grad():
            logits = model(encoder(test_x).view(len(test_x), -1))
        preds = torch.argmax(F.log_softmax(logits, dim=1), dim=1)  # :506
        accs.append((preds == test_y).sum().item() * 100.0 / len(test_y))  # :539-542
    return SimpleNamespace(init=init, weight=model.weight.detach(), bias=model.bias.detach(), reported=accs[-1], accs=accs, predictions=preds, encoder=encoder, seen=seen)


# ------------------------------------------------------------------------------------------------
# comparison


def _bn_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if "running_" in k}


def mismatches(ours: SimpleNamespace, ref: SimpleNamespace, official_x: torch.Tensor, stats: dict) -> list[str]:
    """Every way our run differs from the reference (empty: they agree); ``stats`` collects the
    measured differences."""
    found = []
    for epoch, (fed, (seen, expected)) in enumerate(zip(ours.batches, ref.seen)):
        if sum(len(y) for _, y in fed) != expected:
            found.append(f"epoch {epoch}: ours fed {sum(len(y) for _, y in fed)} images, the official loader {expected}")
    if not all(torch.equal(a, b) for a, b in zip(ours.init, ref.init)):
        found.append("classifier init")
    stats["weight"] = (ours.classifier.weight.detach() - ref.weight).abs().max().item()
    stats["bias"] = (ours.classifier.bias.detach() - ref.bias).abs().max().item()
    if not (torch.allclose(ours.classifier.weight.detach(), ref.weight, RTOL, ATOL) and torch.allclose(ours.classifier.bias.detach(), ref.bias, RTOL, ATOL)):
        found.append(f"classifier after training: max |dW| {stats['weight']:.3g}, |db| {stats['bias']:.3g}")
    theirs_bn, ours_bn = _bn_buffers(ref.encoder), _bn_buffers(ours.probe_encoder)
    stats["bn"] = max((ours_bn[k].double() - v.double()).abs().max().item() for k, v in theirs_bn.items())
    if not all(torch.allclose(ours_bn[k].double(), v.double(), RTOL, ATOL) for k, v in theirs_bn.items() if k.endswith(("mean", "var"))) or not all(
        torch.equal(ours_bn[k], v) for k, v in theirs_bn.items() if k.endswith("num_batches_tracked")
    ):
        found.append(f"BatchNorm running statistics: max diff {stats['bn']:.3g}")
    our_x = torch.cat(ours.test_inputs[-1])
    stats["test_inputs"] = (our_x - official_x).abs().max().item() if our_x.shape == official_x.shape else math.inf
    if stats["test_inputs"] > GEOMETRY_ATOL:
        found.append(f"test inputs: max diff {stats['test_inputs']:.3g} (shape {tuple(our_x.shape)} vs {tuple(official_x.shape)})")
    if not torch.equal(ours.logits[-1].argmax(1), ref.predictions):
        found.append("final test predictions")
    stats["accuracy"] = abs(ours.accuracy - ref.reported)
    if stats["accuracy"] > 1e-4:  # one test image is 2.5 points; float32 mean x 100 is exact to ~1e-5
        found.append(f"reported accuracy {ours.accuracy} vs official {ref.reported} (official per epoch {ref.accs})")
    return found


# ------------------------------------------------------------------------------------------------
# MoCo main_lincls.py, table mochi-in100


def _moco_setup():
    probe, augment = _table_probe("mochi-in100", 0, "imagenet100")
    # 100 epochs, x0.1 at 60 and 80 -> 5 epochs, x0.1 at 3 and 4; Resize(256)+CenterCrop(224) ->
    # Resize(32)+CenterCrop(28) (the same 0.875 ratio) on 40-px "folder" images
    return _shrunk(probe, 5, (3, 4), 28, 32), augment


def _moco_compare(cfg, augment, stats):
    train, test, spec, encoder = _images(N_TRAIN, 40, 5), _images(N_TEST, 40, 6), _spec(28), _tiny_encoder()
    stored = copy.deepcopy(encoder.state_dict())
    ours = run_ours(encoder, train, test, spec, cfg, augment)
    for k, v in stored.items():
        assert torch.equal(v, encoder.state_dict()[k]), f"the stored encoder changed: {k}"
    official_x = official_test_inputs(test.images, 32, 28)
    table_cfg, _ = _moco_setup()
    ref = moco_main_lincls(_tiny_encoder(), encoder.feature_dim, ours.batches, official_x, test.labels, table_cfg.optimizer.lr, table_cfg.schedule.milestones, N_TRAIN)
    stats["official_accs"] = ref.accs
    return mismatches(ours, ref, official_x, stats)


def test_moco_main_lincls_protocol():
    cfg, augment = _moco_setup()
    stats = {}
    assert _moco_compare(cfg, augment, stats) == [], stats
    assert stats["official_accs"][-1] != max(stats["official_accs"]), "setup: best and last epoch must differ to test report_epoch"


MOCO_REVERSIONS = {
    "classifier_init pytorch": dict(classifier_init="pytorch"),
    "report_epoch last": dict(report_epoch="last"),
    "no step schedule": dict(schedule=dataclasses.replace(_moco_setup()[0].schedule, name="constant")),
    "schedule gamma 0.2": dict(schedule=dataclasses.replace(_moco_setup()[0].schedule, gamma=0.2)),
    "encoder_batchnorm train": dict(encoder_batchnorm="train"),
    "test_resize None": dict(test_resize=None),
    "drop_last True": dict(drop_last=True),
}


@pytest.mark.parametrize("reverted", list(MOCO_REVERSIONS), ids=list(MOCO_REVERSIONS))
def test_moco_comparison_fails_when_the_table_setting_is_reverted(reverted):
    cfg, augment = _moco_setup()
    assert _moco_compare(dataclasses.replace(cfg, **MOCO_REVERSIONS[reverted]), augment, {}) != []


# ------------------------------------------------------------------------------------------------
# CMC eval_moco_ins.py (row InsDis) and LinearProbing.py (row CMC), table cmc-readme-in100


def _cmc_setup(row: int):
    probe, augment = _table_probe("cmc-readme-in100", row, "imagenet100")
    # 60 epochs, x0.2 at 30, 40, 50 -> 6 epochs, x0.2 at 3, 4, 5 (util.py: 1-based epoch > m);
    # Resize(256)+CenterCrop(224) -> Resize(32)+CenterCrop(28)
    return _shrunk(probe, 6, (3, 4, 5), 28, 32), augment


def _cmc_compare(row, cfg, augment, stats):
    lab_split = row == 2
    make = _tiny_lab_encoder if lab_split else _tiny_encoder
    train, test, spec, encoder = _images(N_TRAIN, 40, 5), _images(N_TEST, 40, 6), _spec(28), make()
    stored = copy.deepcopy(encoder.state_dict())
    ours = run_ours(encoder, train, test, spec, cfg, augment)
    for k, v in stored.items():
        assert torch.equal(v, encoder.state_dict()[k]), f"the stored encoder changed: {k}"
    official_x = official_test_inputs(test.images, 32, 28)
    table_cfg, _ = _cmc_setup(row)
    s = table_cfg.schedule
    ref = cmc_linear_eval(make(), encoder.feature_dim, ours.batches, official_x, test.labels, table_cfg.optimizer.lr, list(s.milestones), 0.2, N_TRAIN, lab_split)
    stats["official_accs"] = ref.accs
    return mismatches(ours, ref, official_x, stats)


@pytest.mark.parametrize("row", [0, 2], ids=["InsDis-eval_moco_ins", "CMC-LinearProbing"])
def test_cmc_linear_eval_protocol(row):
    cfg, augment = _cmc_setup(row)
    stats = {}
    assert _cmc_compare(row, cfg, augment, stats) == [], stats
    assert stats["official_accs"][-1] != max(stats["official_accs"]), "setup: best and last epoch must differ to test report_epoch"


CMC_REVERSIONS = {
    "classifier_init pytorch": dict(classifier_init="pytorch"),
    "report_epoch last": dict(report_epoch="last"),
    "schedule gamma 0.1": dict(schedule=dataclasses.replace(_cmc_setup(0)[0].schedule, gamma=0.1)),
    "encoder_batchnorm train": dict(encoder_batchnorm="train"),
    "test_resize None": dict(test_resize=None),
    "drop_last True": dict(drop_last=True),
}


@pytest.mark.parametrize("reverted", list(CMC_REVERSIONS), ids=list(CMC_REVERSIONS))
def test_cmc_comparison_fails_when_the_table_setting_is_reverted(reverted):
    cfg, augment = _cmc_setup(0)
    assert _cmc_compare(0, dataclasses.replace(cfg, **CMC_REVERSIONS[reverted]), augment, {}) != []


# ------------------------------------------------------------------------------------------------
# grayscale before colour jitter (eval_moco_ins.py:162-168, Ring datasets.py:152-160)


def _official_colour_order(image: torch.Tensor, params, i: int) -> torch.Tensor:
    """One image: crop + resize, RandomGrayscale, then ColorJitter's ops in the drawn order, flip
    (eval_moco_ins.py:163-166; flip commutes with these per-pixel ops), ToTensor, Normalize."""
    top, left, h, w = params.crop[i].long().tolist()
    x = TF.resized_crop(image, top, left, h, w, [image.shape[-1], image.shape[-1]], antialias=False)
    if params.gray[i]:  # transforms.RandomGrayscale(p=0.2)
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if params.jitter[i]:  # transforms.ColorJitter(0.4, 0.4, 0.4, 0.4)
        functions = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        for op in params.jitter_order[i].tolist():
            x = functions[op](x, params.jitter_factors[i, op].item())
    if params.flip[i]:
        x = TF.horizontal_flip(x)
    return TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))


def _colour_order_mismatch(augment) -> float:
    """Largest difference between our BatchAugment and the official order, image by image, with
    the parameters drawn for the batch (full-image crops: no border resampling differences)."""
    augment = dataclasses.replace(augment, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), grayscale_p=0.5)
    torch.manual_seed(21)
    images = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8)
    batch = BatchAugment(augment, IMAGENET_MEAN, IMAGENET_STD, 16)
    params = batch.sample_params(48, 16, 16, torch.Generator().manual_seed(22))
    assert params.gray.any() and (~params.gray).any() and params.jitter.all()
    out = batch.apply(images, params)
    return max((out[i] - _official_colour_order(image.float() / 255, params, i)).abs().max().item() for i, image in enumerate(images))


COLOUR_TABLES = {"cmc-readme-in100 InsDis probe": ("cmc-readme-in100", 0, "imagenet100"), "ring-table1 cifar10": ("ring-table1", 0, "cifar10")}


@pytest.mark.parametrize("table", list(COLOUR_TABLES), ids=list(COLOUR_TABLES))
def test_grayscale_comes_before_colour_jitter(table):
    _, augment = _table_probe(*COLOUR_TABLES[table])
    assert augment.grayscale_before_jitter and augment.jitter_p == 1.0 and augment.jitter == (0.4, 0.4, 0.4, 0.4)
    # torchvision per image vs batched: the tolerance of tests/test_augment.py (float32 colour ops)
    assert _colour_order_mismatch(augment) < 1e-4
    assert _colour_order_mismatch(dataclasses.replace(augment, grayscale_before_jitter=False)) > 1e-2


def test_saturation_and_hue_after_grayscale_leave_it_gray():
    """Grayscale p 1, then saturation and hue only: both are no-ops on a grey image, so the output
    is the crop's grey image; jitter first (the reverted order) changes the luma."""
    _, augment = _table_probe("cmc-readme-in100", 0, "imagenet100")
    augment = dataclasses.replace(augment, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, grayscale_p=1.0, jitter=(0.0, 0.0, 0.4, 0.4))
    torch.manual_seed(23)
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)

    def gray_gap(cfg) -> float:
        out = BatchAugment(cfg, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 16)(images, torch.Generator().manual_seed(24))
        return (out - TF.rgb_to_grayscale(images.float() / 255, num_output_channels=3)).abs().max().item()

    # float32: the saturation blend f*g + (1-f)*g and the hue shift's HSV round trip are exact
    # only up to a few ulps of the [0, 1] values (measured 4e-5)
    assert gray_gap(augment) < 1e-4
    assert gray_gap(dataclasses.replace(augment, grayscale_before_jitter=False)) > 1e-2


# ------------------------------------------------------------------------------------------------
# Ring TransferSystem, table ring-table1 (cifar10)


def _ring_setup():
    probe, augment = _table_probe("ring-table1", 0, "cifar10")
    # 100 epochs, constant lr -> 3 epochs; crops of 224 and Resize(256)+CenterCrop(224) on 32-px
    # images -> crops of 35 and Resize(40)+CenterCrop(35) (still up-sampled, resize > crop)
    return _shrunk(probe, 3, (), 35, 40), dataclasses.replace(augment, crop_size=35)


def _ring_compare(cfg, augment, stats):
    train, test, spec, encoder = _images(N_TRAIN, 32, 5), _images(N_TEST, 32, 6), _spec(32), _tiny_encoder()
    stored = copy.deepcopy(encoder.state_dict())
    ours = run_ours(encoder, train, test, spec, cfg, augment)
    for k, v in stored.items():  # the probe rewrote the statistics of its copy only
        assert torch.equal(v, encoder.state_dict()[k]), f"the stored encoder changed: {k}"
    assert not encoder.training
    official_x = official_test_inputs(test.images, 40, 35)
    ref = ring_transfer_system(_tiny_encoder(), encoder.feature_dim, ours.batches, official_x, test.labels, N_TRAIN)
    stats["official_accs"] = ref.accs
    stats["copies"] = len(ours.copies)
    stats["bn_moved"] = max((a.double() - b.double()).abs().max().item() for a, b in zip(_bn_buffers(ref.encoder).values(), _bn_buffers(encoder).values()))
    return mismatches(ours, ref, official_x, stats)


def test_ring_transfer_system_protocol():
    cfg, augment = _ring_setup()
    stats = {}
    assert _ring_compare(cfg, augment, stats) == [], stats
    assert stats["copies"] == 1  # the probe ran on one deep copy of the encoder
    assert stats["bn_moved"] > 1e-2  # the official loop really rewrote the statistics


RING_REVERSIONS = {
    "encoder_batchnorm eval": dict(encoder_batchnorm="eval"),
    "drop_last False": dict(drop_last=False),
    "test_resize None": dict(test_resize=None),
    "classifier_init normal": dict(classifier_init="normal"),
}


@pytest.mark.parametrize("reverted", list(RING_REVERSIONS), ids=list(RING_REVERSIONS))
def test_ring_comparison_fails_when_the_table_setting_is_reverted(reverted):
    cfg, augment = _ring_setup()
    assert _ring_compare(dataclasses.replace(cfg, **RING_REVERSIONS[reverted]), augment, {}) != []
