"""The same meta-gradient as the per-task loop (``core.meta.unroll``), with the tasks of a meta-batch run together under ``torch.func.vmap``.

Wins where a task's inner loop is many small kernels (sine regression's 2x40 MLP, small images on a GPU),
where a Python loop over tasks is dominated by per-call overhead. On a CPU with large convolutions a plain
loop is often as fast and keeps only one task's graph in memory; ``bench/`` measures both.
All tasks of a batch must share shapes (same way / shot / query counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.func import functional_call, grad, vmap

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import MetaGradient, QueryObjective
from core.meta.inner import apply_rule, inner_objective, objective_of, prepare_head, task_loss, task_metric


def vmapped_meta_grad(
    learner: Learner, tasks: Sequence[Task], objective: QueryObjective, inner_steps: int, head_init: str,
    second_order: bool,
) -> MetaGradient:
    inner = learner.inner_names
    n_classes = tasks[0].n_classes
    support_x = torch.stack([t.support_x for t in tasks])
    support_y = torch.stack([t.support_y for t in tasks])
    query_x = torch.stack([t.query_x for t in tasks])
    query_y = torch.stack([t.query_y for t in tasks])
    initial = learner.initial_params()

    def run(params, x):
        return functional_call(learner.backbone, params, (x,))

    def one_task(sx, sy, qx, qy):
        fast = prepare_head(learner, initial, sx, sy, n_classes, head_init)
        anchor = {n: fast[n] for n in inner}  # the proximal term's centre (meta.proximal_lambda)

        def support_loss(inner_params, frozen):
            loss = task_loss(learner, run({**frozen, **inner_params}, sx), sy)
            return inner_objective(learner, loss, inner_params, anchor)

        total, query_out = 0.0, None
        for step_index in range(inner_steps):
            # torch.func's own gradient, as autograd.grad cannot run under vmap; the update is the shared one.
            grads = grad(support_loss)({n: fast[n] for n in inner}, {n: p for n, p in fast.items() if n not in inner})
            if not second_order:
                grads = {n: g.detach() for n, g in grads.items()}
            fast, _ = apply_rule(learner, fast, grads, step_index, {})
            if objective.every_step:
                query_out = run(fast, qx)
                total = total + objective.weight(step_index + 1, inner_steps) * task_loss(learner, query_out, qy)
        if not objective.every_step:
            query_out = run(fast, qx)
            total = task_loss(learner, query_out, qy)
        metric = task_metric(learner, query_out, qy)
        return total, (torch.zeros(()) if metric is None else metric)

    losses, metrics = vmap(one_task, randomness="same")(support_x, support_y, query_x, query_y)
    trainable = {n: p for n, p in learner.named_parameters() if p.requires_grad}
    tensors = list(trainable.values())
    found = torch.autograd.grad(losses.mean(), tensors, allow_unused=True)
    grads = {n: torch.zeros_like(t) if g is None else g for (n, t), g in zip(trainable.items(), found)}
    has_metric = objective_of(learner).has_metric
    return MetaGradient(grads, float(losses.detach().mean()), float(metrics.mean()) if has_metric else None)
