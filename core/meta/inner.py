"""The inner loop shared by meta-training, evaluation and the dashboard, and the one inner step every path takes.

Functional: the backbone is run with ``torch.func.functional_call`` on a dict of fast weights, so the
module that holds the meta-parameters is never mutated by an adaptation (a cached model can serve many
sessions at once).

One inner step (MAML eq. 1, ALFA eq. 4) is: the support loss of the current fast weights, its gradient with
respect to the tensors the rule adapts (:func:`support_gradients`), and the rule's update of those tensors
(:func:`apply_rule`). The per-task loop here, the recomputing estimator (``core.meta.recompute``) and the
vmapped one (``core.meta.batched``, which takes its gradient with ``torch.func.grad``) all build on these two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call

from core.learner import MODULE_LOCK, Learner
from core.objectives import Objective, objective_for
from core.rules import StepTrace
from models.backbones import head_names

Params = dict[str, torch.Tensor]


def objective_of(learner: Learner) -> Objective:
    return objective_for(learner.task_kind)


def forward(learner: Learner, params: Params, x: torch.Tensor, features_only: bool = False) -> torch.Tensor:
    # Serialised (see MODULE_LOCK); the recorded graph holds the right tensors, so backward passes run in parallel.
    with MODULE_LOCK:
        return functional_call(learner.backbone, params, (x,), {"features_only": features_only})


def head_forward(learner: Learner, params: Params, embedding: torch.Tensor) -> torch.Tensor:
    """The head alone on an embedding: ``forward(x) == head_forward(forward(x, features_only=True))``."""
    names = head_names(learner.backbone)
    with MODULE_LOCK:
        return functional_call(
            learner.backbone.head, {"weight": params[names.weight], "bias": params[names.bias]}, (embedding,)
        )


def task_loss(learner: Learner, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return objective_of(learner).loss(output, target)


def task_metric(learner: Learner, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    return objective_of(learner).metric(output, target)


def prepare_head(
    learner: Learner, params: Params, support_x: torch.Tensor, support_y: torch.Tensor, n_classes: int | None,
    head_init: str,
) -> Params:
    """The fast weights an adaptation starts from (``Objective.prepare_head``: learned, zero or prototype head)."""
    def features(fast: Params, x: torch.Tensor) -> torch.Tensor:
        return forward(learner, fast, x, features_only=True)

    return objective_of(learner).prepare_head(
        params, head_names(learner.backbone), features, support_x, support_y, n_classes, head_init
    )


def proximal_term(learner: Learner, fast: Params, anchor: Params) -> torch.Tensor | None:
    """``lambda/2 ||y - x||^2`` over the adapted tensors (``y`` = ``fast``, ``x`` = ``anchor``, the weights the
    adaptation started from); ``None`` when ``learner.proximal_lambda`` is 0 (the inner problem of MAML eq. 1)."""
    lam = learner.proximal_lambda
    if not lam:
        return None
    squares = [((fast[n] - anchor[n]) ** 2).sum() for n in learner.inner_names]
    return 0.5 * lam * torch.stack(squares).sum()


def inner_objective(learner: Learner, support_loss: torch.Tensor, fast: Params, anchor: Params | None) -> torch.Tensor:
    """What the inner loop descends: the support loss, plus the proximal term when ``proximal_lambda > 0``.

    At ``proximal_lambda = 0`` it is the support loss tensor itself, so every gradient is bit for bit what it was
    before the option existed.
    """
    if anchor is None:
        return support_loss
    term = proximal_term(learner, fast, anchor)
    return support_loss if term is None else support_loss + term


def support_gradients(
    learner: Learner, fast: Params, output_of: Callable[[Params], torch.Tensor], support_y: torch.Tensor, *,
    create_graph: bool, retain_graph: bool, anchor: Params | None = None,
) -> tuple[Params, torch.Tensor, torch.Tensor]:
    """``(gradients of the inner objective w.r.t. the adapted tensors, support loss, output)`` at ``fast``.

    The inner objective is the support loss plus ``proximal_lambda/2 ||fast - anchor||^2`` over the adapted
    tensors (:func:`inner_objective`); ``anchor`` is the adaptation's starting point and is required when the
    learner's ``proximal_lambda`` is not 0. The loss returned is the support loss alone (what is reported).
    """
    inner = learner.inner_names
    if learner.proximal_lambda and anchor is None:
        raise ValueError("a proximal inner problem (proximal_lambda > 0) needs the starting weights as its anchor")
    with torch.enable_grad():
        output = output_of(fast)
        loss = task_loss(learner, output, support_y)
        objective = inner_objective(learner, loss, fast, anchor)
        grads = torch.autograd.grad(
            objective, [fast[n] for n in inner], create_graph=create_graph, retain_graph=retain_graph
        )
    return dict(zip(inner, grads)), loss, output


def apply_rule(
    learner: Learner, fast: Params, grads: Params, step_index: int, state: dict[str, Any]
) -> tuple[Params, StepTrace]:
    """The rule's update of the adapted tensors; every other tensor of ``fast`` is passed through unchanged."""
    updated, trace = learner.rule.step({n: fast[n] for n in learner.inner_names}, grads, step_index, state)
    return {**fast, **updated}, trace


@dataclass
class InnerResult:
    params: Params
    traces: list[StepTrace] = field(default_factory=list)
    support_losses: list[torch.Tensor] = field(default_factory=list)  # loss before each step, then after the last
    support_accuracies: list[torch.Tensor] = field(default_factory=list)  # classification only
    step_params: list[Params] = field(default_factory=list)  # fast weights after each step (multi-step loss)


def adapts_head_only(learner: Learner) -> bool:
    """Whether the rule adapts nothing but the head, so the support embedding is the same at every step (ANIL)."""
    names = head_names(learner.backbone)
    return set(learner.inner_names) <= {names.weight, names.bias}


def _starting_weights(params: Params, inner: list[str], differentiable: bool) -> Params:
    if not differentiable:
        return {n: p.detach().requires_grad_(n in inner) for n, p in params.items()}
    # Each adapted tensor enters as its own node (a clone, or a grad-tracking copy of a frozen one), so the
    # inner gradient is the partial derivative per tensor. Without it a prototype head, itself a function of
    # the backbone weights, would add its path to the backbone's inner gradient at the first step.
    return {
        n: (p if n not in inner else p.clone() if p.requires_grad else p.detach().requires_grad_())
        for n, p in params.items()
    }


def _support_output(
    learner: Learner, fast: Params, support_x: torch.Tensor, differentiable: bool
) -> Callable[[Params], torch.Tensor]:
    """The support output as a function of the fast weights: the whole network, or, when only the head adapts,
    the head on an embedding computed once from the (unchanging) feature weights."""
    if not adapts_head_only(learner):
        return lambda weights: forward(learner, weights, support_x)
    with torch.set_grad_enabled(differentiable):
        embedding = forward(learner, fast, support_x, features_only=True)
    return lambda weights: head_forward(learner, weights, embedding)


def inner_loop(
    learner: Learner,
    params: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    steps: int,
    *,
    create_graph: bool,
    differentiable: bool = True,
    keep_step_params: bool = False,
    record_final: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> InnerResult:
    """Run ``steps`` updates of ``learner.rule`` on the support set (on the proximal inner problem, support loss
    plus ``proximal_lambda/2 ||y - params||^2``, when the learner's ``proximal_lambda`` is not 0).

    ``differentiable=True`` keeps the chain from the initial weights and rule parameters to the adapted
    weights, for a meta-gradient: ``create_graph=True`` also differentiates through the inner gradients
    (second order, MAML eq. 1 with the full Hessian term), ``create_graph=False`` treats them as constants
    (first order). ``differentiable=False`` is the evaluation path: no graph outlives a step.
    ``on_step(k)`` is called after the k-th update (1-based), for progress reports.

    When the rule adapts only the head, the support embedding is computed once from the initial weights and
    every step runs the head alone: the same numbers as the whole network at every step, at a fraction of the cost.
    """
    objective = objective_of(learner)
    inner = learner.inner_names
    fast = _starting_weights(params, inner, differentiable)
    # The proximal term's centre x: the weights passed in (for a meta-gradient, still on the graph of the
    # meta-parameters, so second order differentiates -lambda (y - x) with respect to x too).
    anchor = {n: (params[n] if differentiable else params[n].detach()) for n in inner}
    output_of = _support_output(learner, fast, support_x, differentiable)
    result = InnerResult(params=fast)
    state = learner.rule.init_state({n: fast[n] for n in inner})
    for step_index in range(steps):
        grads, loss, output = support_gradients(
            learner, fast, output_of, support_y, create_graph=create_graph and differentiable,
            retain_graph=differentiable, anchor=anchor,
        )
        result.support_losses.append(loss.detach())
        metric = objective.metric(output.detach(), support_y)
        if metric is not None:
            result.support_accuracies.append(metric)
        if differentiable:
            fast, trace = apply_rule(learner, fast, grads, step_index, state)
        else:
            with torch.no_grad():
                updated, trace = apply_rule(learner, fast, grads, step_index, state)
            fast = {
                n: (p.detach().requires_grad_() if n in inner else p.detach()) for n, p in updated.items()
            }
        result.traces.append(trace)
        if keep_step_params:
            result.step_params.append(fast)
        if on_step is not None:
            on_step(step_index + 1)
    if record_final:
        with torch.no_grad():
            output = output_of(fast)
            result.support_losses.append(task_loss(learner, output, support_y))
            metric = objective.metric(output, support_y)
            if metric is not None:
                result.support_accuracies.append(metric)
    result.params = fast
    return result
