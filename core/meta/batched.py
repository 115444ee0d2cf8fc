"""The same meta-gradient as ``MAMLGradient``, with the tasks of a meta-batch run together under ``torch.func.vmap``.

Wins where a task's inner loop is many small kernels (sine regression's 2x40 MLP, small images on a GPU),
where a Python loop over tasks is dominated by per-call overhead. On a CPU with large convolutions a plain
loop is often as fast and keeps only one task's graph in memory; ``bench/`` measures both.
All tasks of a batch must share shapes (same way / shot / query counts).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from core.meta.inner import prepare_head, task_loss
from core.meta.maml import MAMLGradient, Task


class BatchedMAMLGradient(MAMLGradient):
    def _batched_losses(self, tasks: list[Task], step_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        learner, inner, steps = self.learner, self.learner.inner_names, self.inner_steps
        n_classes = tasks[0].n_classes or 0
        support_x = torch.stack([t.support_x for t in tasks])
        support_y = torch.stack([t.support_y for t in tasks])
        query_x = torch.stack([t.query_x for t in tasks])
        query_y = torch.stack([t.query_y for t in tasks])
        initial = learner.initial_params()
        second_order = self.second_order

        def run(params, x):
            return functional_call(learner.backbone, params, (x,))

        def one_task(sx, sy, qx, qy):
            fast = prepare_head(learner, initial, sx, sy, n_classes, self.head_init)

            def support_loss(inner_params, frozen):
                return task_loss(learner, run({**frozen, **inner_params}, sx), sy)

            total, query_out = 0.0, None
            for step_index in range(steps):
                inner_params = {n: fast[n] for n in inner}
                frozen = {n: p for n, p in fast.items() if n not in inner}
                grads = grad(support_loss)(inner_params, frozen)
                if not second_order:
                    grads = {n: g.detach() for n, g in grads.items()}
                updated, _ = learner.rule.step(inner_params, grads, step_index, {})
                fast = {**fast, **updated}
                if step_weights is not None:
                    query_out = run(fast, qx)
                    total = total + step_weights[step_index] * task_loss(learner, query_out, qy)
            if step_weights is None:
                query_out = run(fast, qx)
                total = task_loss(learner, query_out, qy)
            if learner.task_kind == "classification":
                return total, (query_out.argmax(-1) == qy).float().mean()
            return total, torch.zeros(())

        losses, accuracies = vmap(one_task, randomness="same")(support_x, support_y, query_x, query_y)
        return losses, (accuracies if learner.task_kind == "classification" else None)

    def meta_grad(self, tasks: list[Task], step_weights: torch.Tensor | None = None):
        trainable = self.trainable()
        names, tensors = list(trainable), list(trainable.values())
        losses, accuracies = self._batched_losses(tasks, step_weights)
        grads = torch.autograd.grad(losses.mean(), tensors, allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]
        diagnostics = {"loss": float(losses.detach().mean())}
        if accuracies is not None:
            diagnostics["accuracy"] = float(accuracies.mean())
        return dict(zip(names, grads)), diagnostics
