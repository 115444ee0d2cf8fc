"""The inner loop shared by meta-training, evaluation and the dashboard.

Functional: the backbone is run with ``torch.func.functional_call`` on a dict of fast weights, so the
module that holds the meta-parameters is never mutated by an adaptation (a cached model can serve many
sessions at once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.func import functional_call

from core.learner import MODULE_LOCK, Learner
from core.rules import StepTrace

Params = dict[str, torch.Tensor]


def forward(learner: Learner, params: Params, x: torch.Tensor, features_only: bool = False) -> torch.Tensor:
    # Serialised (see MODULE_LOCK); the recorded graph holds the right tensors, so backward passes run in parallel.
    with MODULE_LOCK:
        return functional_call(learner.backbone, params, (x,), {"features_only": features_only})


def task_loss(learner: Learner, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if learner.task_kind == "regression":
        return F.mse_loss(output, target)
    return F.cross_entropy(output, target)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=-1) == labels).float().mean()


def prepare_head(
    learner: Learner, params: Params, support_x: torch.Tensor, support_y: torch.Tensor, n_classes: int, head_init: str
) -> Params:
    """Set the classifier head up for an episode of ``n_classes`` classes.

    - ``learned``: the meta-learned head (only possible when the class count is the trained one);
    - ``zero``: a zero head, so every class starts equal and the inner loop writes it (the "zero trick");
    - ``prototype``: Proto-MAML (Triantafillou et al. 2020): ``W_k = 2 c_k``, ``b_k = -||c_k||^2`` from the
      support class means ``c_k`` of the initial embedding, which makes the initial logits negative squared
      Euclidean distances to the prototypes (up to a per-query constant). Gradients flow through ``c_k``.
    """
    if learner.task_kind == "regression":
        return params
    weight, bias = params["head.weight"], params["head.bias"]
    if head_init == "learned":
        if weight.shape[0] != n_classes:
            raise ValueError(
                f"the meta-learned head has {weight.shape[0]} classes but the episode has {n_classes}; "
                "use head_init 'zero' or 'prototype' for other class counts"
            )
        return params
    params = dict(params)
    if head_init == "zero":
        params["head.weight"] = weight.new_zeros((n_classes, weight.shape[1]))
        params["head.bias"] = bias.new_zeros((n_classes,))
        return params
    if head_init == "prototype":
        features = forward(learner, params, support_x, features_only=True)
        one_hot = F.one_hot(support_y, n_classes).to(features.dtype)
        counts = one_hot.sum(dim=0).clamp_min(1.0)
        prototypes = (one_hot.t() @ features) / counts[:, None]
        params["head.weight"] = 2.0 * prototypes
        params["head.bias"] = -(prototypes**2).sum(dim=1)
        return params
    raise ValueError(f"unknown head_init {head_init!r}")


@dataclass
class InnerResult:
    params: Params
    traces: list[StepTrace] = field(default_factory=list)
    support_losses: list[torch.Tensor] = field(default_factory=list)  # loss before each step, then after the last
    support_accuracies: list[torch.Tensor] = field(default_factory=list)
    step_params: list[Params] = field(default_factory=list)  # fast weights after each step (multi-step loss)


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
    """Run ``steps`` updates of ``learner.rule`` on the support set.

    ``differentiable=True`` keeps the chain from the initial weights and rule parameters to the adapted
    weights, for a meta-gradient: ``create_graph=True`` also differentiates through the inner gradients
    (second order, MAML eq. 1 with the full Hessian term), ``create_graph=False`` treats them as constants
    (first order). ``differentiable=False`` is the evaluation path: no graph outlives a step.
    ``on_step(k)`` is called after the k-th update (1-based), for progress reports.
    """
    inner = learner.inner_names
    if differentiable:
        # Each adapted tensor enters as its own node (a clone, or a grad-tracking copy of a frozen one), so the
        # inner gradient is the partial derivative per tensor. Without it a prototype head, itself a function of
        # the backbone weights, would add its path to the backbone's inner gradient at the first step.
        fast = {
            n: (p if n not in inner else p.clone() if p.requires_grad else p.detach().requires_grad_())
            for n, p in params.items()
        }
    else:
        fast = {n: p.detach().requires_grad_(n in inner) for n, p in params.items()}
    result = InnerResult(params=fast)
    state = learner.rule.init_state({n: fast[n] for n in inner})
    for step_index in range(steps):
        with torch.enable_grad():
            output = forward(learner, fast, support_x)
            loss = task_loss(learner, output, support_y)
            grads = torch.autograd.grad(
                loss, [fast[n] for n in inner], create_graph=create_graph and differentiable,
                retain_graph=differentiable,
            )
        result.support_losses.append(loss.detach())
        if learner.task_kind == "classification":
            result.support_accuracies.append(accuracy(output.detach(), support_y))
        grad_dict = dict(zip(inner, grads))
        if differentiable:
            updated, trace = learner.rule.step({n: fast[n] for n in inner}, grad_dict, step_index, state)
            fast = {**fast, **updated}
        else:
            with torch.no_grad():
                updated, trace = learner.rule.step({n: fast[n] for n in inner}, grad_dict, step_index, state)
            fast = {**{n: p.detach() for n, p in fast.items()}, **{n: p.detach().requires_grad_() for n, p in updated.items()}}
        result.traces.append(trace)
        if keep_step_params:
            result.step_params.append(fast)
        if on_step is not None:
            on_step(step_index + 1)
    if record_final:
        with torch.no_grad():
            output = forward(learner, fast, support_x)
            result.support_losses.append(task_loss(learner, output, support_y))
            if learner.task_kind == "classification":
                result.support_accuracies.append(accuracy(output, support_y))
    result.params = fast
    return result
