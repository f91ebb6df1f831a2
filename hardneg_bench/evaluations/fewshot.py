"""Few-shot episodes on cached frozen features: episode sampling, two heads, mean and 95% interval.

The protocol is the fixed-ways, fixed-shots one of the few-shot literature (Vinyals et al. 2016,
Chen et al. 2019 "A Closer Look at Few-shot Classification", Tian et al. 2020 "Rethinking Few-Shot
Image Classification"), reported the way Meta-Dataset (Triantafillou et al. 2020) and those papers
report it: 600 test episodes, 15 query images per class, the mean accuracy with the half-width of
its 95% confidence interval, 1.96 * std / sqrt(episodes). Meta-Dataset's own variable-way,
variable-shot episode sampler is not implemented here.

Episodes depend only on the labels and the seed (a CPU ``torch.Generator``), so every encoder
evaluated on the same split is scored on exactly the same episodes. Both heads work on
L2-normalised features and run all episodes at once, as batched tensor operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from ..config import ConfigError, RunConfig
from ..data.base import DatasetSpec
from ..engine.runtime import derive_seed
from .base import Evaluation, EvaluationStage
from .features import test_transform

if TYPE_CHECKING:
    from ..pipeline import Encoder, Pipeline

WAYS = 5
SHOTS = (1, 5)
QUERIES = 15
EPISODES = 600

LOGISTIC_STEPS = 100
LOGISTIC_LR = 0.01
LOGISTIC_WEIGHT_DECAY = 1e-3


@dataclass(frozen=True)
class Episodes:
    """Sampled episodes as indices into the features; the label of a support or query image within
    its episode is its position along the ``ways`` axis."""

    support: torch.Tensor
    """Long tensor (episodes, ways, shots) of feature indices."""
    query: torch.Tensor
    """Long tensor (episodes, ways, queries) of feature indices."""
    classes: torch.Tensor
    """Long tensor (episodes, ways) of the dataset class ids of each episode's ways."""

    @property
    def ways(self) -> int:
        return self.classes.shape[1]


def _eligible_classes(labels: torch.Tensor, ways: int, per_class: int, shots: int, queries: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ids (ascending) with at least ``per_class`` images and their counts; a one-line
    ConfigError when fewer than ``ways`` classes qualify."""
    classes, counts = torch.unique(labels, return_counts=True)
    keep = counts >= per_class
    if int(keep.sum()) < ways:
        largest = int(counts.max()) if counts.numel() else 0
        raise ConfigError(
            f"few-shot episodes need {ways} classes with at least {per_class} images each "
            f"(shots {shots} + queries {queries}); only {int(keep.sum())} of {classes.numel()} classes "
            f"have that many (the largest has {largest}): lower fewshot.queries or fewshot.shots"
        )
    return classes[keep], counts[keep]


def _check_positive(**values: int) -> None:
    """A one-line ConfigError for the first value below 1."""
    for name, value in values.items():
        if int(value) < 1:
            raise ConfigError(f"few-shot {name} must be at least 1, got {value}")


def sample_episodes(labels: torch.Tensor, ways: int = WAYS, shots: int = SHOTS[0], queries: int = QUERIES, episodes: int = EPISODES, seed: int = 0) -> Episodes:
    """Draw ``episodes`` episodes: ``ways`` distinct classes among those with at least
    ``shots + queries`` images, then per class ``shots`` support and ``queries`` query images, all
    distinct. Seeded and dependent on the labels only."""
    _check_positive(ways=ways, shots=shots, queries=queries, episodes=episodes)
    labels = torch.as_tensor(labels).long().cpu()
    per_class = shots + queries
    classes, _ = _eligible_classes(labels, ways, per_class, shots, queries)
    members = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.stack([torch.randperm(len(classes), generator=generator)[:ways] for _ in range(episodes)])
    drawn = torch.stack([
        torch.stack([members[c][torch.randperm(len(members[c]), generator=generator)[:per_class]] for c in row.tolist()])
        for row in chosen
    ])
    return Episodes(support=drawn[..., :shots], query=drawn[..., shots:], classes=classes[chosen])


def _normalised(x: torch.Tensor) -> torch.Tensor:
    """Features as at least float32, L2-normalised along the last axis."""
    return F.normalize(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1)


def _accuracies(logits: torch.Tensor) -> torch.Tensor:
    """Per-episode accuracy from query logits (episodes, ways, queries, ways), the true way of each
    query being its position along axis 1."""
    truth = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1)
    return (logits.argmax(dim=-1) == truth).to(logits.dtype).mean(dim=(1, 2))


@torch.no_grad()
def nearest_mean_accuracy(x: torch.Tensor, episodes: Episodes) -> torch.Tensor:
    """Per-episode accuracy (episodes,) of the nearest-class-mean head: queries go to the class
    whose L2-normalised mean of L2-normalised support features has the highest cosine similarity."""
    x = _normalised(x.detach())
    means = F.normalize(x[episodes.support.to(x.device)].mean(dim=2), dim=-1)
    queries = x[episodes.query.to(x.device)]
    return _accuracies(torch.einsum("ewqd,evd->ewqv", queries, means))


def logistic_accuracy(x: torch.Tensor, episodes: Episodes, steps: int = LOGISTIC_STEPS, lr: float = LOGISTIC_LR, weight_decay: float = LOGISTIC_WEIGHT_DECAY) -> torch.Tensor:
    """Per-episode accuracy (episodes,) of a logistic-regression head trained on each episode's
    support alone.

    Each episode has one linear layer (weights (D, ways) and a bias), initialised to zero (the
    problem is convex, and a zero start needs no random draws), trained on the L2-normalised support
    features by full-batch Adam for ``steps`` steps on the mean cross-entropy, with L2 weight decay
    on the weights only. All episodes train together: the weights are one (episodes, D, ways)
    tensor, the loss is the sum over episodes of each episode's mean cross-entropy, so each
    episode's gradient is its own and, Adam being elementwise, each episode follows the trajectory
    it would follow alone (up to floating-point rounding). The defaults (100 steps, lr 0.01, decay
    1e-3) take Chen et al.'s Baseline values (lr 0.01, decay 1e-3, 100 passes over the support) with
    full-batch Adam in place of their SGD on batches of 4; Tian et al. fit scikit-learn's L-BFGS
    logistic regression instead.
    """
    x = _normalised(x.detach())
    support, query = x[episodes.support.to(x.device)], x[episodes.query.to(x.device)]
    n_episodes, ways, shots, dim = support.shape
    weight = torch.zeros(n_episodes, dim, ways, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(n_episodes, 1, ways, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.Adam([{"params": [weight], "weight_decay": weight_decay}, {"params": [bias], "weight_decay": 0.0}], lr=lr)
    inputs = support.reshape(n_episodes, ways * shots, dim)
    targets = torch.arange(ways, device=x.device).repeat_interleave(shots).repeat(n_episodes)
    with torch.enable_grad():
        for _ in range(steps):
            logits = torch.baddbmm(bias, inputs, weight)
            loss = F.cross_entropy(logits.reshape(-1, ways), targets, reduction="sum") / (ways * shots)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        logits = torch.baddbmm(bias, query.reshape(n_episodes, -1, dim), weight)
        return _accuracies(logits.reshape(n_episodes, ways, -1, ways))


def mean_and_ci95(accuracies: torch.Tensor | Sequence[float]) -> tuple[float, float]:
    """Mean accuracy and the half-width of its 95% confidence interval, both in percent:
    1.96 * (sample std) / sqrt(n) over at least two episode accuracies given as fractions."""
    acc = torch.as_tensor(accuracies, dtype=torch.float64).flatten()
    if acc.numel() < 2:
        raise ValueError(f"a 95% interval needs at least 2 episode accuracies, got {acc.numel()}")
    return 100 * acc.mean().item(), 100 * 1.96 * acc.std(unbiased=True).item() / math.sqrt(acc.numel())


HEADS = {"nearest_mean": nearest_mean_accuracy, "logistic": logistic_accuracy}


def fewshot_stage(cfg: RunConfig, encoder_key: str, dataset: str, shots: int, head: str) -> dict:
    """The config of one few-shot evaluation (``shots`` per class, classified by ``head``) of the
    encoder ``encoder_key`` on ``dataset``'s test split, with the probe's test transform."""
    f = cfg.fewshot
    episodes = {"ways": f.ways, "shots": shots, "queries": f.queries, "episodes": f.episodes, "head": head}
    return {"parent": encoder_key, "dataset": dataset, "seed": cfg.seed, "fewshot": episodes, **test_transform(cfg)}


def _stages(cfg: RunConfig, encoder_key: str, dataset: str, transfer: bool) -> list[EvaluationStage]:
    """One stage per (shots, head); they share the features and, per shots, the episodes."""
    f = cfg.fewshot
    return [
        EvaluationStage("fewshot", fewshot_stage(cfg, encoder_key, dataset, shots, head), {"fewshot": {"ways": f.ways, "shots": shots, "head": head}})
        for shots in f.shots
        for head in f.heads
    ]


def _compute(pipeline: "Pipeline", encoder: "Encoder", spec: DatasetSpec, stage: EvaluationStage) -> dict:
    """Episodes drawn from the test split's labels and the run's seed (the same for every encoder),
    classified by the stage's head on the cached features."""
    cfg, episodes_config = pipeline.cfg, stage.config["fewshot"]
    x, y = pipeline.features(encoder, spec, "test")
    episodes = sample_episodes(y.cpu(), episodes_config["ways"], episodes_config["shots"], episodes_config["queries"], episodes_config["episodes"], derive_seed(cfg.seed, "fewshot", spec.name))
    mean, ci95 = mean_and_ci95(HEADS[episodes_config["head"]](x, episodes).cpu())
    return {"test_accuracy": mean, "ci95": ci95, "episodes": episodes_config["episodes"]}


FEWSHOT = Evaluation("fewshot", "N-way K-shot episodes on the frozen features of the test split (nearest class mean, per-episode logistic regression), mean and 95% interval", ("test",), _stages, _compute)
