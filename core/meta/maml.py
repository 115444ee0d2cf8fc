"""Meta-gradients by differentiating through the inner loop: second-order MAML and its first-order approximation.

Interface (shared by every estimator in ``core.meta``): ``meta_grad(tasks) -> (grads, diagnostics)`` where
``grads`` maps each trainable meta-parameter name of the learner to its gradient of the mean query loss.

- Second order (Finn et al. 2017, eq. 1 differentiated exactly): gradients of the support loss are computed
  with ``create_graph=True`` so the outer gradient includes the Hessian-vector terms.
- First order (FOMAML): the inner gradients are constants; the meta-gradient of the initial weights is then
  the query-loss gradient at the adapted weights (for SGD), and rule parameters still get the gradient of
  their direct effect on the update.
- Optional multi-step loss (MAML++): the query loss after every inner step, weighted, instead of the last only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.learner import Learner
from core.meta.inner import accuracy, forward, inner_loop, prepare_head, task_loss


@dataclass
class Task:
    """Tensors of one training task, already on the learner's device. ``n_classes`` is None for regression."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    n_classes: int | None = None


def multi_step_weights(steps: int, progress: float) -> torch.Tensor:
    """MAML++ multi-step-loss weights: uniform at ``progress=0`` annealing to (almost) only the last step at 1.

    Non-final steps keep at least ``0.03 / steps`` as in the MAML++/ALFA code.
    """
    progress = min(max(progress, 0.0), 1.0)
    floor = 0.03 / steps
    weights = torch.full((steps,), 1.0 / steps)
    weights[:-1] = torch.clamp(weights[:-1] - progress / steps, min=floor)
    weights[-1] = 1.0 - weights[:-1].sum()
    return weights


class MAMLGradient:
    """Second- or first-order meta-gradient through ``inner_steps`` steps of the learner's rule."""

    def __init__(
        self,
        learner: Learner,
        inner_steps: int,
        second_order: bool = True,
        head_init: str | None = None,
    ) -> None:
        self.learner = learner
        self.inner_steps = int(inner_steps)
        self.second_order = bool(second_order)
        self.head_init = head_init or learner.head_init

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.learner.named_parameters() if p.requires_grad}

    def task_query_loss(
        self, task: Task, step_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        learner = self.learner
        params = prepare_head(
            learner, learner.initial_params(), task.support_x, task.support_y, task.n_classes or 0, self.head_init
        )
        result = inner_loop(
            learner, params, task.support_x, task.support_y, self.inner_steps,
            create_graph=self.second_order, differentiable=True, keep_step_params=step_weights is not None,
        )
        if step_weights is None:
            output = forward(learner, result.params, task.query_x)
            loss = task_loss(learner, output, task.query_y)
        else:
            loss = 0.0
            for weight, step_params in zip(step_weights, result.step_params):
                output = forward(learner, step_params, task.query_x)
                loss = loss + weight * task_loss(learner, output, task.query_y)
        acc = accuracy(output.detach(), task.query_y) if learner.task_kind == "classification" else None
        return loss, acc

    def meta_grad(
        self, tasks: list[Task], step_weights: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        trainable = self.trainable()
        names, tensors = list(trainable), list(trainable.values())
        grads = [torch.zeros_like(t) for t in tensors]
        losses, accuracies = [], []
        for task in tasks:
            loss, acc = self.task_query_loss(task, step_weights)
            # One backward per task: only one task's inner-loop graph is alive at a time.
            task_grads = torch.autograd.grad(loss / len(tasks), tensors, allow_unused=True)
            for total, g in zip(grads, task_grads):
                if g is not None:
                    total.add_(g)
            losses.append(float(loss.detach()))
            if acc is not None:
                accuracies.append(float(acc))
        diagnostics = {"loss": sum(losses) / len(losses)}
        if accuracies:
            diagnostics["accuracy"] = sum(accuracies) / len(accuracies)
        return dict(zip(names, grads)), diagnostics
