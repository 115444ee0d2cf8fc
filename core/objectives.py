"""What "fitting a task" means for each kind of task: the loss, the metric reported, and how the head is set up.

Every part of the engine that used to branch on the task kind (the inner loop, the meta-gradient estimators,
evaluation, training) asks the learner's objective instead, so a new kind of task is one objective here.

- classification: cross-entropy on logits, accuracy, and a head set up per episode (``learned`` / ``zero`` /
  ``prototype``, see :meth:`ClassificationObjective.prepare_head`);
- regression (the sine experiments of MAML section 5.1 and ALFA section 4.5): mean squared error, no metric beyond
  the loss, and the network's own output layer (nothing per task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from models.backbones import HeadNames

Params = dict[str, torch.Tensor]
# ``features(params, inputs)``: the backbone's embedding under fast weights ``params`` (a prototype head needs it).
FeatureFn = Callable[[Params, torch.Tensor], torch.Tensor]

HEAD_INITS = ("learned", "zero", "prototype")


@dataclass(frozen=True)
class Objective:
    """The loss minimised on support and query sets and the metric reported beside it."""

    kind: ClassVar[str] = "base"
    metric_name: ClassVar[str] = "loss"
    has_metric: ClassVar[bool] = False  # whether ``metric`` gives anything beyond the loss
    higher_is_better: ClassVar[bool] = False  # of the reported value: selects the best validation checkpoint

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metric(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """The reported metric of one task (``None`` where the loss is the metric)."""
        return None

    def prepare_head(
        self, params: Params, head: HeadNames, features: FeatureFn, support_x: torch.Tensor,
        support_y: torch.Tensor, n_classes: int | None, head_init: str,
    ) -> Params:
        """The fast weights an adaptation starts from; only classification changes the head per task."""
        return params


@dataclass(frozen=True)
class ClassificationObjective(Objective):
    kind: ClassVar[str] = "classification"
    metric_name: ClassVar[str] = "accuracy"
    has_metric: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def metric(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output.argmax(dim=-1) == target).float().mean()

    def prepare_head(
        self, params: Params, head: HeadNames, features: FeatureFn, support_x: torch.Tensor,
        support_y: torch.Tensor, n_classes: int | None, head_init: str,
    ) -> Params:
        """Set the classifier head up for an episode of ``n_classes`` classes.

        - ``learned``: the meta-learned head (only possible when the class count is the trained one);
        - ``zero``: a zero head, so every class starts equal and the inner loop writes it (the "zero trick");
        - ``prototype``: Proto-MAML (Triantafillou et al. 2020): ``W_k = 2 c_k``, ``b_k = -||c_k||^2`` from the
          support class means ``c_k`` of the initial embedding, which makes the initial logits negative squared
          Euclidean distances to the prototypes (up to a per-query constant). Gradients flow through ``c_k``.
        """
        if n_classes is None:
            raise ValueError("a classification task needs its class count")
        weight, bias = params[head.weight], params[head.bias]
        if head_init == "learned":
            if weight.shape[0] != n_classes:
                raise ValueError(
                    f"the meta-learned head has {weight.shape[0]} classes but the episode has {n_classes}; "
                    "use head_init 'zero' or 'prototype' for other class counts"
                )
            return params
        params = dict(params)
        if head_init == "zero":
            params[head.weight] = weight.new_zeros((n_classes, weight.shape[1]))
            params[head.bias] = bias.new_zeros((n_classes,))
            return params
        if head_init == "prototype":
            embedding = features(params, support_x)
            one_hot = F.one_hot(support_y, n_classes).to(embedding.dtype)
            counts = one_hot.sum(dim=0).clamp_min(1.0)
            prototypes = (one_hot.t() @ embedding) / counts[:, None]
            params[head.weight] = 2.0 * prototypes
            params[head.bias] = -(prototypes**2).sum(dim=1)
            return params
        raise ValueError(f"unknown head_init {head_init!r}; choose one of {', '.join(HEAD_INITS)}")


@dataclass(frozen=True)
class RegressionObjective(Objective):
    kind: ClassVar[str] = "regression"
    metric_name: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)


OBJECTIVES: dict[str, Objective] = {
    objective.kind: objective for objective in (ClassificationObjective(), RegressionObjective())
}


def objective_for(task_kind: str) -> Objective:
    """The objective of ``task_kind``; an unknown kind lists the known ones."""
    try:
        return OBJECTIVES[task_kind]
    except KeyError:
        raise ValueError(f"unknown task kind {task_kind!r}; choose one of {', '.join(OBJECTIVES)}") from None
