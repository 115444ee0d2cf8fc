"""The MAML meta-gradient with the inner loop recomputed step by step instead of kept: memory of one step.

Second-order MAML keeps every inner step's forward activations and its gradient graph until the outer backward
pass, so memory grows with ``inner_steps`` (ResNet12 at 84x84 needs more than 17 GB for 5 steps). Here the
forward sweep keeps only the fast weights after each step, and the backward sweep walks the steps in reverse:
it rebuilds step ``k`` from its stored input weights (with ``create_graph`` for second order), pulls the
adjoint ``dL/dθ_{k+1}`` back through it to ``dL/dθ_k`` and the rule's meta-parameters, and frees that graph
before the next. This is reverse-mode differentiation of MAML eq. 1 with checkpoints at step boundaries
(Griewank & Walther's checkpointing, as in "Gradient-based hyperparameter optimization through reversible
learning", Maclaurin et al. 2015, without the reversibility): each step's forward and inner gradient runs
twice, and peak memory is one step's graph plus the stored weights.

The gradient is the same as the per-task loop's (``core.meta.unroll``, tested to float tolerance), including
the MAML++ multi-step loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import MetaGradient, QueryObjective, accumulate_task_gradients
from core.meta.inner import apply_rule, forward, prepare_head, support_gradients, task_loss, task_metric

Params = dict[str, torch.Tensor]


def recomputed_meta_grad(
    learner: Learner, tasks: Sequence[Task], objective: QueryObjective, inner_steps: int, head_init: str,
    second_order: bool,
) -> MetaGradient:
    def task_gradient(task: Task, tensors: list[torch.Tensor], scale: float):
        return _task_gradient(learner, task, tensors, scale, objective, inner_steps, head_init, second_order)

    return accumulate_task_gradients(learner, tasks, task_gradient)


def _step(
    learner: Learner, fast: Params, step_index: int, task: Task, create_graph: bool, anchor: Params
) -> Params:
    """One inner step from the fast weights ``fast`` (the shared support gradient and rule update)."""
    grads, _, _ = support_gradients(
        learner, fast, lambda weights: forward(learner, weights, task.support_x), task.support_y,
        create_graph=create_graph, retain_graph=create_graph, anchor=anchor,
    )
    return apply_rule(learner, fast, grads, step_index, {})[0]


def _task_gradient(
    learner: Learner, task: Task, tensors: list[torch.Tensor], scale: float, objective: QueryObjective,
    inner_steps: int, head_init: str, second_order: bool,
) -> tuple[list[torch.Tensor | None], float, float | None]:
    """One task's share of the meta-gradient: a forward sweep storing the weights, then the reverse sweep."""
    initial = prepare_head(
        learner, learner.initial_params(), task.support_x, task.support_y, task.n_classes, head_init
    )
    names = list(initial)
    # The proximal term's centre (meta.proximal_lambda): a leaf here, its adjoint gathered step by step and
    # pulled through the head set-up with the initial weights' at the end.
    anchor = {n: initial[n].detach().requires_grad_() for n in learner.inner_names}
    anchor_adjoint: dict[str, torch.Tensor] = {}
    # Forward sweep: fast weights after every step, no graph kept.
    stored = [{n: p.detach() for n, p in initial.items()}]
    for step_index in range(inner_steps):
        start = {n: p.detach().requires_grad_(n in learner.inner_names) for n, p in stored[-1].items()}
        stored.append({n: p.detach() for n, p in _step(learner, start, step_index, task, False, anchor).items()})

    def query_loss(params: Params) -> torch.Tensor:
        return task_loss(learner, forward(learner, params, task.query_x), task.query_y)

    # The adjoint at the last weights: d(query loss)/dθ_K (the final loss, or the last weighted term).
    final = {n: p.detach().requires_grad_() for n, p in stored[-1].items()}
    with torch.enable_grad():
        output = forward(learner, final, task.query_x)
        loss = task_loss(learner, output, task.query_y)
        weight = objective.weight(inner_steps, inner_steps)
        adjoint = list(torch.autograd.grad(loss * weight * scale, [final[n] for n in names], allow_unused=True))
    adjoint = [torch.zeros_like(final[n]) if a is None else a for n, a in zip(names, adjoint)]
    metric = task_metric(learner, output.detach(), task.query_y)
    # Reported like the loop: the (weighted) query loss the meta-gradient is of.
    total_loss = float(loss.detach()) * float(weight)
    meta: list[torch.Tensor | None] = [None] * len(tensors)

    def accumulate(found):
        for i, g in enumerate(found):
            if g is not None:
                meta[i] = g if meta[i] is None else meta[i] + g

    # Backward sweep: rebuild step k from θ_k, pull the adjoint back to θ_k and the meta-parameters.
    for step_index in reversed(range(inner_steps)):
        start = {n: p.detach().requires_grad_() for n, p in stored[step_index].items()}
        with torch.enable_grad():
            # First order: the inner gradient is a constant and only the rule's direct use of θ_k remains.
            nxt = _step(learner, start, step_index, task, second_order, anchor)
            outputs = [nxt[n] for n in names]
            extra = 0.0
            if objective.every_step and step_index > 0:
                # MAML++: the query loss after step ``step_index`` (weights θ_step_index) also counts.
                unscaled = query_loss(start) * objective.weight(step_index, inner_steps)
                total_loss += float(unscaled.detach())
                extra = unscaled * scale
            anchors = list(anchor.values()) if learner.proximal_lambda else []
            found = torch.autograd.grad(
                outputs + ([extra] if torch.is_tensor(extra) else []),
                [start[n] for n in names] + tensors + anchors,
                grad_outputs=adjoint + ([extra.new_ones(())] if torch.is_tensor(extra) else []),
                allow_unused=True,
            )
        adjoint = [torch.zeros_like(start[n]) if g is None else g for n, g in zip(names, found[: len(names)])]
        accumulate(found[len(names): len(names) + len(tensors)])
        for n, g in zip(anchor, found[len(names) + len(tensors):]):
            if g is not None:
                anchor_adjoint[n] = g if n not in anchor_adjoint else anchor_adjoint[n] + g
    # Finally through the head set-up and the initial weights to the meta-parameters.
    with torch.enable_grad():
        # A scalar surrogate, so a leaf that is both an output and an input (a backbone weight also read by
        # the prototype head) gets both of its paths summed.
        terms = [(initial[n] * a).sum() for n, a in zip(names, adjoint) if initial[n].requires_grad]
        terms += [(initial[n] * a).sum() for n, a in anchor_adjoint.items() if initial[n].requires_grad]
        if terms:
            accumulate(torch.autograd.grad(torch.stack(terms).sum(), tensors, allow_unused=True))
    return meta, total_loss, None if metric is None else float(metric)
