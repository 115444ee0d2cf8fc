"""Reptile (Nichol, Achiam and Schulman 2018, "On first-order meta-learning algorithms"): ``meta.estimator = "reptile"``.

Each task adapts by ``T`` first-order steps of the rule from the initialisation ``x`` (on the learner's inner
problem, the proximal one when ``meta.proximal_lambda > 0``), and the update direction of ``x`` is

    (x - y_T) / (T * inner_lr),     inner_lr = the rule's ``lr`` (SGD, ANIL),

averaged over the meta-batch: the mean inner step, so an outer step of rate ``eta`` moves ``x`` by
``eta (y_T - x) / (T inner_lr)`` towards the adapted weights. It is not the gradient of the query loss (it never
reads the query set; ``shared/reference.md`` calls it biased) and no graph is kept.

What the other meta-parameters get:
- the adapted tensors' starting weights: the direction above; a head prepared from the backbone (``prototype``)
  passes its direction on to the backbone by the chain rule;
- meta-parameters the rule does not adapt (batch-norm affine parameters, ANIL's feature extractor): the query
  loss's gradient at the adapted weights, holding them fixed, as first-order MAML gives them (Reptile alone would
  leave them untrained);
- a rule's meta-learned parameters (per-step rates, Meta-SGD, ALFA): none. The direction divides by the rate, so it
  cannot be a gradient for it; such rules are refused at config time (``Capabilities.meta_learned``).

The multi-step loss is refused: the direction of ``x`` does not involve the query loss at all.
The reported loss and metric are the query loss and metric at ``y_T``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import LAST_STEP, MetaGradient, QueryObjective, accumulate_task_gradients, register_estimator
from core.meta.first_order import (
    Outputs,
    at_fixed,
    first_order_adapt,
    query_loss_and_metric,
    refuse_multi_step,
    starting_weights,
    surrogate_gradient,
)


@dataclass(frozen=True)
class ReptileOptions:
    """Reptile has no settings of its own: the inner steps and rate are the run's (``meta.inner_steps``, the rule's
    ``lr``)."""


def reptile_direction(learner: Learner, start: dict, adapted: dict, steps: int) -> dict[str, torch.Tensor]:
    """``(x - y_T) / (T * inner_lr)`` per adapted tensor, ``inner_lr`` the rule's ``lr`` option."""
    rate = getattr(learner.rule.options, "lr", None)
    if rate is None:
        raise ValueError(f"reptile needs the inner rate of the rule (an 'lr' option); rule {learner.rule.name!r} has none")
    return {n: (start[n].detach() - adapted[n]) / (steps * float(rate)) for n in learner.inner_names}


@register_estimator(
    "reptile", "Reptile", ReptileOptions, rule_meta_gradients=False, multi_step_loss=False,
)
@dataclass
class Reptile:
    learner: Learner
    inner_steps: int
    head_init: str
    options: ReptileOptions
    execution: str = "loop"

    def meta_grad(self, tasks: Sequence[Task], objective: QueryObjective = LAST_STEP) -> MetaGradient:
        refuse_multi_step("reptile", objective)
        learner = self.learner
        if self.inner_steps < 1:
            raise ValueError("reptile needs at least one inner step")

        def task_gradient(task: Task, tensors: list[torch.Tensor], scale: float):
            start = starting_weights(learner, task, self.head_init)
            adapted, _ = first_order_adapt(learner, start, task, self.inner_steps)
            direction = reptile_direction(learner, start, adapted, self.inner_steps)
            with torch.enable_grad():
                loss, metric = query_loss_and_metric(learner, Outputs(learner, task), at_fixed(learner, start, adapted))
                grads = surrogate_gradient(learner, start, tensors, direction, loss, scale)
            return grads, float(loss.detach()), metric

        return accumulate_task_gradients(learner, tasks, task_gradient)
