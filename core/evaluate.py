"""The standard few-shot evaluation protocol: many episodes, mean accuracy and its 95% confidence interval.

Classification episodes draw their classes from the whole set ("any-classes"), or, for the harder protocol of
Lake et al., all from one group of it ("within-alphabet" on Omniglot: characters of one alphabet look alike).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from core.adapt import adapt, adapt_regression
from core.data.augment import SupportAugment, background_fill, expand_support
from core.data.sampler import EpisodeSampler, LabelledImageSet
from core.data.sine import SineTaskFamily
from core.learner import Learner


def mean_and_ci95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 1.96 * std / sqrt(n) (the usual half-width of the 95% interval reported in few-shot papers)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to average")
    return float(values.mean()), float(1.96 * values.std() / math.sqrt(values.size))


@dataclass
class EvaluationResult:
    metric: str  # "accuracy" or "mse"
    mean: float
    ci95: float
    episodes: int
    n_way: int | None
    k_shot: int
    n_query: int
    steps: int
    rule: str
    head_init: str | None
    seed: int
    seconds: float
    values: list[float]
    protocol: str | None = None  # classification: "any-classes" or "within-<group kind>" ("within-alphabet")
    support_augment: dict[str, Any] | None = None  # test-time augmentation (SupportAugment.to_dict), None: none

    def to_dict(self, with_values: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_values:
            data.pop("values")
        return data

    def summary(self) -> str:
        if self.metric == "accuracy":
            return f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f} %"
        return f"{self.mean:.3f} ± {self.ci95:.3f}"


def evaluate_classification(
    learner: Learner,
    image_set: LabelledImageSet,
    n_way: int,
    k_shot: int,
    n_query: int,
    episodes: int = 600,
    steps: int = 5,
    seed: int = 0,
    head_init: str | None = None,
    progress: bool = True,
    on_episode: Callable[[int, float], None] | None = None,
    within_group: bool = False,
    support_augment: SupportAugment | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Mean query accuracy over episodes ``0 .. episodes - 1`` of ``EpisodeSampler(image_set, ..., seed)``;
    ``within_group``: every episode's classes from one group of the set (one Omniglot alphabet);
    ``support_augment``: test-time augmentation, distorted copies of the support images added to each episode's
    support set (:func:`core.data.augment.expand_support`; the same episodes as without it).
    ``on_episode(index, accuracy)`` after each episode; ``on_progress(done, episodes)`` too (a background job
    reports progress and checks for cancellation there: an exception it raises ends the evaluation)."""
    sampler = EpisodeSampler(image_set, n_way, k_shot, n_query, seed=seed, within_group=within_group)
    fill = background_fill(image_set.spec)
    protocol = f"within-{image_set.group_kind or 'group'}" if within_group else "any-classes"
    device = next(learner.parameters()).device
    accuracies, used_head = [], head_init
    started = time.perf_counter()
    bar = tqdm(range(episodes), desc=f"evaluate {n_way}-way {k_shot}-shot", disable=not progress, leave=False)
    for index in bar:
        episode = sampler.episode(index)
        if support_augment is not None:
            episode = expand_support(episode, support_augment, seed, index, fill)
        result = adapt(learner, episode, steps=steps, head_init=head_init, device=device)
        accuracies.append(result.accuracy)
        used_head = result.head_init
        if on_episode is not None:
            on_episode(index, result.accuracy)
        if on_progress is not None:
            on_progress(index + 1, episodes)
        if index % 20 == 0:
            bar.set_postfix(acc=f"{100 * float(np.mean(accuracies)):.1f}%")
    mean, ci = mean_and_ci95(accuracies)
    return EvaluationResult(
        "accuracy", mean, ci, episodes, n_way, k_shot, n_query, steps, learner.rule.name, used_head, seed,
        time.perf_counter() - started, accuracies, protocol=protocol,
        support_augment=None if support_augment is None else support_augment.to_dict(),
    )


def evaluate_regression(
    learner: Learner,
    family: SineTaskFamily,
    k_shot: int,
    n_query: int = 100,
    episodes: int = 600,
    steps: int = 5,
    seed: int = 1,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Mean query MSE over tasks ``0 .. episodes - 1`` of ``family`` (``on_progress(done, episodes)`` after each)."""
    device = next(learner.parameters()).device
    errors = []
    started = time.perf_counter()
    for index in tqdm(range(episodes), desc=f"evaluate sine {k_shot}-shot", disable=not progress, leave=False):
        errors.append(adapt_regression(learner, family.task(index, k_shot, n_query, seed=seed).to(device), steps))
        if on_progress is not None:
            on_progress(index + 1, episodes)
    mean, ci = mean_and_ci95(errors)
    return EvaluationResult(
        "mse", mean, ci, episodes, None, k_shot, n_query, steps, learner.rule.name, None, seed,
        time.perf_counter() - started, errors,
    )
