"""Golden predictions of the shipped checkpoints: what the engine gave before the structure issue changed it.

For every shipped checkpoint and every rule it supports, 20 fixed held-out Omniglot episodes at 5-way 1-shot and
20-way 1-shot (3 queries per class, the checkpoint's own evaluation steps and head), adapted in float64 so that a
comparison on another CPU sees the same numbers up to float64 rounding (about 1e-13 here), far below the 1e-6 the
issue asks for. ``python -m tests.golden`` records them into ``shipped_predictions.safetensors``;
``tests/test_golden_predictions.py`` adapts again and compares.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from core.adapt import adapt
from core.checkpoint import CheckpointMetadata, find_checkpoints, load_learner, supported_rules
from core.data.omniglot import OmniglotImageSet
from core.data.sampler import EpisodeSampler
from core.data.task import Task
from core.settings import SHIPPED_CHECKPOINT_DIR as SHIPPED_DIR

GOLDEN_FILE = Path(__file__).with_name("shipped_predictions.safetensors")
EPISODES = 20
WAYS = (5, 20)
QUERIES_PER_CLASS = 3
SEED = 2026
# The rules there were when the golden file was recorded (before the rule registry); rules registered since (ANIL)
# have no recorded predictions, and the file is never re-recorded, so the cases stay these.
RECORDED_RULES = ("sgd", "per_step", "meta_sgd", "alfa", "alfa_random")


@dataclass(frozen=True)
class GoldenCase:
    checkpoint: str  # file name under assets/checkpoints
    rule: str
    n_way: int

    @property
    def key(self) -> str:
        return f"{self.checkpoint}/{self.rule}/{self.n_way}way"


def cases() -> Iterator[tuple[GoldenCase, Path, CheckpointMetadata]]:
    """Every (shipped checkpoint, recorded rule it supports, way), with the file and its metadata."""
    for entry in find_checkpoints([SHIPPED_DIR]):
        if entry.metadata is None:
            raise RuntimeError(f"{entry.path}: {entry.error}")
        for rule in (rule for rule in supported_rules(entry.metadata) if rule in RECORDED_RULES):
            for n_way in WAYS:
                yield GoldenCase(entry.path.name, rule, n_way), entry.path, entry.metadata


def _double(episode: Task) -> Task:
    return Task(
        support_x=episode.support_x.double(), support_y=episode.support_y,
        query_x=episode.query_x.double(), query_y=episode.query_y,
        class_names=episode.class_names,
    )


def predict(case: GoldenCase, path: Path, metadata: CheckpointMetadata, omniglot_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predictions [EPISODES, Q] int64, probabilities [EPISODES, Q, way] float64)`` for one case."""
    learner, _ = load_learner(path, rule=case.rule, device="cpu")
    learner = learner.double()
    image_set = OmniglotImageSet(omniglot_root, alphabets=list(metadata.heldout_classes), spec=metadata.image)
    sampler = EpisodeSampler(image_set, case.n_way, 1, QUERIES_PER_CLASS, seed=SEED)
    steps = metadata.inner_steps.eval
    predictions, probabilities = [], []
    for index in range(EPISODES):
        result = adapt(learner, _double(sampler.episode(index)), steps=steps, device="cpu")
        predictions.append(torch.tensor(result.predictions, dtype=torch.int64))
        probabilities.append(torch.tensor(result.probabilities, dtype=torch.float64))
    return torch.stack(predictions), torch.stack(probabilities)
