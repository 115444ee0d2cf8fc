"""Differentiating through the inner loop (MAML eq. 1), run three ways that give the same gradient.

- ``loop``: one task at a time, its whole inner-loop graph kept until its backward pass;
- ``recompute`` (``core.meta.recompute``): only the weights after each inner step are kept, each step's graph is
  rebuilt in the backward sweep: memory of one step, about 1.4x the time;
- ``vmap`` (``core.meta.batched``): the tasks of a meta-batch run together under ``torch.func.vmap``.

``second_order=True`` differentiates through the inner gradients too (the Hessian-vector terms of MAML);
``False`` treats them as constants (first-order MAML): the meta-gradient of the initial weights is then the
query-loss gradient at the adapted weights (for SGD), and a rule's meta-parameters still get the gradient of their
direct effect on the update.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core.data.task import Task
from core.learner import Learner
from core.meta.batched import vmapped_meta_grad
from core.meta.estimator import MetaGradient, QueryObjective, accumulate_task_gradients
from core.meta.inner import forward, inner_loop, prepare_head, task_loss, task_metric
from core.meta.recompute import recomputed_meta_grad

EXECUTIONS = ("loop", "recompute", "vmap")


def looped_meta_grad(
    learner: Learner, tasks: Sequence[Task], objective: QueryObjective, inner_steps: int, head_init: str,
    second_order: bool,
) -> MetaGradient:
    def task_gradient(task: Task, tensors: list[torch.Tensor], scale: float):
        params = prepare_head(
            learner, learner.initial_params(), task.support_x, task.support_y, task.n_classes, head_init
        )
        result = inner_loop(
            learner, params, task.support_x, task.support_y, inner_steps,
            create_graph=second_order, differentiable=True, keep_step_params=objective.every_step,
        )
        if objective.every_step:
            loss = 0.0
            for step, step_params in enumerate(result.step_params, start=1):
                output = forward(learner, step_params, task.query_x)
                loss = loss + objective.weight(step, inner_steps) * task_loss(learner, output, task.query_y)
        else:
            output = forward(learner, result.params, task.query_x)
            loss = task_loss(learner, output, task.query_y)
        metric = task_metric(learner, output.detach(), task.query_y)
        # One backward per task: only one task's inner-loop graph is alive at a time.
        grads = torch.autograd.grad(loss / len(tasks), tensors, allow_unused=True)
        return list(grads), float(loss.detach()), None if metric is None else float(metric)

    return accumulate_task_gradients(learner, tasks, task_gradient)


def unrolled_meta_grad(
    learner: Learner, tasks: Sequence[Task], objective: QueryObjective, inner_steps: int, head_init: str,
    second_order: bool, execution: str,
) -> MetaGradient:
    """The meta-gradient through ``inner_steps`` steps of the learner's rule, run by ``execution``."""
    if execution == "loop":
        return looped_meta_grad(learner, tasks, objective, inner_steps, head_init, second_order)
    if execution == "recompute":
        return recomputed_meta_grad(learner, tasks, objective, inner_steps, head_init, second_order)
    if execution == "vmap":
        return vmapped_meta_grad(learner, tasks, objective, inner_steps, head_init, second_order)
    raise ValueError(f"unknown execution {execution!r}; choose one of {', '.join(EXECUTIONS)}")
