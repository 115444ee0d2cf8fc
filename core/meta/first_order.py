"""What the first-order estimators of the bilevel view share (``reptile``, ``imaml``, ``fo_b_maml``, ``fo_b_maml_sym``).

Notation of ``shared/reference.md``, "The bilevel view": ``x`` are the adapted tensors' starting weights (the
initialisation, after the head set-up), ``y`` the fast weights, ``phi`` every other meta-parameter (batch-norm
affine parameters, ANIL's feature extractor), ``g = f_in(y; phi) + delta f_out(y; phi) + lambda/2 ||y - x||^2``.

- :func:`first_order_adapt`: ``T`` steps of the learner's rule on ``g`` from ``x``, with no graph kept (the
  inner gradients are constants; memory does not grow with ``T``).
- :func:`surrogate_gradient`: the meta-gradient as the gradient of a scalar with ``y`` held fixed: a direction
  ``d`` for ``x`` enters as ``<x(theta), d>`` (so a head prepared from the backbone, a prototype head, passes it on
  to the backbone by the chain rule), and what ``phi`` gets enters as a function of ``phi`` evaluated at fixed ``y``.
- :func:`conjugate_gradient`: ``k`` CG steps on a symmetric positive definite system given by its product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import QueryObjective, estimator_spec
from core.meta.inner import (
    Params,
    adapts_head_only,
    apply_rule,
    forward,
    head_forward,
    inner_objective,
    prepare_head,
    task_loss,
    task_metric,
)
from core.rules import StepTrace


def refuse_multi_step(name: str, objective: QueryObjective) -> None:
    if objective.every_step and not estimator_spec(name).multi_step_loss:
        raise ValueError(
            f"estimator {name!r} does not support the multi-step loss (its meta-gradient is of the query loss at "
            "the adapted weights only)"
        )


@dataclass
class Outputs:
    """The network's support and query outputs as functions of the fast weights.

    When only the head adapts (ANIL) the embeddings are computed once, with ``phi`` live, and the head alone runs
    on them: the same numbers as the whole network, as in ``core.meta.inner``.
    """

    learner: Learner
    task: Task
    _embeddings: dict[str, torch.Tensor] = field(default_factory=dict)

    def __call__(self, weights: Params, which: str) -> torch.Tensor:
        x = self.task.support_x if which == "support" else self.task.query_x
        if not adapts_head_only(self.learner):
            return forward(self.learner, weights, x)
        if which not in self._embeddings:
            self._embeddings[which] = forward(self.learner, weights, x, features_only=True)
        return head_forward(self.learner, weights, self._embeddings[which])

    def loss(self, weights: Params, which: str) -> torch.Tensor:
        target = self.task.support_y if which == "support" else self.task.query_y
        return task_loss(self.learner, self(weights, which), target)


def starting_weights(learner: Learner, task: Task, head_init: str) -> Params:
    """``x`` and ``phi``: the learner's weights with the head prepared (on the graph of the meta-parameters)."""
    return prepare_head(learner, learner.initial_params(), task.support_x, task.support_y, task.n_classes, head_init)


def first_order_adapt(
    learner: Learner, start: Params, task: Task, steps: int, delta: float = 0.0
) -> tuple[Params, list[StepTrace]]:
    """``y_T``: ``steps`` updates of the learner's rule on ``g = f_in + delta f_out + lambda/2 ||y - x||^2``.

    Every tensor returned is detached; ``delta = 0`` is the inner problem itself (``core.meta.inner.inner_loop``'s
    objective). The embeddings of a head-only rule are computed without a graph here.
    """
    inner = learner.inner_names
    anchor = {n: start[n].detach() for n in inner}
    fast = {n: p.detach().requires_grad_(n in inner) for n, p in start.items()}
    outputs = Outputs(learner, task)
    state = learner.rule.init_state({n: fast[n] for n in inner})
    traces = []
    for step_index in range(steps):
        with torch.enable_grad():
            objective = inner_objective(learner, outputs.loss(fast, "support"), fast, anchor)
            if delta:
                objective = objective + delta * outputs.loss(fast, "query")
            grads = torch.autograd.grad(objective, [fast[n] for n in inner])
        with torch.no_grad():
            updated, trace = apply_rule(learner, fast, dict(zip(inner, grads)), step_index, state)
        fast = {n: (p.detach().requires_grad_() if n in inner else p.detach()) for n, p in updated.items()}
        traces.append(trace)
    return {n: p.detach() for n, p in fast.items()}, traces


def at_fixed(learner: Learner, start: Params, adapted: Params) -> Params:
    """The adapted tensors of ``adapted`` (detached, fixed) with every other tensor of ``start`` (``phi``, live)."""
    return {n: (adapted[n].detach().requires_grad_() if n in learner.inner_names else p) for n, p in start.items()}


def surrogate_gradient(
    learner: Learner, start: Params, tensors: Sequence[torch.Tensor], direction: Params,
    phi_term: torch.Tensor | float, scale: float,
) -> list[torch.Tensor | None]:
    """``scale`` times the gradient, with respect to ``tensors``, of ``sum_n <x_n, direction_n> + phi_term``."""
    terms = [(start[n] * direction[n]).sum() for n in learner.inner_names if start[n].requires_grad]
    if torch.is_tensor(phi_term) and phi_term.requires_grad:
        terms.append(phi_term)
    if not terms:
        return [None] * len(tensors)
    return list(torch.autograd.grad(torch.stack(terms).sum() * scale, list(tensors), allow_unused=True))


def query_loss_and_metric(learner: Learner, outputs: Outputs, weights: Params) -> tuple[torch.Tensor, float | None]:
    output = outputs(weights, "query")
    loss = task_loss(learner, output, outputs.task.query_y)
    metric = task_metric(learner, output.detach(), outputs.task.query_y)
    return loss, None if metric is None else float(metric)


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, steps: int
) -> tuple[torch.Tensor, float]:
    """``steps`` conjugate-gradient iterations on ``A v = rhs`` from ``v = 0`` (A symmetric positive definite);
    returns ``v`` and the final residual norm. Stops early at an exactly zero residual."""
    v = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = residual.clone()
    rr = residual @ residual
    for _ in range(steps):
        if float(rr) == 0.0:
            break
        product = matvec(direction)
        step = rr / (direction @ product)
        v = v + step * direction
        residual = residual - step * product
        rr_next = residual @ residual
        direction = residual + (rr_next / rr) * direction
        rr = rr_next
    return v, float(rr.sqrt())
