"""A tiny float64 bilevel problem whose proximal inner problem is solved to machine precision, and its exact
implicit meta-gradient by a dense solve: the reference for the first-order estimators' tests.

Sine regression with a 1-8-8-1 ReLU MLP (97 weights) and ``lambda = 4``: at the inner solutions the Hessian of
``f_in + lambda/2 ||y - x||^2`` has eigenvalues in about [2.8, 11.3], so SGD at rate 0.08 contracts by at most
``rho = 1 - 0.08 * 2.8 ~ 0.78`` per step (measured below, not assumed), and 300 steps reach the solution to rounding
(``rho^300 ~ 1e-32``). A ReLU network is smooth away from its kinks; the solutions here are not on one (the
gradient there vanishes to 1e-15, which a kink would prevent).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.data.task import Task
from core.learner import Learner
from core.meta.first_order import Outputs, at_fixed, first_order_adapt, starting_weights
from core.meta.inner import inner_objective
from tests.tolerances import gamma

LAMBDA = 4.0
LR = 0.08
CONVERGED_STEPS = 300
MLP = {"name": "mlp", "in_features": 1, "hidden": [8, 8], "n_classes": 1}


def learner(rule: str = "sgd", lam: float = LAMBDA) -> Learner:
    return Learner(MLP, {"name": rule, "lr": LR}, task_kind="regression", seed=1, proximal_lambda=lam).double()


def task(seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    amplitude = 1 + 2 * torch.rand((), generator=g, dtype=torch.float64)
    phase = torch.rand((), generator=g, dtype=torch.float64)
    support_x = torch.rand(10, 1, generator=g, dtype=torch.float64) * 10 - 5
    query_x = torch.rand(10, 1, generator=g, dtype=torch.float64) * 10 - 5

    def curve(x: torch.Tensor) -> torch.Tensor:
        return amplitude * torch.sin(x - phase)

    return Task(support_x, curve(support_x), query_x, curve(query_x))


def tasks() -> list[Task]:
    # Seeds whose inner problem GD solves to rounding (seeds 0 and 5 settle on a ReLU kink instead: residual 1e-2)
    return [task(1), task(3)]


def _dense_jacobian(vector: torch.Tensor, wrt: list[torch.Tensor]) -> torch.Tensor:
    rows = []
    for i in range(vector.numel()):
        found = torch.autograd.grad(vector[i], wrt, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(w) if f is None else f).reshape(-1) for f, w in zip(found, wrt)]))
    return torch.stack(rows)


@dataclass
class Exact:
    """One task's exact implicit meta-gradient and what bounds the estimators' errors."""

    grads: dict[str, torch.Tensor]  # trainable parameter name -> exact gradient (this task alone)
    solution: dict[str, torch.Tensor]  # y*
    hessian: torch.Tensor  # of f_in at y* (adapted tensors, flattened)
    residual: float  # |grad g(y*)|: how far y* is from the solution
    smallest: float  # eigenvalues of H + lambda I
    largest: float

    @property
    def condition(self) -> float:
        return self.largest / self.smallest


def exact_implicit(model: Learner, one_task: Task) -> Exact:
    """``lambda (H + lambda I)^-1 grad f_out`` for the starting weights, by a dense solve at the converged ``y*``;
    for every other meta-parameter ``phi`` the implicit-function derivative ``d_phi f_out - M^T (H + lambda I)^-1
    grad_y f_out``, ``M = d^2 f_in / dy dphi``, also dense."""
    lam = model.proximal_lambda
    inner = model.inner_names
    start = starting_weights(model, one_task, model.head_init)
    solution, _ = first_order_adapt(model, start, one_task, CONVERGED_STEPS)
    trainable = {n.removeprefix("backbone."): p for n, p in model.named_parameters() if p.requires_grad}
    phi_names = [n for n in trainable if n not in inner]
    with torch.enable_grad():
        outputs = Outputs(model, one_task)
        at = at_fixed(model, start, solution)
        leaves = [at[n] for n in inner]
        support = outputs.loss(at, "support")
        support_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(support, leaves, create_graph=True)])
        hessian = _dense_jacobian(support_grad, leaves)
        objective = inner_objective(model, support, at, {n: start[n].detach() for n in inner})
        residual = torch.cat([g.reshape(-1) for g in torch.autograd.grad(objective, leaves, retain_graph=True)])
        query = outputs.loss(at, "query")
        phis = [at[n] for n in phi_names]
        found = torch.autograd.grad(query, leaves + phis, allow_unused=True)
        rhs = torch.cat([g.reshape(-1) for g in found[: len(leaves)]])
        system = hessian + lam * torch.eye(len(rhs), dtype=rhs.dtype)
        solved = torch.linalg.solve(system, rhs)
        grads = {}
        offset = 0
        for n, leaf in zip(inner, leaves):
            grads[n] = (lam * solved[offset: offset + leaf.numel()]).view_as(leaf)
            offset += leaf.numel()
        if phis:
            mixed = _dense_jacobian(support_grad, phis)  # rows: y, columns: phi
            direct = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                                for g, p in zip(found[len(leaves):], phis)])
            phi_grad = direct - mixed.T @ solved
            offset = 0
            for n, p in zip(phi_names, phis):
                grads[n] = phi_grad[offset: offset + p.numel()].view_as(p)
                offset += p.numel()
    eigenvalues = torch.linalg.eigvalsh(system)
    return Exact(
        {f"backbone.{n}": g.detach() for n, g in grads.items()}, solution, hessian.detach(),
        float(residual.norm()), float(eigenvalues.min()), float(eigenvalues.max()),
    )


def exact_meta_gradient(model: Learner, batch: list[Task]) -> tuple[dict[str, torch.Tensor], list[Exact]]:
    """The mean over ``batch`` of the exact gradients, and each task's :class:`Exact`."""
    per_task = [exact_implicit(model, t) for t in batch]
    names = per_task[0].grads
    return {n: sum(e.grads[n] for e in per_task) / len(per_task) for n in names}, per_task


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def max_error(estimate: dict[str, torch.Tensor], exact: dict[str, torch.Tensor]) -> float:
    return max(float((estimate[n] - exact[n]).abs().max()) for n in exact)


def contraction(per_task: list[Exact]) -> float:
    """The largest factor by which one SGD step at ``LR`` on the inner problem shrinks an error near ``y*``."""
    return max(max(abs(1 - LR * e.smallest), abs(1 - LR * e.largest)) for e in per_task)


def maml_error_bound(per_task: list[Exact], scale: float, steps: int = CONVERGED_STEPS) -> float:
    """How far second-order MAML through ``steps`` steps may be from the exact implicit gradient.

    The unrolled Jacobian obeys ``J_{k+1} = (I - LR (H_k + lambda I)) J_k + LR lambda I``, whose fixed point is
    ``lambda (H + lambda I)^-1``; once ``y_k`` has converged its error shrinks by ``rho`` per step, so what remains
    after the first half of the steps (by then ``y_k`` is at rounding level: ``rho^150 < 1e-16``) is at most
    ``rho^(steps/2)`` of the gradient's size. Rounding: each of the ``steps`` backward steps adds at most one
    product's rounding, ``gamma_n`` of the gradient's size (``n`` weights), and the contracting steps do not amplify
    it; ``steps * gamma_n * scale``.
    """
    n = per_task[0].hessian.shape[0]
    return contraction(per_task) ** (steps // 2) * scale + steps * gamma(n, torch.float64) * scale


def solution_rounding(per_task: list[Exact], solution_scale: float) -> float:
    """How far a computed inner solution may be from the exact one: the rounding of one inner gradient
    (``gamma_n`` of the solution's size, ``n`` weights) divided by the smallest eigenvalue of the inner Hessian,
    plus the measured residual over it (the fixed point of the float iteration, Higham 2002 ch. 17)."""
    n = per_task[0].hessian.shape[0]
    return max((gamma(n, torch.float64) * solution_scale * e.largest + e.residual) / e.smallest for e in per_task)


def train_briefly(tmp_path, estimator: str, options: dict, rule: str = "sgd", lam: float = 1.0):
    """Two meta-training iterations of sine regression with ``estimator``; returns the last checkpoint's record."""
    from core.checkpoint import read_metadata
    from core.config import config_from_dict
    from core.train import Trainer
    from tests.core.meta.test_outer_step import _raw

    meta = {"estimator": estimator, "estimator_options": options, "proximal_lambda": lam, "outer_lr": 1e-2}
    trainer = Trainer(config_from_dict(_raw(tmp_path, meta, {"name": rule, "lr": 0.02}, iterations=2)),
                      device="cpu", progress=False)
    before = [p.detach().clone() for p in trainer.learner.parameters() if p.requires_grad]
    summary = trainer.run()
    after = [p.detach() for p in trainer.learner.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "training did not move the meta-parameters"
    assert summary["iterations"] == 2 and trainer.skipped_steps == 0
    return read_metadata(tmp_path / "run" / "last.safetensors").training


def perturbation_rounding(per_task: list[Exact], exact: dict[str, torch.Tensor]) -> float:
    """How far one evaluation of ``G(delta)`` (the perturbed problem's partial gradient at its computed solution) may
    be from its exact value: the solution's rounding (:func:`solution_rounding`) moves ``lambda (x - y)`` by lambda
    times it and ``d_phi f_in`` by at most the Hessian's norm times it; the gradient's own rounding is ``gamma_n`` of
    its size. A difference quotient with step ``h`` is then off by at most twice this over ``h``."""
    n = per_task[0].hessian.shape[0]
    solution_scale = max(float(p.abs().max()) for e in per_task for p in e.solution.values())
    largest = max(e.largest for e in per_task)
    return (LAMBDA + largest) * solution_rounding(per_task, solution_scale) + gamma(n, torch.float64) * float(
        flat(exact).abs().max()
    )
