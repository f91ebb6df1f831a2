"""Few-shot episodes on frozen features: the sampler, both heads against per-episode loops written
here independently, the 95% interval against its formula, perfect and chance features, timing."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hardneg_bench.config import ConfigError
from hardneg_bench.evaluations.fewshot import (
    EPISODES,
    QUERIES,
    SHOTS,
    WAYS,
    logistic_accuracy,
    mean_and_ci95,
    nearest_mean_accuracy,
    sample_episodes,
)


def labels_with_counts(counts: list[int], seed: int = 0) -> torch.Tensor:
    """Labels with ``counts[c]`` images of class c, shuffled."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def clustered_features(labels: torch.Tensor, dim: int, noise: float, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """One random centre per class plus Gaussian noise of the given scale."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(int(labels.max()) + 1, dim, generator=g, dtype=dtype)
    return centres[labels] + noise * torch.randn(len(labels), dim, generator=g, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# The sampler


def test_defaults_are_five_way_one_and_five_shot_fifteen_queries_600_episodes():
    assert (WAYS, SHOTS, QUERIES, EPISODES) == (5, (1, 5), 15, 600)


def test_episodes_have_the_asked_shapes_distinct_classes_and_right_labels():
    labels = labels_with_counts([30] * 8 + [18, 5])  # classes 8 and 9 have too few for 4 + 15
    ep = sample_episodes(labels, ways=5, shots=4, queries=15, episodes=200, seed=3)
    assert ep.support.shape == (200, 5, 4) and ep.query.shape == (200, 5, 15) and ep.classes.shape == (200, 5)
    assert ep.ways == 5
    for e in range(200):
        assert len(set(ep.classes[e].tolist())) == 5
        assert set(ep.classes[e].tolist()) <= set(range(8))
        for w in range(5):
            c = int(ep.classes[e, w])
            assert (labels[ep.support[e, w]] == c).all() and (labels[ep.query[e, w]] == c).all()
        images = torch.cat([ep.support[e].flatten(), ep.query[e].flatten()]).tolist()
        assert len(set(images)) == len(images)  # no image twice, in particular none both support and query
    assert set(ep.classes.flatten().tolist()) == set(range(8))  # every eligible class gets drawn


def test_same_seed_same_episodes_other_seed_other_episodes():
    labels = labels_with_counts([25] * 10)
    a = sample_episodes(labels, episodes=50, seed=7)
    b = sample_episodes(labels.clone(), episodes=50, seed=7)
    c = sample_episodes(labels, episodes=50, seed=8)
    for name in ("support", "query", "classes"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.support, c.support) and not torch.equal(a.classes, c.classes)


def test_too_few_classes_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        sample_episodes(labels_with_counts([40] * 3 + [10] * 4), ways=5, shots=5, queries=15)
    message = str(err.value)
    assert "\n" not in message
    assert "5 classes" in message and "20 images" in message and "only 3 of 7" in message


def test_too_few_images_per_class_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        sample_episodes(labels_with_counts([12] * 10), ways=5, shots=5, queries=15)
    message = str(err.value)
    assert "\n" not in message
    assert "at least 20 images" in message and "only 0 of 10" in message and "largest has 12" in message


def test_non_positive_sizes_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="shots must be at least 1, got 0"):
        sample_episodes(labels_with_counts([30] * 6), shots=0)


# ---------------------------------------------------------------------------------------------
# The heads against per-episode loops


def loop_nearest_mean(x: torch.Tensor, support: torch.Tensor, query: torch.Tensor) -> float:
    """One episode: class means of normalised support, cosine to normalised means, argmax."""
    xn = x / x.norm(dim=1, keepdim=True)
    means = torch.stack([xn[s].mean(0) for s in support])
    means = means / means.norm(dim=1, keepdim=True)
    correct = total = 0
    for way, q in enumerate(query):
        predicted = (xn[q] @ means.T).argmax(dim=1)
        correct += int((predicted == way).sum())
        total += len(q)
    return correct / total


def loop_logistic(x: torch.Tensor, support: torch.Tensor, query: torch.Tensor, steps: int, lr: float, weight_decay: float) -> float:
    """One episode: an nn.Linear from zeros, full-batch Adam, decay on the weight only."""
    xn = x / x.norm(dim=1, keepdim=True)
    ways, shots = support.shape
    layer = torch.nn.Linear(x.shape[1], ways).to(x.dtype)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam([{"params": [layer.weight], "weight_decay": weight_decay}, {"params": [layer.bias], "weight_decay": 0.0}], lr=lr)
    inputs = xn[support.flatten()]
    targets = torch.arange(ways).repeat_interleave(shots)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(layer(inputs), targets).backward()
        opt.step()
    with torch.no_grad():
        predicted = layer(xn[query.flatten()]).argmax(dim=1)
    return (predicted == torch.arange(ways).repeat_interleave(query.shape[1])).double().mean().item()


@pytest.mark.parametrize("shots", [1, 5])
def test_nearest_mean_matches_a_per_episode_loop(shots):
    labels = labels_with_counts([40] * 12)
    x = clustered_features(labels, dim=16, noise=1.5)
    ep = sample_episodes(labels, ways=5, shots=shots, queries=15, episodes=60, seed=1)
    batched = nearest_mean_accuracy(x, ep)
    looped = torch.tensor([loop_nearest_mean(x, ep.support[e], ep.query[e]) for e in range(60)])
    assert batched.shape == (60,)
    assert torch.allclose(batched.double(), looped.double())
    assert 0 < batched.min() and batched.max() < 1  # noisy enough that the comparison means something


@pytest.mark.parametrize("shots", [1, 5])
def test_logistic_matches_a_per_episode_loop_with_the_same_init_and_steps(shots):
    labels = labels_with_counts([40] * 12)
    x = clustered_features(labels, dim=16, noise=1.5, dtype=torch.float64)
    ep = sample_episodes(labels, ways=5, shots=shots, queries=15, episodes=30, seed=2)
    batched = logistic_accuracy(x, ep, steps=50, lr=0.05, weight_decay=1e-3)
    looped = torch.tensor([loop_logistic(x, ep.support[e], ep.query[e], 50, 0.05, 1e-3) for e in range(30)])
    assert batched.shape == (30,)
    assert torch.allclose(batched.double(), looped.double())
    assert 0 < batched.min() and batched.max() < 1


def test_logistic_runs_inside_no_grad_and_leaves_features_alone():
    labels = labels_with_counts([20] * 6)
    x = clustered_features(labels, dim=8, noise=0.5)
    before = x.clone()
    ep = sample_episodes(labels, episodes=10)
    expected = logistic_accuracy(x, ep, steps=10)
    with torch.no_grad():
        assert torch.equal(logistic_accuracy(x, ep, steps=10), expected)
    assert torch.equal(x, before)


# ---------------------------------------------------------------------------------------------
# The interval, perfect and chance features


def test_ci95_is_the_textbook_formula():
    acc = np.random.default_rng(0).uniform(0.2, 1.0, size=137)
    mean, half = mean_and_ci95(torch.tensor(acc))
    assert mean == pytest.approx(100 * acc.mean(), abs=1e-9)
    assert half == pytest.approx(100 * 1.96 * acc.std(ddof=1) / np.sqrt(137), abs=1e-9)
    assert mean_and_ci95([0.5, 0.5, 0.5]) == (50.0, 0.0)
    with pytest.raises(ValueError):
        mean_and_ci95([0.5])


@pytest.mark.parametrize("shots", [1, 5])
def test_perfectly_separated_features_give_100_percent_for_both_heads(shots):
    labels = labels_with_counts([30] * 10)
    x = F.one_hot(labels, 32).float() + 0.05 * torch.randn(len(labels), 32, generator=torch.Generator().manual_seed(0))
    ep = sample_episodes(labels, shots=shots, episodes=100, seed=4)
    assert mean_and_ci95(nearest_mean_accuracy(x, ep)) == (100.0, 0.0)
    assert mean_and_ci95(logistic_accuracy(x, ep)) == (100.0, 0.0)


def test_random_features_are_at_chance_within_the_interval():
    # A pool large enough that episodes rarely share an image: the interval covers the episode
    # draw only, so episodes must be close to independent draws from the same distribution.
    labels = labels_with_counts([10_000] * 20)
    x = torch.randn(len(labels), 32, generator=torch.Generator().manual_seed(5))
    ep = sample_episodes(labels, ways=5, shots=5, queries=15, episodes=2000, seed=6)
    for accuracies in (nearest_mean_accuracy(x, ep), logistic_accuracy(x, ep)):
        mean, half = mean_and_ci95(accuracies)
        assert 0 < half < 2
        assert abs(mean - 20.0) <= half


def test_600_five_way_five_shot_nearest_mean_episodes_take_under_two_seconds():
    labels = labels_with_counts([100] * 20)
    x = torch.randn(2000, 64, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    ep = sample_episodes(labels, ways=5, shots=5, queries=15, episodes=600, seed=0)
    sampled = time.perf_counter()
    accuracies = nearest_mean_accuracy(x, ep)
    done = time.perf_counter()
    print(f"600 episodes 5-way 5-shot 15-query on 2000x64: sampling {sampled - start:.3f} s, nearest-mean {done - sampled:.3f} s")
    assert accuracies.shape == (600,)
    assert done - sampled < 2.0
