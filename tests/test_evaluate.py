"""Linear probe and kNN: against brute-force computations, test split only, encoder untouched."""

import math

import torch
from torch import nn

from hardneg_bench.config import AugmentConfig, KnnConfig, OptimizerConfig, ProbeConfig
from hardneg_bench.data.base import DatasetSpec, ImageTensorSet
from hardneg_bench.engine.batches import on_device
from hardneg_bench.engine.evaluate import extract_features, fast_linear_probe, knn_accuracy, paper_linear_probe
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
