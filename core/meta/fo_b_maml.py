"""FO-B-MAML (Chayti and Jaggi, "A new first-order meta-learning algorithm with convergence guarantees"), forward
difference: ``meta.estimator = "fo_b_maml"``; the symmetric one is ``core.meta.fo_b_maml_sym``.

Both need the proximal inner problem (``meta.proximal_lambda = lambda > 0``; refused otherwise). Perturb it with the
query loss,

    y_delta = argmin_y  f_in(y; phi) + delta f_out(y; phi) + lambda/2 ||y - x||^2,

each ``y`` approximated by ``T`` first-order steps of the rule from ``x`` (no graph: memory does not grow with ``T``).
By the envelope theorem the partial gradient of the perturbed problem's value with respect to the meta-parameters
is ``G(delta) = d/d(x, phi) g_delta(y_delta)`` at fixed ``y_delta``, and ``dG/d delta`` at 0 is the exact
meta-gradient ``grad F``. The estimator is the difference quotient ``(G(a) - G(b)) / (a - b)``:

- forward (``a = delta, b = 0``): for ``x``, ``lambda (y_0 - y_delta) / delta`` (``shared/reference.md``); bias O(delta);
- symmetric (``a = delta, b = -delta``): ``lambda (y_-delta - y_+delta) / (2 delta)``; bias O(delta^2) (plus the
  inner problem's unsolved part in both).

What the meta-parameters get:
- the adapted tensors' starting weights ``x``: the formulas above; a head prepared from the backbone (``prototype``)
  passes its part on to the backbone by the chain rule;
- meta-parameters the rule does not adapt (``phi``: batch-norm affine parameters, ANIL's features): the same
  difference quotient of ``d/d phi [f_in(y; phi) + a f_out(y; phi)]`` at the fixed ``y_a`` and ``y_b``, first-order
  work only; in the limit it is the implicit gradient ``d_phi f_out - d_phi <grad_y f_in, (H + lambda I)^-1 grad f_out>``;
- a rule's meta-learned parameters: none. The solution of the inner problem does not depend on how it is reached,
  so its rates have no gradient in this view; rules with ``Capabilities.meta_learned`` are refused at config time.

The multi-step loss is refused: the perturbation defines the gradient of the query loss at the solution only.
Reported loss and metric: forward, the query loss and metric at ``y_0``; symmetric, the mean of the query losses at
``y_+delta`` and ``y_-delta`` (``f_out(y_0) + O(delta^2)``) and the metric at ``y_+delta``.
"""

from __future__ import annotations

import math
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
class PerturbationOptions:
    """``delta``: the weight of the query loss in the perturbed inner problem (the finite-difference step)."""

    delta: float = 0.01

    def __post_init__(self) -> None:
        delta = self.delta
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta <= 0:
            raise ValueError(f"delta must be a finite number > 0, not {delta!r}")


def perturbed_meta_grad(
    name: str, learner: Learner, tasks: Sequence[Task], objective: QueryObjective, inner_steps: int, head_init: str,
    a: float, b: float,
) -> MetaGradient:
    """``(G(a) - G(b)) / (a - b)`` per task, averaged over the meta-batch (see the module docstring)."""
    refuse_multi_step(name, objective)
    lam = learner.proximal_lambda

    def task_gradient(task: Task, tensors: list[torch.Tensor], scale: float):
        start = starting_weights(learner, task, head_init)
        y_a, _ = first_order_adapt(learner, start, task, inner_steps, a)
        y_b, _ = first_order_adapt(learner, start, task, inner_steps, b)
        # x's part directly (no cancellation of lambda (x - y) terms): lambda (y_b - y_a) / (a - b).
        direction = {n: lam * (y_b[n] - y_a[n]) / (a - b) for n in learner.inner_names}
        with torch.enable_grad():
            outputs = Outputs(learner, task)
            at_a, at_b = at_fixed(learner, start, y_a), at_fixed(learner, start, y_b)
            query_a, metric_a = query_loss_and_metric(learner, outputs, at_a)
            query_b, metric_b = query_loss_and_metric(learner, outputs, at_b)
            phi_term = (
                outputs.loss(at_a, "support") + a * query_a - outputs.loss(at_b, "support") - b * query_b
            ) / (a - b)
            grads = surrogate_gradient(learner, start, tensors, direction, phi_term, scale)
        if b == 0:
            return grads, float(query_b.detach()), metric_b
        return grads, 0.5 * float(query_a.detach() + query_b.detach()), metric_a

    return accumulate_task_gradients(learner, tasks, task_gradient)


@register_estimator(
    "fo_b_maml", "FO-B-MAML (forward)", PerturbationOptions,
    needs_proximal=True, rule_meta_gradients=False, multi_step_loss=False,
)
@dataclass
class FOBMAML:
    learner: Learner
    inner_steps: int
    head_init: str
    options: PerturbationOptions
    execution: str = "loop"

    def meta_grad(self, tasks: Sequence[Task], objective: QueryObjective = LAST_STEP) -> MetaGradient:
        delta = float(self.options.delta)
        return perturbed_meta_grad(
            "fo_b_maml", self.learner, tasks, objective, self.inner_steps, self.head_init, delta, 0.0
        )
