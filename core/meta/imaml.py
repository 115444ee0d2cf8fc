"""Implicit MAML (Rajeswaran, Finn, Kakade and Levine 2019, "Meta-learning with implicit gradients"):
``meta.estimator = "imaml"``.

Needs the proximal inner problem (``meta.proximal_lambda = lambda > 0``; refused otherwise). Each task runs ``T``
first-order steps of the rule on ``f_in(y) + lambda/2 ||y - x||^2`` from ``x`` to get ``y_T`` (no graph), then
``cg_steps`` conjugate-gradient steps on

    (I + H / lambda) v = grad_y f_out(y_T),     H = the Hessian of the support loss at y_T,

with Hessian-vector products by double backward (never the Hessian itself). With ``y_T`` the solution ``y*``, ``v`` is
the implicit meta-gradient ``lambda (H + lambda I)^-1 grad f_out(y*)`` (``shared/reference.md``), reached exactly
after as many CG steps as adapted weights (in exact arithmetic).

What the meta-parameters get:
- the adapted tensors' starting weights ``x``: ``v``; a head prepared from the backbone (``prototype``) passes it on
  to the backbone by the chain rule;
- meta-parameters the rule does not adapt (``phi``: batch-norm affine parameters, ANIL's features): their implicit
  gradient ``d_phi f_out(y_T) - (1/lambda) d_phi <grad_y f_in(y_T; phi), v>``, one more double-backward product
  (the stationarity condition ``grad_y f_in + lambda (y - x) = 0`` differentiated with respect to ``phi``);
- a rule's meta-learned parameters: none. ``y*`` does not depend on how the inner loop reaches it, so an inner rate
  has no implicit gradient; rules with ``Capabilities.meta_learned`` are refused at config time.

The multi-step loss is refused: the implicit gradient is of the query loss at the solution only. Reported: the query
loss and metric at ``y_T``, and ``cg_residual``, the mean final CG residual norm over the meta-batch.
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
    conjugate_gradient,
    first_order_adapt,
    query_loss_and_metric,
    refuse_multi_step,
    starting_weights,
    surrogate_gradient,
)


@dataclass(frozen=True)
class IMAMLOptions:
    """``cg_steps``: conjugate-gradient steps on ``(I + H/lambda) v = grad f_out`` (one Hessian-vector product each)."""

    cg_steps: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.cg_steps, bool) or not isinstance(self.cg_steps, int) or self.cg_steps < 1:
            raise ValueError(f"cg_steps must be a whole number >= 1, not {self.cg_steps!r}")


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _split(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    pieces, offset = [], 0
    for t in like:
        pieces.append(vector[offset: offset + t.numel()].view_as(t))
        offset += t.numel()
    return pieces


def implicit_task_gradient(
    learner: Learner, task: Task, tensors: list[torch.Tensor], scale: float, inner_steps: int, head_init: str,
    cg_steps: int,
) -> tuple[list[torch.Tensor | None], float, float | None, float]:
    """One task's share: ``(gradients, query loss, metric, final CG residual norm)``."""
    lam = learner.proximal_lambda
    inner = learner.inner_names
    start = starting_weights(learner, task, head_init)
    adapted, _ = first_order_adapt(learner, start, task, inner_steps)
    with torch.enable_grad():
        outputs = Outputs(learner, task)
        at = at_fixed(learner, start, adapted)
        leaves = [at[n] for n in inner]
        support_grads = torch.autograd.grad(outputs.loss(at, "support"), leaves, create_graph=True)
        query, metric = query_loss_and_metric(learner, outputs, at)
        rhs = _flat(torch.autograd.grad(query, leaves, retain_graph=True)).detach()

        def matvec(p: torch.Tensor) -> torch.Tensor:
            hvp = torch.autograd.grad(support_grads, leaves, grad_outputs=_split(p, leaves), retain_graph=True)
            return p + _flat(hvp).detach() / lam

        v, residual = conjugate_gradient(matvec, rhs, cg_steps)
        pieces = _split(v, leaves)
        direction = dict(zip(inner, pieces))
        phi_term = query - sum((g * p).sum() for g, p in zip(support_grads, pieces)) / lam
        grads = surrogate_gradient(learner, start, tensors, direction, phi_term, scale)
    return grads, float(query.detach()), metric, residual


@register_estimator(
    "imaml", "iMAML (implicit, conjugate gradient)", IMAMLOptions,
    needs_proximal=True, rule_meta_gradients=False, multi_step_loss=False,
)
@dataclass
class IMAML:
    learner: Learner
    inner_steps: int
    head_init: str
    options: IMAMLOptions
    execution: str = "loop"

    def meta_grad(self, tasks: Sequence[Task], objective: QueryObjective = LAST_STEP) -> MetaGradient:
        refuse_multi_step("imaml", objective)
        residuals = []

        def task_gradient(task: Task, tensors: list[torch.Tensor], scale: float):
            grads, loss, metric, residual = implicit_task_gradient(
                self.learner, task, tensors, scale, self.inner_steps, self.head_init, self.options.cg_steps
            )
            residuals.append(residual)
            return grads, loss, metric

        estimate = accumulate_task_gradients(self.learner, tasks, task_gradient)
        estimate.diagnostics["cg_residual"] = sum(residuals) / len(residuals)
        return estimate
