"""Linear probe and kNN: against brute-force computations, test split only, encoder untouched."""

import copy
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hardneg_bench.config import AugmentConfig, KnnConfig, OptimizerConfig, ProbeConfig
from hardneg_bench.data.base import DatasetSpec, ImageTensorSet
from hardneg_bench.data.augment import normalize_batch
from hardneg_bench.evaluations import linear as evaluate_module
from hardneg_bench.engine import batches
from hardneg_bench.engine.batches import on_device
from hardneg_bench.evaluations.features import extract_features
from hardneg_bench.evaluations.knn import knn_accuracy
from hardneg_bench.evaluations.linear import fast_linear_probe, new_classifier, paper_linear_probe, train_classifier
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.models import build_backbone

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)


def knn_reference(train_x, train_y, test_x, test_y, num_classes, k, temperature):
    """Weighted kNN written out per test point: cosine similarities, k largest, exp(s/t) votes."""
    correct = 0
    for x, y in zip(test_x.tolist(), test_y.tolist()):
        sims = []
        for tx, ty in zip(train_x.tolist(), train_y.tolist()):
            cos = sum(a * b for a, b in zip(x, tx)) / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in tx)))
            sims.append((cos, ty))
        votes = [0.0] * num_classes
        for cos, ty in sorted(sims, reverse=True)[:k]:
            votes[ty] += math.exp(cos / temperature)
        correct += votes.index(max(votes)) == y
    return 100.0 * correct / len(test_y)


def test_knn_matches_brute_force():
    torch.manual_seed(0)
    centers = torch.randn(4, 8)
    train_y, test_y = torch.randint(0, 4, (120,)), torch.randint(0, 4, (40,))
    train_x = centers[train_y] + 0.9 * torch.randn(120, 8)
    test_x = centers[test_y] + 0.9 * torch.randn(40, 8)
    for k, t in [(1, 0.5), (7, 0.5), (20, 0.1), (500, 0.5)]:
        ours = knn_accuracy((train_x, train_y), (test_x, test_y), 4, KnnConfig(k=k, temperature=t), chunk=16)
        assert math.isclose(ours, knn_reference(train_x, train_y, test_x, test_y, 4, k, t), abs_tol=1e-9)


def test_fast_probe_reports_the_test_split():
    torch.manual_seed(1)
    x = torch.randn(400, 16)
    y = (x[:, 0] > 0).long()
    cfg = ProbeConfig(epochs=30, batch_size=64, optimizer=OptimizerConfig(name="adam", lr=0.05, weight_decay=0.0))
    result = fast_linear_probe((x[:300], y[:300]), (x[300:], y[300:]), 2, cfg, seed=0)
    assert result["train_accuracy"] > 95 and result["test_accuracy"] > 90
    flipped = fast_linear_probe((x[:300], y[:300]), (x[300:], 1 - y[300:]), 2, cfg, seed=0)
    assert flipped["test_accuracy"] < 10  # scored against the test labels, not the training ones
    again = fast_linear_probe((x[:300], y[:300]), (x[300:], y[300:]), 2, cfg, seed=0)
    assert again == result


def _spec(images: ImageTensorSet) -> DatasetSpec:
    return DatasetSpec("toy", "toy", 3, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), load=lambda *a: images, split_sizes={})


def test_probing_never_changes_the_encoder():
    torch.manual_seed(2)
    data = ImageTensorSet(torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8), torch.randint(0, 3, (48,)))
    encoder = build_backbone("tiny", "auto", 16)
    # give BatchNorm non-trivial running statistics, as a pretrained encoder has
    encoder.train()(torch.randn(32, 3, 16, 16) * 3 + 1)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    spec = _spec(data)
    augment = AugmentConfig(crop_scale=(0.5, 1.0))
    cfg = ProbeConfig(protocol="paper", epochs=2, batch_size=16, optimizer=ProbeConfig().optimizer)
    result = paper_linear_probe(encoder, on_device(data, CPU.device), on_device(data, CPU.device), spec, cfg, augment, CPU, seed=0)
    assert 0 <= result["test_accuracy"] <= 100
    extract_features(encoder, on_device(data, CPU.device), spec, ProbeConfig(), CPU)
    after = encoder.state_dict()
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), f"probing changed {name}"
    assert not encoder.training


def test_features_are_the_encoders_output_in_order():
    torch.manual_seed(3)
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    data = ImageTensorSet(images, torch.arange(10) % 3)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)).eval()
    features, labels = extract_features(encoder, on_device(data, CPU.device), _spec(data), ProbeConfig(), CPU, batch_size=3)
    expected = encoder((images.float() / 255 - 0.5) / 0.25)
    assert torch.allclose(features, expected, atol=1e-5)
    assert torch.equal(labels, data.labels)


def test_probing_with_train_mode_batchnorm_leaves_the_stored_encoder_alone(monkeypatch):
    """``encoder_batchnorm: train`` (HCL/DCL linear.py, the Ring code) rewrites BatchNorm
    statistics, on a copy: the stored encoder keeps every tensor and its eval mode, and the probe's
    test features differ from the stored encoder's (the copy's statistics were rewritten)."""
    torch.manual_seed(4)
    data = ImageTensorSet(torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8), torch.randint(0, 3, (48,)))
    encoder = build_backbone("tiny", "auto", 16)
    encoder.train()(torch.randn(32, 3, 16, 16) * 3 + 1)
    encoder.eval()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    spec, augment = _spec(data), AugmentConfig(crop_scale=(0.5, 1.0))
    copies = []

    def recording_deepcopy(obj):
        copies.append(copy.deepcopy(obj))
        return copies[-1]

    monkeypatch.setattr(evaluate_module, "copy", SimpleNamespace(deepcopy=recording_deepcopy))
    cfg = ProbeConfig(protocol="paper", epochs=2, batch_size=16, encoder_batchnorm="train")
    paper_linear_probe(encoder, on_device(data, CPU.device), on_device(data, CPU.device), spec, cfg, augment, CPU, seed=0)
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, before[name]), f"probing changed the stored encoder's {name}"
    assert not encoder.training
    (probed,) = copies
    stats = [n for n in before if n.endswith("running_mean")]
    assert stats and all(not torch.equal(probed.state_dict()[n], before[n]) for n in stats)


def test_classifier_init_normal_is_mocos():
    """MoCo main_lincls.py:240-241: weights N(0, 0.01^2), bias 0; pytorch keeps nn.Linear's."""
    cfg = ProbeConfig(classifier_init="normal")
    classifier = new_classifier(2048, 100, cfg, seed=0, device=torch.device("cpu"))
    assert torch.equal(classifier.bias, torch.zeros(100))
    assert abs(classifier.weight.std().item() - 0.01) < 2e-4 and abs(classifier.weight.mean().item()) < 1e-4
    default = new_classifier(2048, 100, ProbeConfig(), seed=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    assert torch.equal(default.weight, nn.Linear(2048, 100).weight)


def test_best_epoch_is_the_maximum_of_the_per_epoch_test_accuracies():
    """report_epoch best (MoCo, CMC) returns the best of the accuracies tested after each epoch;
    last returns the final one; the classifier trains identically under both."""
    torch.manual_seed(5)
    x = torch.randn(300, 8)
    y = (x[:, 0] + 0.8 * torch.randn(300) > 0).long()
    seen = []
    base = ProbeConfig(epochs=6, batch_size=32, optimizer=OptimizerConfig(name="sgd", lr=3.0, momentum=0.9, weight_decay=0.0))

    def fake_test(accuracies):
        def test():
            accuracies.append(len(accuracies) * 7 % 5)  # a sequence whose maximum is not the last
            return accuracies[-1]
        return test

    for report in ("best", "last"):
        cfg = replace(base, report_epoch=report)
        classifier = new_classifier(8, 2, cfg, seed=0, device=torch.device("cpu"))
        accuracies: list[float] = []
        batches = lambda epoch: zip(x.split(32), y.split(32))
        got = train_classifier(classifier, batches, cfg, steps=10, test=fake_test(accuracies))
        seen.append(classifier.weight.detach().clone())
        if report == "best":
            assert len(accuracies) == cfg.epochs and got == max(accuracies) != accuracies[-1]
        else:
            assert len(accuracies) == 1 and got == accuracies[-1]
    assert torch.equal(seen[0], seen[1])


def test_test_transform_resize_then_centre_crop_is_torchvisions():
    """probe.test_resize: Resize(256) + CenterCrop(224) as the Ring code and MoCo test (small sides here)."""
    from torchvision.transforms import v2

    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    ours = normalize_batch(images, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 35, 40)
    reference = v2.Compose([v2.Resize(40, antialias=True), v2.CenterCrop(35), v2.ToDtype(torch.float32, scale=True)])
    for image, mine in zip(images, ours):
        assert torch.allclose(mine, reference(image), atol=2e-2)  # uint8 vs float resampling: within 5/255
    spec = _spec(ImageTensorSet(images, torch.zeros(5, dtype=torch.long)))
    assert batches.test_geometry(ProbeConfig(), spec) == (None, 16)
    assert batches.test_geometry(ProbeConfig(image_size=35, test_resize=40), spec) == (40, 35)
    folder = replace(spec, folder=True, image_size=224)
    assert batches.test_geometry(ProbeConfig(), folder) == (256, 224)


def test_added_fields_stay_out_of_stage_keys_until_set():
    """A field added after keys were issued (probe.encoder_batchnorm, knn.feature, ...) does not
    change the key of a config that leaves it at its default; setting it does."""
    from hardneg_bench.config import config_key, to_dict
    from hardneg_bench.evaluations.knn import knn_stage
    from hardneg_bench.evaluations.linear import probe_stage
    from hardneg_bench.recipes import resolve_config

    cfg = resolve_config("simclr", "shapes")
    plain = to_dict(cfg.probe)
    keyed = to_dict(cfg.probe, keyed=True)
    added = {"test_resize", "encoder_batchnorm", "classifier_init", "drop_last", "report_epoch"}
    assert set(plain) - set(keyed) == added
    assert {k: v for k, v in plain.items() if k not in added} == keyed
    probe_key, knn_key = config_key(probe_stage(cfg, "p", "shapes")), config_key(knn_stage(cfg, "p", "shapes"))
    for change in ({"encoder_batchnorm": "train", "protocol": "paper"}, {"classifier_init": "normal"}, {"drop_last": True}, {"report_epoch": "best"}, {"image_size": 32, "test_resize": 36}):
        assert config_key(probe_stage(replace(cfg, probe=replace(cfg.probe, **change)), "p", "shapes")) != probe_key, change
    assert config_key(knn_stage(replace(cfg, knn=replace(cfg.knn, feature="head")), "p", "shapes")) != knn_key


def test_the_projection_head_is_stored_with_the_encoder(tmp_path):
    """knn.feature head reads the head's output: encoder.pt holds the head, rebuilt exactly;
    CMC's two heads are not stored, and asking for them is a one-line config error."""
    from hardneg_bench.config import ConfigError
    from hardneg_bench.data.registry import get_dataset
    from hardneg_bench.engine.pretrain import encoder_record, load_encoder_with_head
    from hardneg_bench.engine.trainer import build_method
    from hardneg_bench.recipes import resolve_config
    from hardneg_bench.store import atomic_torch_save

    spec = get_dataset("shapes")
    for method in ("moco-v2", "cmc"):
        cfg = resolve_config(method, "shapes")
        torch.manual_seed(6)
        model = build_method(cfg, spec, 64).eval()
        atomic_torch_save(encoder_record(cfg, spec, model.backbone, model.projector), tmp_path / f"{method}.pt")
        if method == "cmc":
            with pytest.raises(ConfigError, match="knn.feature head"):
                load_encoder_with_head(tmp_path / f"{method}.pt", CPU.device)
            continue
        images = torch.randn(4, 3, spec.image_size, spec.image_size)
        loaded = load_encoder_with_head(tmp_path / f"{method}.pt", CPU.device)
        assert torch.allclose(loaded(images), model.projector(model.backbone(images)), atol=1e-5)


def test_the_linear_protocol_gives_100_on_separated_features_and_chance_on_random_ones():
    """Both transfer protocols' sanity check (the few-shot one's is in test_fewshot.py): features
    that separate the classes perfectly are classified perfectly; random features, whose labels
    carry nothing, at chance within the 95% binomial interval of the test split."""
    classes, n_train, n_test = 5, 500, 2000
    generator = torch.Generator().manual_seed(4)
    cfg = ProbeConfig(epochs=20, batch_size=100, optimizer=OptimizerConfig(name="adam", lr=0.01, weight_decay=0.0))
    y_train, y_test = torch.arange(n_train) % classes, torch.arange(n_test) % classes
    separated = lambda y: torch.eye(classes)[y] * 3 + 0.1 * torch.randn(len(y), classes, generator=generator)  # noqa: E731
    perfect = fast_linear_probe((separated(y_train), y_train), (separated(y_test), y_test), classes, cfg, seed=0)
    assert perfect["train_accuracy"] == 100.0 and perfect["test_accuracy"] == 100.0
    noise = lambda n: torch.randn(n, 32, generator=generator)  # noqa: E731
    random_features = fast_linear_probe((noise(n_train), y_train), (noise(n_test), y_test), classes, cfg, seed=0)
    chance = 100 / classes
    half_width = 100 * 1.96 * math.sqrt((1 / classes) * (1 - 1 / classes) / n_test)
    assert abs(random_features["test_accuracy"] - chance) < half_width
