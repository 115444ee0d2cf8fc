"""Adapt a meta-trained learner to one episode: what the dashboard, the CLI and the evaluator all call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.data.task import Task
from core.learner import Learner
from core.meta.inner import forward, inner_loop, prepare_head, task_loss


@dataclass
class AdaptationResult:
    """Everything one adaptation produced, as plain Python values (ready to print, store or plot)."""

    rule: str
    steps: int
    head_init: str
    class_names: list[str]
    predictions: list[int]
    probabilities: list[list[float]]
    query_labels: list[int] | None
    accuracy: float | None
    query_loss: float | None
    support_loss: list[float]  # before each step, then after the last: steps + 1 values
    support_accuracy: list[float]
    traces: list[dict[str, dict[str, float]]]  # per step: tensor name -> {"alpha", "beta"}
    seconds: float
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_head_init(learner: Learner, n_way: int) -> str:
    """The meta-learned head when the class count matches, else a class-count-free head.

    Which one was measured on held-out Omniglot alphabets (README, "Head choice"): prototypes suit plain
    gradient rules (MAML 20-way 1-shot: 68.3 % against 58.7 % with a zero head), but a rule that reads the
    head weights' values (``Capabilities.reads_head_weights``: ALFA's generator takes the layer-wise mean of
    the head weights) sees prototype weights far outside what it saw in training: ALFA with prototypes fell to
    chance (5-way 20.8 %, 20-way 5.2 %) while a zero head kept 93.2 % at 5-way.
    """
    if learner.head_init != "learned":
        return learner.head_init
    if n_way == learner.trained_n_classes:
        return "learned"
    return "zero" if learner.capabilities.reads_head_weights else "prototype"


def adapt(
    learner: Learner,
    episode: Task,
    steps: int,
    head_init: str | None = None,
    device: torch.device | str | None = None,
    on_step: Callable[[int], None] | None = None,
) -> AdaptationResult:
    """Run ``steps`` inner-loop updates on the support set, then classify the queries (first order, no meta-graph).

    The learner's tensors are read, never written: adaptation works on detached copies. ``on_step(k)`` is
    called after the k-th of the ``steps`` updates (progress for the dashboard).
    """
    if episode.n_way < 2:
        raise ValueError(f"an episode needs at least 2 classes, this one has {episode.n_way}")
    missing = [name for name, count in zip(episode.class_names, episode.shots_per_class) if count == 0]
    if missing:
        raise ValueError(f"these classes have no support images: {', '.join(missing)}")
    if len(episode.query_x) == 0:
        raise ValueError("the episode has no query images")
    if steps < 0:
        raise ValueError("steps must be 0 or more")
    device = torch.device(device) if device is not None else next(learner.parameters()).device
    head_init = head_init or default_head_init(learner, episode.n_way)
    episode = episode.to(device)
    started = time.perf_counter()
    params = {n: p.detach() for n, p in learner.initial_params().items()}
    with torch.no_grad():
        params = prepare_head(
            learner, params, episode.support_x, episode.support_y, episode.n_way, head_init
        )
    result = inner_loop(
        learner, params, episode.support_x, episode.support_y, steps,
        create_graph=False, differentiable=False, record_final=True, on_step=on_step,
    )
    with torch.no_grad():
        logits = forward(learner, result.params, episode.query_x)
        probabilities = torch.softmax(logits, dim=-1)
        predictions = probabilities.argmax(dim=-1)
        query_loss = accuracy = None
        if episode.query_y is not None:
            query_loss = float(task_loss(learner, logits, episode.query_y))
            accuracy = float((predictions == episode.query_y).float().mean())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return AdaptationResult(
        rule=learner.rule.name,
        steps=steps,
        head_init=head_init,
        class_names=list(episode.class_names),
        predictions=[int(p) for p in predictions.cpu()],
        probabilities=probabilities.cpu().tolist(),
        query_labels=None if episode.query_y is None else [int(v) for v in episode.query_y.cpu()],
        accuracy=accuracy,
        query_loss=query_loss,
        support_loss=[float(v) for v in result.support_losses],
        support_accuracy=[float(v) for v in result.support_accuracies],
        traces=[trace.as_floats() for trace in result.traces],
        seconds=seconds,
        device=str(device),
    )


def adapt_regression(learner: Learner, task: Task, steps: int) -> float:
    """Query loss (MSE for the sine experiments) after ``steps`` inner updates on ``task``'s support set."""
    params = {n: p.detach() for n, p in learner.initial_params().items()}
    result = inner_loop(learner, params, task.support_x, task.support_y, steps, create_graph=False, differentiable=False)
    with torch.no_grad():
        return float(task_loss(learner, forward(learner, result.params, task.query_x), task.query_y))
