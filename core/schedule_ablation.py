"""Does generating alpha/beta per task buy accuracy? The frozen-schedule ablation of a task-conditioned rule.

ALFA (Baik et al., NeurIPS 2020) generates alpha and beta from each task's learning state tau (eq. 4). Its Table 6
compares that with values that do not depend on the task. Here the same checkpoint is run twice on the same held-out
episodes:

* **real**: the generator reads each episode's own tau;
* **frozen**: the generator reads, at step ``j``, the mean of tau at step ``j`` over ``calibration`` episodes of
  the checkpoint's *training* classes (:func:`mean_learning_state`). Every episode then gets the same alpha/beta:
  the schedule the generator produces for an average training task.

The difference between the two is what the task conditioning is worth; when the generator ignores the task the
two give the same accuracies. Episodes are paired (the same seeds), so the difference gets its own interval.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from core.adapt import default_head_init
from core.data.sampler import EpisodeSampler, LabelledImageSet
from core.data.task import Task
from core.evaluate import EvaluationResult, evaluate_classification, mean_and_ci95
from core.learner import Learner
from core.meta.inner import inner_loop, prepare_head

__all__ = ["AblationResult", "frozen_schedule_ablation", "mean_learning_state", "with_frozen_schedule"]


def _check_task_conditioned(learner: Learner) -> None:
    if not learner.capabilities.task_conditioned:
        raise ValueError(
            f"the rule {learner.rule.name!r} does not generate its values from the task, so it has no schedule to "
            "freeze (a task-conditioned rule such as ALFA has)"
        )


def mean_learning_state(
    learner: Learner, tasks: Iterable[Task], steps: int, head_init: str | None = None
) -> torch.Tensor:
    """The learning state the rule's generator reads at each of ``steps`` inner steps, averaged over ``tasks``
    (``steps x state_size``, float64 on the CPU). Each task is adapted as :func:`core.adapt.adapt` does (same head
    set-up, no meta-graph)."""
    _check_task_conditioned(learner)
    if steps < 1:
        raise ValueError("steps must be at least 1")
    device = next(learner.parameters()).device
    total, count = None, 0
    for task in tasks:
        task = task.to(device)
        head = head_init or default_head_init(learner, task.n_way)
        params = {n: p.detach() for n, p in learner.initial_params().items()}
        with torch.no_grad():
            params = prepare_head(learner, params, task.support_x, task.support_y, task.n_way, head)
        result = inner_loop(learner, params, task.support_x, task.support_y, steps, create_graph=False,
                            differentiable=False)
        states = torch.stack([trace.learning_state for trace in result.traces]).to("cpu", torch.float64)
        total = states if total is None else total + states
        count += 1
    if total is None:
        raise ValueError("no tasks to average the learning state over")
    return total / count


def with_frozen_schedule(learner: Learner, states: torch.Tensor) -> Learner:
    """A copy of ``learner`` whose rule generates from ``states[j]`` at step ``j`` for every task (the learner
    itself, possibly cached and shared, is left as it is)."""
    _check_task_conditioned(learner)
    frozen = copy.deepcopy(learner)
    reference = next(frozen.parameters())
    frozen.rule.freeze_learning_state(states.to(device=reference.device, dtype=reference.dtype))
    return frozen


@dataclass(frozen=True)
class AblationResult:
    """Real against frozen generator on the same held-out episodes (accuracies as fractions)."""

    n_way: int
    k_shot: int
    episodes: int
    calibration_episodes: int
    head_init: str
    real: float
    real_ci95: float
    frozen: float
    frozen_ci95: float
    difference: float  # real - frozen, mean over the paired episodes
    difference_ci95: float
    episodes_changed: int  # episodes whose accuracy differs between the two
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frozen_schedule_ablation(
    learner: Learner,
    train_set: LabelledImageSet,
    test_set: LabelledImageSet,
    n_way: int,
    k_shot: int,
    n_query: int,
    steps: int,
    episodes: int = 600,
    calibration_episodes: int = 200,
    seed: int = 0,
    calibration_seed: int = 1,
) -> AblationResult:
    """Accuracy with the real generator and with its training-mean schedule on ``episodes`` held-out episodes.

    The schedule is calibrated on ``calibration_episodes`` training episodes of the same way and shot (the tasks
    the generator was trained on), never on the held-out ones.
    """
    head = default_head_init(learner, n_way)
    calibration = EpisodeSampler(train_set, n_way, k_shot, n_query, seed=calibration_seed)
    states = mean_learning_state(learner, calibration.episodes(calibration_episodes), steps, head)
    frozen = with_frozen_schedule(learner, states)
    runs: list[EvaluationResult] = [
        evaluate_classification(model, test_set, n_way, k_shot, n_query, episodes, steps, seed=seed,
                                head_init=head, progress=False)
        for model in (learner, frozen)
    ]
    real, fixed = runs
    differences = np.asarray(real.values) - np.asarray(fixed.values)
    difference, difference_ci = mean_and_ci95(differences)
    return AblationResult(
        n_way=n_way, k_shot=k_shot, episodes=episodes, calibration_episodes=calibration_episodes, head_init=head,
        real=real.mean, real_ci95=real.ci95, frozen=fixed.mean, frozen_ci95=fixed.ci95,
        difference=difference, difference_ci95=difference_ci,
        episodes_changed=int(np.count_nonzero(differences)), seconds=real.seconds + fixed.seconds,
    )
