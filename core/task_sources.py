"""Where a training run's tasks come from, for either task kind, and how held-out tasks are scored.

A :class:`TaskSource` hands out task ``index`` of a seeded, reproducible stream (episode ``i * meta_batch + t`` is
task ``t`` of iteration ``i``, so a resumed run sees the tasks an uninterrupted one would) and evaluates a learner on
its first ``episodes`` tasks. Training asks its sources; it never asks which kind of task it is training on.
Only the training source distorts its images (``[data] augment``); held-out tasks are the data as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from core.config import TrainConfig
from core.data.augment import AugmentConfig, augment_task, background_fill
from core.data.factory import build_image_set
from core.data.sampler import EpisodeSampler, LabelledImageSet
from core.data.sine import SineTaskFamily
from core.data.task import Task
from core.evaluate import EvaluationResult, evaluate_classification, evaluate_regression
from core.learner import Learner

__all__ = ["EpisodeSource", "SineSource", "TaskSource", "task_source"]

# Query points per held-out sine task: the curve is scored densely, as in MAML section 5.1.
SINE_VALIDATION_QUERIES = 100


class TaskSource(Protocol):
    def task(self, index: int) -> Task: ...

    def evaluate(self, learner: Learner, episodes: int, steps: int, seed: int) -> EvaluationResult: ...


@dataclass
class EpisodeSource:
    """N-way K-shot classification episodes drawn from a labelled image set, their images randomly distorted by
    ``augment`` (task ``index``'s distortion a pure function of ``(seed, index)``; the default: none)."""

    image_set: LabelledImageSet
    n_way: int
    k_shot: int
    n_query: int
    seed: int
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        self.sampler = EpisodeSampler(self.image_set, self.n_way, self.k_shot, self.n_query, seed=self.seed)
        self.fill = background_fill(self.image_set.spec)

    def task(self, index: int) -> Task:
        return augment_task(self.sampler.episode(index), self.augment, self.seed, index, self.fill)

    def evaluate(self, learner: Learner, episodes: int, steps: int, seed: int) -> EvaluationResult:
        return evaluate_classification(
            learner, self.image_set, self.n_way, self.k_shot, self.n_query, episodes, steps, seed=seed, progress=False
        )


@dataclass
class SineSource:
    """Sine regression tasks (MAML section 5.1, ALFA section 4.5)."""

    family: SineTaskFamily
    k_shot: int
    n_query: int
    seed: int

    def task(self, index: int) -> Task:
        return self.family.task(index, self.k_shot, self.n_query, seed=self.seed)

    def evaluate(self, learner: Learner, episodes: int, steps: int, seed: int) -> EvaluationResult:
        return evaluate_regression(
            learner, self.family, self.k_shot, SINE_VALIDATION_QUERIES, episodes, steps, seed=seed, progress=False
        )


def task_source(config: TrainConfig, role: str) -> TaskSource | None:
    """The tasks of ``role`` (train / val) for ``config``; ``None`` when the config names no classes for it.
    Only ``train`` tasks are augmented (``config.data.augment``)."""
    if config.data.kind == "sine":
        return SineSource(SineTaskFamily(), config.task.k_shot, config.task.n_query, config.seed)
    if role != "train" and not getattr(config.data, role):
        return None
    task = config.task
    augment = config.data.augment if role == "train" else AugmentConfig()
    return EpisodeSource(build_image_set(config, role), task.n_way, task.k_shot, task.n_query, config.seed, augment)
