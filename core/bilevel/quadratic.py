"""The bilevel view on quadratic tasks, in float64 closed form: every meta-gradient estimator against the exact one.

``shared/reference.md``, "The bilevel view" (R1 and R2 are quoted from it, R3-R6 are derived here). One task is a
pair of quadratics, an inner (support) and an outer (query) loss:

    f_in(y)  = 1/2 (y - a)^T A (y - a),      f_out(y) = 1/2 (y - b)^T B (y - b),

and the inner problem has a proximal term of strength ``lambda`` pulling ``y`` to the outer variable ``x``:

    g(x, y) = f_in(y) + (lambda/2) ||y - x||^2,     y*(x) = argmin_y g(x, y),     F(x) = f_out(y*(x)).     (R1)

Everything has a closed form, with ``K = A + lambda I`` and ``H = hessian f_in = A``:

    y*(x) = K^-1 (A a + lambda x)                                                       (stationarity of R1)
    grad F(x) = lambda (H + lambda I)^-1 grad f_out(y*)     (implicit function theorem: dy*/dx = lambda K^-1)   (R2)

``T`` gradient steps on ``g`` from ``y_0 = x`` with the inner rate ``alpha`` are an affine map of ``x``:

    y_{t+1} = y_t - alpha grad_y g(x, y_t) = M y_t + alpha (A a + lambda x),   M = I - alpha K,
    y_T - y* = M^T (x - y*),      J_T = dy_T/dx = M^T + lambda K^-1 (I - M^T),                            (R3)

so ``||y_T - y*|| <= q^T ||x - y*||`` with the contraction factor ``q = max_i |1 - alpha (eig_i(A) + lambda)|``
(``M`` is symmetric, so its 2-norm is its spectral radius), and the unrolled objective ``f_out(y_T(x))`` has the
gradient ``J_T^T grad f_out(y_T)``.

The estimators (reference, the bullet list under R2), each ``fn(tasks, x, steps, inner_rate, lam, **its option)``
and registered by name in :data:`ESTIMATORS`:

- ``maml``: back-propagation through the ``T`` steps, ``J_T^T grad f_out(y_T)`` (exact for the unrolled objective);
- ``fomaml``: ``grad f_out(y_T)``;
- ``reptile``: ``(x - y_T) / (T alpha)``;
- ``imaml`` (``cg_steps = k``): ``k`` conjugate-gradient steps from ``v = 0`` on ``(I + H/lambda) v = grad f_out(y_T)``;
- ``fo_b_maml`` (``delta``): ``lambda (y_0 - y_delta) / delta`` and ``fo_b_maml_sym``:
  ``lambda (y_-delta - y_+delta) / (2 delta)``, where ``y_delta`` is ``T`` gradient steps from ``x`` on the perturbed
  inner problem ``f_in + delta f_out + (lambda/2)||y - x||^2``. Its exact minimiser satisfies
  ``dy_delta/d delta = -(H + lambda I)^-1 grad f_out(y*)`` at ``delta = 0``, so ``grad F = -lambda dy_delta/d delta``.

FO-B-MAML's bias in ``delta`` on quadratics, exactly (``P = K^-1 B``, ``r = y* - b``, ``T = infinity``): the perturbed
minimiser is ``y*_delta = y* - delta P (I + delta P)^-1 r``, so

    forward   = lambda (I + delta P)^-1 P r         = grad F - lambda delta P (I + delta P)^-1 P r         (R4)
    symmetric = lambda (I - delta^2 P^2)^-1 P r     = grad F + lambda delta^2 P^2 (I - delta^2 P^2)^-1 P r  (R5)

The forward bias is first order in ``delta``, the symmetric one second order: the odd powers of ``delta P`` cancel
and the even ones do not, so on quadratics the symmetric bias is Theta(delta^2), not smaller.

At a finite ``T`` both FO-B-MAML estimators tend, as ``delta -> 0``, to ``-lambda dy_T/d delta`` at ``delta = 0``:
differentiating the perturbed steps gives ``z_{t+1} = M z_t - alpha grad f_out(y_t)``, ``z_0 = 0``, so

    lim_{delta->0} FO-B-MAML = alpha lambda sum_{t<T} M^(T-1-t) grad f_out(y_t)                               (R6)

(:func:`fo_b_maml_limit`), a weighted sum of the outer gradients along the inner trajectory. With
``exact = alpha lambda sum_{s>=0} M^s grad f_out(y*)`` and ``y_t - y* = M^t (x - y*)``:

    R6 - grad F = alpha lambda sum_{t<T} M^(T-1-t) B M^t (x - y*) - alpha lambda sum_{s>=T} M^s grad f_out(y*),
    ||R6 - grad F|| <= alpha lambda ||B|| (T q^(T-1) ||x - y*|| + q^T ||y* - b|| / (1 - q)),

so FO-B-MAML converges in ``T`` like ``T q^T``, while MAML's error (R3) is ``O(q^T)``: at a finite ``T`` the
early iterates' outer gradients cost FO-B-MAML accuracy that no ``delta`` recovers.

Fast paths (for the dashboard's Lab page, ``core/lab``): :func:`estimates_every_step` gives an estimator for every
``T = 1..max`` from one inner trajectory, and :func:`run_outer_fast` runs :func:`run_outer`'s outer loop in numpy with
the estimator built once as an affine map of ``x`` (every estimator but iMAML is affine on quadratics). Both equal the
one-at-a-time functions to float64 rounding (``tests/core/test_lab.py``). :func:`perturbed_inner_solution` and
:func:`fo_b_maml_bias` are the ``T = infinity`` FO-B-MAML quantities of R4 and R5 in closed form.

Shapes: a :class:`QuadraticTasks` holds ``m`` tasks stacked on a leading axis (``A``: ``(m, n, n)``, ``a``:
``(m, n)``). ``x`` is ``(n,)`` or any batch of points that broadcasts against ``(m, n)``, for example ``(G, 1, n)``
for one point per outer rate of a grid; per-task results then have the shape ``(G, m, n)`` and the family averages
(the outer objective is the mean over tasks) reduce the task axis, ``-2`` for vectors and ``-1`` for losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch

from core.meta.outer_step import OuterStepChoice

__all__ = [
    "ESTIMATORS",
    "EstimatorChoice",
    "EstimatorSpec",
    "OuterRun",
    "QuadraticFamilySpec",
    "QuadraticTasks",
    "conjugate_gradient",
    "contraction_factor",
    "estimate",
    "estimates_every_step",
    "exact_meta_gradient",
    "fo_b_maml",
    "fo_b_maml_bias",
    "fo_b_maml_limit",
    "fo_b_maml_sym",
    "fomaml",
    "imaml",
    "inner_gradient",
    "inner_solution",
    "inner_solve",
    "make_family",
    "maml",
    "meta_gradient_mean",
    "optimal_outer",
    "outer_gradient",
    "outer_loss",
    "outer_task_loss",
    "perturbed_inner_solution",
    "relative_error",
    "reptile",
    "run_outer",
    "run_outer_fast",
    "unrolled_gradient",
    "unrolled_iterate",
    "unrolled_jacobian",
    "unrolled_loss",
]


def _mv(matrix: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched matrix-vector product ``matrix @ v`` over the last axes, broadcasting the leading ones."""
    return np.matmul(matrix, v[..., None])[..., 0]


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sum(u * v, axis=-1, keepdims=True)


def _spd_matrices(rng: np.random.Generator, count: int, n: int, smoothness: float, kappa: float) -> tuple[np.ndarray, ...]:
    """``count`` symmetric matrices ``Q diag(e) Q^T`` with the eigenvalues ``e`` log-spaced over ``[L/kappa, L]``.

    The spectrum is set, not sampled: its ends are ``L/kappa`` and ``L``, so the condition number is ``kappa`` (to
    rounding). ``Q`` is Haar-random (QR of a Gaussian matrix with the signs of R's diagonal folded in). ``kappa = 1``
    gives exactly ``L I``.
    """
    eigenvalues = np.broadcast_to(smoothness / kappa ** np.linspace(1.0, 0.0, n), (count, n)).copy()
    if kappa == 1:
        eye = np.broadcast_to(np.eye(n), (count, n, n)).copy()
        return smoothness * eye, eigenvalues, eye
    q, r = np.linalg.qr(rng.standard_normal((count, n, n)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    matrices = (q * eigenvalues[..., None, :]) @ np.swapaxes(q, -1, -2)
    return 0.5 * (matrices + np.swapaxes(matrices, -1, -2)), eigenvalues, q


@dataclass(frozen=True)
class QuadraticFamilySpec:
    """How :func:`make_family` draws a family of quadratic tasks (all fields are recorded by the bench).

    Inner Hessians ``A``: eigenvalues log-spaced over ``[smoothness/kappa, smoothness]``, random eigenvectors per
    task. Outer Hessians ``B``: the same with ``outer_smoothness`` and ``outer_kappa`` (``outer_kappa = 1``: exactly
    ``outer_smoothness I``). Centres: a shared centre ``c ~ N(0, I/n)``, ``a_i = c + center_spread N(0, I/n)``
    (the tasks differ) and ``b_i = a_i + query_shift N(0, I/n)`` (query and support optima differ).
    """

    n: int = 20
    tasks: int = 10
    kappa: float = 1000.0
    smoothness: float = 1.0
    outer_kappa: float = 10.0
    outer_smoothness: float = 1.0
    center_spread: float = 1.0
    query_shift: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 2 or self.tasks < 1:
            raise ValueError(f"need n >= 2 and at least one task, not n={self.n}, tasks={self.tasks}")
        if not (self.kappa >= 1 and self.outer_kappa >= 1 and self.smoothness > 0 and self.outer_smoothness > 0):
            raise ValueError("condition numbers must be >= 1 and smoothness constants positive")


@dataclass(frozen=True, eq=False)
class QuadraticTasks:
    """``m`` quadratic tasks stacked on the leading axis: ``f_in = 1/2 (y-a)^T A (y-a)``, ``f_out = 1/2 (y-b)^T B (y-b)``.

    ``eigenvalues`` and ``eigenvectors`` are those ``A`` was built from (``A = Q diag(e) Q^T``); the closed forms
    (R1)-(R3) use them.
    """

    A: np.ndarray
    a: np.ndarray
    B: np.ndarray
    b: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray

    def __post_init__(self) -> None:
        m, n = self.a.shape
        for name, value, shape in (("A", self.A, (m, n, n)), ("B", self.B, (m, n, n)), ("b", self.b, (m, n)),
                                   ("eigenvalues", self.eigenvalues, (m, n)),
                                   ("eigenvectors", self.eigenvectors, (m, n, n))):
            if value.shape != shape:
                raise ValueError(f"{name} has the shape {value.shape}, expected {shape}")

    @property
    def n(self) -> int:
        return self.a.shape[-1]

    @property
    def size(self) -> int:
        return self.a.shape[0]

    def task(self, i: int) -> QuadraticTasks:
        """The ``i``-th task alone (a family of one)."""
        s = slice(i, i + 1)
        return QuadraticTasks(self.A[s], self.a[s], self.B[s], self.b[s], self.eigenvalues[s], self.eigenvectors[s])


def make_family(spec: QuadraticFamilySpec) -> QuadraticTasks:
    """A seeded family of ``spec.tasks`` quadratic tasks in ``spec.n`` dimensions (see :class:`QuadraticFamilySpec`)."""
    rng = np.random.default_rng(spec.seed)
    n, m = spec.n, spec.tasks
    A, eigenvalues, eigenvectors = _spd_matrices(rng, m, n, spec.smoothness, spec.kappa)
    B, _, _ = _spd_matrices(rng, m, n, spec.outer_smoothness, spec.outer_kappa)
    scale = 1 / math.sqrt(n)
    center = scale * rng.standard_normal(n)
    a = center + spec.center_spread * scale * rng.standard_normal((m, n))
    b = a + spec.query_shift * scale * rng.standard_normal((m, n))
    return QuadraticTasks(A, a, B, b, eigenvalues, eigenvectors)


# ----------------------------------------------------------------------------------------------------- the losses

def outer_task_loss(tasks: QuadraticTasks, y: np.ndarray) -> np.ndarray:
    """``f_out(y) = 1/2 (y - b)^T B (y - b)`` per task (shape of ``y`` without its last axis)."""
    r = y - tasks.b
    return 0.5 * np.sum(r * _mv(tasks.B, r), axis=-1)


def outer_gradient(tasks: QuadraticTasks, y: np.ndarray) -> np.ndarray:
    """``grad f_out(y) = B (y - b)`` per task."""
    return _mv(tasks.B, y - tasks.b)


def inner_gradient(tasks: QuadraticTasks, x: np.ndarray, y: np.ndarray, lam: float, delta: float = 0.0) -> np.ndarray:
    """``grad_y [f_in(y) + delta f_out(y) + (lambda/2)||y - x||^2] = A (y-a) + delta B (y-b) + lambda (y-x)``."""
    grad = _mv(tasks.A, y - tasks.a) + lam * (y - x)
    if delta:
        grad = grad + delta * outer_gradient(tasks, y)
    return grad


def inner_solution(tasks: QuadraticTasks, x: np.ndarray, lam: float) -> np.ndarray:
    """The exact ``y*(x) = (A + lambda I)^-1 (A a + lambda x)`` (R1), through the eigenvectors of ``A``."""
    q = tasks.eigenvectors
    rhs = _mv(tasks.A, tasks.a) + lam * np.asarray(x)
    return _mv(q, _mv(np.swapaxes(q, -1, -2), rhs) / (tasks.eigenvalues + lam))


def exact_meta_gradient(tasks: QuadraticTasks, x: np.ndarray, lam: float) -> np.ndarray:
    """The exact meta-gradient per task, ``lambda (H + lambda I)^-1 grad f_out(y*(x))`` (R2)."""
    q = tasks.eigenvectors
    g = outer_gradient(tasks, inner_solution(tasks, x, lam))
    return _mv(q, lam * _mv(np.swapaxes(q, -1, -2), g) / (tasks.eigenvalues + lam))


def outer_loss(tasks: QuadraticTasks, x: np.ndarray, lam: float) -> np.ndarray:
    """The outer objective ``F(x)``: the mean over tasks of ``f_out(y*(x))`` (R1)."""
    return np.mean(outer_task_loss(tasks, inner_solution(tasks, x, lam)), axis=-1)


def meta_gradient_mean(per_task: np.ndarray) -> np.ndarray:
    """The family's meta-gradient from per-task ones: their mean over the task axis (``-2``)."""
    return np.mean(per_task, axis=-2)


def optimal_outer(tasks: QuadraticTasks, lam: float) -> tuple[np.ndarray, float, float]:
    """The minimiser ``x*`` of ``F``, ``F(x*)`` and the smoothness constant of ``F`` (its Hessian's largest eigenvalue).

    ``y*_i(x) = S_i x + t_i`` with ``S_i = lambda K_i^-1`` (symmetric), so ``F`` is the convex quadratic with the
    Hessian ``mean_i S_i B_i S_i`` and the gradient ``mean_i S_i B_i (S_i x + t_i - b_i)``.
    """
    q = tasks.eigenvectors
    s = (q * (lam / (tasks.eigenvalues + lam))[..., None, :]) @ np.swapaxes(q, -1, -2)
    t = inner_solution(tasks, np.zeros(tasks.n), lam)
    hessian = np.mean(s @ tasks.B @ s, axis=0)
    hessian = 0.5 * (hessian + hessian.T)
    rhs = np.mean(_mv(s @ tasks.B, tasks.b - t), axis=0)
    x_star = np.linalg.solve(hessian, rhs)
    return x_star, float(outer_loss(tasks, x_star, lam)), float(np.linalg.eigvalsh(hessian)[-1])


# ------------------------------------------------------------------------------------------------- the inner loop

def contraction_factor(tasks: QuadraticTasks, inner_rate: float, lam: float, delta: float = 0.0) -> np.ndarray:
    """Per task, ``q = max_i |1 - alpha eig_i(A + delta B + lambda I)|``: ``||y_T - y*|| <= q^T ||y_0 - y*||`` (R3).

    ``q < 1`` is needed for the inner loop to converge (``0 < alpha < 2 / (L + lambda)`` when ``delta = 0``).
    """
    if delta:
        eig = np.linalg.eigvalsh(tasks.A + delta * tasks.B)
    else:
        eig = tasks.eigenvalues
    return np.max(np.abs(1 - inner_rate * (eig + lam)), axis=-1)


def inner_solve(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float,
                delta: float = 0.0) -> np.ndarray:
    """``y_T``: ``steps`` gradient steps with the rate ``inner_rate`` from ``y_0 = x`` on the inner problem (R1),
    perturbed by ``delta f_out`` when ``delta != 0`` (FO-B-MAML's inner problem)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, not {steps}")
    x = np.asarray(x, dtype=float)
    y = np.broadcast_to(x, np.broadcast_shapes(x.shape, tasks.a.shape)).copy()
    for _ in range(steps):
        y = y - inner_rate * inner_gradient(tasks, x, y, lam, delta)
    return y


def unrolled_iterate(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float) -> np.ndarray:
    """``y_T`` in closed form: ``y* + M^T (x - y*)`` with ``M = I - alpha (A + lambda I)`` (R3)."""
    q = tasks.eigenvectors
    y_star = inner_solution(tasks, x, lam)
    decay = (1 - inner_rate * (tasks.eigenvalues + lam)) ** steps
    return y_star + _mv(q, decay * _mv(np.swapaxes(q, -1, -2), np.asarray(x) - y_star))


def unrolled_jacobian(tasks: QuadraticTasks, steps: int, inner_rate: float, lam: float) -> np.ndarray:
    """``J_T = dy_T/dx = M^T + lambda K^-1 (I - M^T)`` (R3), a symmetric ``(m, n, n)`` matrix per task.

    From ``J_{t+1} = M J_t + alpha lambda I``, ``J_0 = I``: ``J_T = M^T + alpha lambda sum_{s<T} M^s`` and
    ``alpha sum_{s<T} M^s = (I - M^T) K^-1``.
    """
    q = tasks.eigenvectors
    shift = tasks.eigenvalues + lam
    decay = (1 - inner_rate * shift) ** steps
    diagonal = decay + lam * (1 - decay) / shift
    return (q * diagonal[..., None, :]) @ np.swapaxes(q, -1, -2)


def unrolled_loss(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float) -> np.ndarray:
    """The unrolled (MAML) objective: the mean over tasks of ``f_out(y_T(x))``, ``y_T`` by ``steps`` gradient steps."""
    return np.mean(outer_task_loss(tasks, inner_solve(tasks, x, steps, inner_rate, lam)), axis=-1)


def unrolled_gradient(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float) -> np.ndarray:
    """The exact gradient of ``f_out(y_T(x))`` per task: ``J_T^T grad f_out(y_T)``, both in closed form (R3)."""
    jacobian = unrolled_jacobian(tasks, steps, inner_rate, lam)
    g = outer_gradient(tasks, unrolled_iterate(tasks, x, steps, inner_rate, lam))
    return _mv(np.swapaxes(jacobian, -1, -2), g)


# --------------------------------------------------------------------------------------------------- the estimators

def maml(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float) -> np.ndarray:
    """Second-order MAML: reverse-mode differentiation of ``f_out(y_T(x))`` through the ``T`` inner steps (R3).

    The backward pass of ``y_{t+1} = y_t - alpha (A (y_t - a) + lambda (y_t - x))``: the adjoint ``v`` of ``y_{t+1}``
    gives ``M^T v`` to ``y_t`` and ``alpha lambda v`` to ``x``; ``y_0 = x`` adds the last adjoint. The Hessian of
    ``f_in`` is ``A`` at every iterate, so the iterates need not be stored (a network would store them).
    """
    v = outer_gradient(tasks, inner_solve(tasks, x, steps, inner_rate, lam))
    grad_x = np.zeros_like(v)
    for _ in range(steps):
        grad_x = grad_x + (inner_rate * lam) * v
        v = v - inner_rate * (_mv(np.swapaxes(tasks.A, -1, -2), v) + lam * v)
    return grad_x + v


def fomaml(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float) -> np.ndarray:
    """First-order MAML: ``grad f_out(y_T)``, the Jacobian ``dy_T/dx`` dropped (biased for every ``T``)."""
    return outer_gradient(tasks, inner_solve(tasks, x, steps, inner_rate, lam))


def reptile(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float) -> np.ndarray:
    """Reptile's direction ``(x - y_T) / (T alpha)``; it never looks at ``f_out``."""
    if steps < 1:
        raise ValueError("reptile needs at least one inner step")
    return (np.asarray(x) - inner_solve(tasks, x, steps, inner_rate, lam)) / (steps * inner_rate)


def conjugate_gradient(matvec: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` conjugate-gradient iterations on ``S v = rhs`` from ``v = 0`` (Hestenes-Stiefel), ``S`` symmetric
    positive definite and given only through ``matvec(p) = S p``.

    Each vector along the leading axes is its own system with its own step sizes. A system whose residual is
    exactly zero stops moving (no division by zero). In exact arithmetic ``n`` steps solve an ``n``-dimensional
    system, and the error shrinks at every step in the ``S``-norm and in the 2-norm.
    """
    v = np.zeros_like(rhs)
    r = np.array(rhs, dtype=float)
    p = r.copy()
    rr = _dot(r, r)
    for _ in range(steps):
        sp = matvec(p)
        curvature = _dot(p, sp)
        alpha = np.divide(rr, curvature, out=np.zeros_like(rr), where=curvature > 0)
        v = v + alpha * p
        r = r - alpha * sp
        rr_next = _dot(r, r)
        beta = np.divide(rr_next, rr, out=np.zeros_like(rr), where=rr > 0)
        p = r + beta * p
        rr = rr_next
    return v


def imaml(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float, cg_steps: int) -> np.ndarray:
    """iMAML (Rajeswaran et al. 2019): ``T`` steps to ``y_T``, then ``cg_steps`` CG steps from ``v = 0`` on
    ``(I + H/lambda) v = grad f_out(y_T)`` with Hessian-vector products ``H p = A p`` (the Hessian of ``f_in`` at
    ``y_T``). ``v = lambda (H + lambda I)^-1 grad f_out(y_T)`` once CG has converged (R2 at ``y_T``)."""
    if cg_steps < 0:
        raise ValueError(f"cg_steps must be >= 0, not {cg_steps}")
    g = outer_gradient(tasks, inner_solve(tasks, x, steps, inner_rate, lam))

    def hessian_vector_product(p: np.ndarray) -> np.ndarray:
        return _mv(tasks.A, p)

    return conjugate_gradient(lambda p: p + hessian_vector_product(p) / lam, g, int(cg_steps))


def fo_b_maml(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float,
              delta: float) -> np.ndarray:
    """FO-B-MAML, forward difference: ``lambda (y_0 - y_delta) / delta`` (bias R4: first order in ``delta``)."""
    if not delta > 0:
        raise ValueError(f"delta must be positive, not {delta}")
    y_0 = inner_solve(tasks, x, steps, inner_rate, lam)
    y_delta = inner_solve(tasks, x, steps, inner_rate, lam, delta)
    return lam * (y_0 - y_delta) / delta


def fo_b_maml_sym(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float,
                  delta: float) -> np.ndarray:
    """FO-B-MAML, symmetric difference: ``lambda (y_-delta - y_+delta) / (2 delta)`` (bias R5: second order).

    ``A - delta B + lambda I`` must stay positive definite, so ``delta`` must be below ``(mu + lambda) / ||B||``.
    """
    if not delta > 0:
        raise ValueError(f"delta must be positive, not {delta}")
    y_minus = inner_solve(tasks, x, steps, inner_rate, lam, -delta)
    y_plus = inner_solve(tasks, x, steps, inner_rate, lam, delta)
    return lam * (y_minus - y_plus) / (2 * delta)


def fo_b_maml_limit(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float) -> np.ndarray:
    """What both FO-B-MAML estimators tend to as ``delta -> 0`` at a fixed ``T``: ``-lambda dy_T/d delta`` (R6).

    Forward-mode through the perturbed steps at ``delta = 0``: ``z_{t+1} = M z_t - alpha grad f_out(y_t)``.
    """
    x = np.asarray(x, dtype=float)
    y = np.broadcast_to(x, np.broadcast_shapes(x.shape, tasks.a.shape)).copy()
    z = np.zeros_like(y)
    for _ in range(steps):
        z = z - inner_rate * (_mv(tasks.A, z) + lam * z + outer_gradient(tasks, y))
        y = y - inner_rate * inner_gradient(tasks, x, y, lam)
    return -lam * z


def relative_error(estimate: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """``||estimate - exact|| / ||exact||`` along the last axis."""
    return np.linalg.norm(estimate - exact, axis=-1) / np.linalg.norm(exact, axis=-1)


# ------------------------------------------------------------------------------------------------------ the registry

@dataclass(frozen=True)
class EstimatorSpec:
    """A registered estimator: its function, the name of its own setting (``None``: none) and a one-line summary."""

    name: str
    function: Callable[..., np.ndarray]
    option: str | None
    order: str
    summary: str


ESTIMATORS: Mapping[str, EstimatorSpec] = MappingProxyType({spec.name: spec for spec in (
    EstimatorSpec("maml", maml, None, "second", "back-propagation through the T inner steps"),
    EstimatorSpec("fomaml", fomaml, None, "first", "grad f_out(y_T)"),
    EstimatorSpec("reptile", reptile, None, "first", "(x - y_T) / (T inner_rate)"),
    EstimatorSpec("imaml", imaml, "cg_steps", "second", "CG on (I + H/lambda) v = grad f_out(y_T)"),
    EstimatorSpec("fo_b_maml", fo_b_maml, "delta", "first", "lambda (y_0 - y_delta) / delta"),
    EstimatorSpec("fo_b_maml_sym", fo_b_maml_sym, "delta", "first", "lambda (y_-delta - y_+delta) / (2 delta)"),
)})


@dataclass(frozen=True)
class EstimatorChoice:
    """An estimator by name with its setting, e.g. ``EstimatorChoice("imaml", 5)`` (5 CG steps)."""

    name: str
    option: float | None = None

    def __post_init__(self) -> None:
        if self.name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.name!r}; choose one of {', '.join(ESTIMATORS)}")
        needs = ESTIMATORS[self.name].option
        if (needs is None) != (self.option is None):
            raise ValueError(f"estimator {self.name!r} " + (f"needs its {needs}" if needs else "takes no setting"))

    @property
    def label(self) -> str:
        option = ESTIMATORS[self.name].option
        if option is None:
            return self.name
        value = int(self.option) if option == "cg_steps" else self.option
        return f"{self.name} ({'cg' if option == 'cg_steps' else 'delta'}={value:g})"

    def __call__(self, tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float) -> np.ndarray:
        return estimate(self.name, tasks, x, steps, inner_rate, lam, self.option)


def estimate(name: str, tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float,
             option: float | None = None) -> np.ndarray:
    """The per-task meta-gradient estimate of the estimator ``name`` (``option``: its ``cg_steps`` or ``delta``)."""
    spec = ESTIMATORS.get(name)
    if spec is None:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    if spec.option is None:
        return spec.function(tasks, x, steps, inner_rate, lam)
    if option is None:
        raise ValueError(f"estimator {name!r} needs its {spec.option}")
    value = int(option) if spec.option == "cg_steps" else float(option)
    return spec.function(tasks, x, steps, inner_rate, lam, value)


# -------------------------------------------------------------------------------------------- the outer optimisation

@dataclass(frozen=True, eq=False)
class OuterRun:
    """Outer optimisation of ``F`` with one estimator and one outer step, for each rate of a grid at once.

    ``exact_loss[k, i]``: ``F(x_i)`` (R1) with the ``k``-th rate after ``i`` outer steps; ``unrolled_loss``: the
    mean ``f_out(y_T(x_i))``. A run that blew up (``F`` not finite or above ``divergence_factor F(x_0)``) is frozen
    and its later losses are ``inf``; ``diverged`` marks it.
    """

    choice: EstimatorChoice
    method: OuterStepChoice
    rates: np.ndarray
    exact_loss: np.ndarray
    unrolled_loss: np.ndarray
    diverged: np.ndarray
    final_x: np.ndarray = field(repr=False)

    @property
    def best(self) -> int:
        """The index of the rate with the lowest final ``F`` (ties: the smaller rate)."""
        return int(np.argmin(self.exact_loss[:, -1]))


def run_outer(tasks: QuadraticTasks, x0: np.ndarray, choice: EstimatorChoice, steps: int, inner_rate: float,
              lam: float, method: OuterStepChoice, rates: np.ndarray | list[float], iterations: int,
              divergence_factor: float = 1e6) -> OuterRun:
    """``iterations`` outer steps of ``method`` on the family's mean estimate from ``x0``, one run per rate.

    The outer steps are training's (:mod:`core.meta.outer_step`): each run's ``x`` is a float64 tensor with its own
    optimizer at its rate (one run is one outer variable, so a normalized step's norm is that run's alone); the
    estimates are numpy, passed to it as the tensor's gradient.
    """
    rates = np.asarray(rates, dtype=float)
    grid = rates.shape[0]
    start = np.broadcast_to(np.asarray(x0, dtype=float), (grid, tasks.n))
    xs = [torch.tensor(row, dtype=torch.float64) for row in start]
    optimizers = [method.build([x], lr=float(rate)) for x, rate in zip(xs, rates, strict=True)]
    exact = np.full((grid, iterations + 1), np.inf)
    unrolled = np.full((grid, iterations + 1), np.inf)
    alive = np.ones(grid, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(iterations + 1):
            points = torch.stack(xs).numpy()[:, None, :]
            f = outer_loss(tasks, points, lam)
            limit = divergence_factor * exact[:, 0] if i else np.full(grid, np.inf)
            alive &= np.isfinite(f) & (f <= limit)
            exact[:, i] = np.where(alive, f, np.inf)
            unrolled[:, i] = np.where(alive, unrolled_loss(tasks, points, steps, inner_rate, lam), np.inf)
            if i == iterations:
                break
            g = meta_gradient_mean(choice(tasks, points, steps, inner_rate, lam))
            for k in np.flatnonzero(alive):  # a run that blew up stays where it was
                xs[k].grad = torch.from_numpy(np.ascontiguousarray(g[k]))
                optimizers[k].step()
                optimizers[k].zero_grad()
    return OuterRun(choice, method, rates, exact, unrolled, ~alive, torch.stack(xs).numpy())


# ------------------------------------------------------------------------------------------------ the fast paths
# The dashboard's Lab page (core/lab.py) needs Figure 1 in a few seconds. The functions above answer one inner-step
# count or one outer step at a time; these give the same numbers (to float64 rounding) for every T in one pass and
# run the outer loop in numpy, with the estimator, an affine map of x on quadratics, built once.

def _inner_trajectory(tasks: QuadraticTasks, x: np.ndarray, steps: int, inner_rate: float, lam: float,
                      delta: float = 0.0) -> np.ndarray:
    """``y_1 .. y_T`` of :func:`inner_solve` (the same operations, so the same rounding), stacked on a new axis 0."""
    x = np.asarray(x, dtype=float)
    y = np.broadcast_to(x, np.broadcast_shapes(x.shape, tasks.a.shape)).copy()
    trajectory = np.empty((steps, *y.shape))
    for t in range(steps):
        y = y - inner_rate * inner_gradient(tasks, x, y, lam, delta)
        trajectory[t] = y
    return trajectory


def estimates_every_step(name: str, tasks: QuadraticTasks, x: np.ndarray, max_steps: int, inner_rate: float,
                         lam: float, option: float | None = None) -> np.ndarray:
    """The per-task estimate of ``name`` for every ``T = 1 .. max_steps`` at once, shape ``(max_steps, *y.shape)``.

    Row ``T - 1`` equals :func:`estimate` with ``steps = T`` to float64 rounding: one inner trajectory (two for
    FO-B-MAML) is recorded instead of ``max_steps`` separate ones. MAML's backward pass through ``T`` steps is
    replaced by its closed form ``J_T^T grad f_out(y_T)`` (R3), iMAML's CG runs on every ``T`` as one batch.
    """
    spec = ESTIMATORS.get(name)
    if spec is None:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, not {max_steps}")
    if spec.option is not None and option is None:
        raise ValueError(f"estimator {name!r} needs its {spec.option}")
    x = np.asarray(x, dtype=float)
    if name in ("fo_b_maml", "fo_b_maml_sym"):
        delta = float(option)  # type: ignore[arg-type]
        if not delta > 0:
            raise ValueError(f"delta must be positive, not {delta}")
        if name == "fo_b_maml":
            y_0 = _inner_trajectory(tasks, x, max_steps, inner_rate, lam)
            return lam * (y_0 - _inner_trajectory(tasks, x, max_steps, inner_rate, lam, delta)) / delta
        y_minus = _inner_trajectory(tasks, x, max_steps, inner_rate, lam, -delta)
        return lam * (y_minus - _inner_trajectory(tasks, x, max_steps, inner_rate, lam, delta)) / (2 * delta)
    trajectory = _inner_trajectory(tasks, x, max_steps, inner_rate, lam)
    steps = np.arange(1, max_steps + 1).reshape(max_steps, *([1] * (trajectory.ndim - 1)))
    if name == "reptile":
        return (x - trajectory) / (steps * inner_rate)
    g = outer_gradient(tasks, trajectory)
    if name == "fomaml":
        return g
    if name == "imaml":
        cg_steps = int(option)  # type: ignore[arg-type]
        if cg_steps < 0:
            raise ValueError(f"cg_steps must be >= 0, not {cg_steps}")
        return conjugate_gradient(lambda p: p + _mv(tasks.A, p) / lam, g, cg_steps)
    # maml: J_T = Q diag(decay^T + lambda (1 - decay^T) / (e + lambda)) Q^T (R3), per T
    q = tasks.eigenvectors
    shift = tasks.eigenvalues + lam
    decay = (1 - inner_rate * shift) ** steps  # (T, ..., m, n): the leading axes broadcast against the batch
    diagonal = decay + lam * (1 - decay) / shift
    return _mv(q, diagonal * _mv(np.swapaxes(q, -1, -2), g))


def perturbed_inner_solution(tasks: QuadraticTasks, x: np.ndarray, lam: float, delta: float) -> np.ndarray:
    """The exact minimiser of FO-B-MAML's perturbed inner problem ``f_in + delta f_out + (lambda/2)||y - x||^2``:
    ``y*_delta = (A + delta B + lambda I)^-1 (A a + delta B b + lambda x)`` (R1 with ``delta f_out`` added; the
    ``T -> infinity`` limit of :func:`inner_solve` with ``delta``)."""
    system = tasks.A + delta * tasks.B + lam * np.eye(tasks.n)
    rhs = _mv(tasks.A, tasks.a) + delta * _mv(tasks.B, tasks.b) + lam * np.asarray(x, dtype=float)
    system = np.broadcast_to(system, (*rhs.shape[:-1], tasks.n, tasks.n))
    return np.linalg.solve(system, rhs[..., None])[..., 0]


def fo_b_maml_bias(tasks: QuadraticTasks, x: np.ndarray, lam: float, delta: float, symmetric: bool) -> np.ndarray:
    """FO-B-MAML's bias per task with a converged inner loop, in closed form (``P = K^-1 B``):

    forward (R4): ``-delta P (I + delta P)^-1 grad F``;  symmetric (R5): ``delta^2 P^2 (I - delta^2 P^2)^-1 grad F``.
    """
    eye = np.eye(tasks.n)
    p = np.linalg.solve(tasks.A + lam * eye, tasks.B)
    exact = exact_meta_gradient(tasks, x, lam)
    if symmetric:
        p2 = p @ p
        return delta**2 * _mv(p2 @ np.linalg.inv(eye - delta**2 * p2), exact)
    return -delta * _mv(p @ np.linalg.inv(eye + delta * p), exact)


def _mean_estimate_map(choice: EstimatorChoice, tasks: QuadraticTasks, steps: int, inner_rate: float,
                       lam: float) -> Callable[[np.ndarray], np.ndarray]:
    """The family's mean estimate as a function of points ``(G, n) -> (G, n)``, built once.

    On quadratics ``y_T`` and ``y_delta`` are affine in ``x``, so every estimator but iMAML is: ``g(x) = h + x G``,
    read off from its values at ``0`` and at the unit vectors. iMAML's CG is not linear in its right-hand side (its
    step sizes depend on it), so only ``grad f_out(y_T)`` is mapped and CG runs on each call, as :func:`imaml` does.
    """
    n = tasks.n
    basis = np.concatenate([np.zeros((1, n)), np.eye(n)])[:, None, :]
    cg_steps = int(choice.option) if choice.name == "imaml" else None  # type: ignore[arg-type]
    values = fomaml(tasks, basis, steps, inner_rate, lam) if cg_steps is not None else choice(
        tasks, basis, steps, inner_rate, lam)
    offset, columns = values[0], values[1:] - values[0]  # (m, n) and (n, m, n): column j of each task's matrix
    if cg_steps is None:
        mean_offset, mean_columns = meta_gradient_mean(offset), np.mean(columns, axis=1)
        return lambda points: mean_offset + points @ mean_columns

    def mean_imaml(points: np.ndarray) -> np.ndarray:
        rhs = offset + np.einsum("gj,jmk->gmk", points, columns)
        return meta_gradient_mean(conjugate_gradient(lambda p: p + _mv(tasks.A, p) / lam, rhs, cg_steps))

    return mean_imaml


def _vector_norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(v * v, axis=-1, keepdims=True))


def run_outer_fast(tasks: QuadraticTasks, x0: np.ndarray, choice: EstimatorChoice, steps: int, inner_rate: float,
                   lam: float, method: OuterStepChoice, rates: np.ndarray | list[float], iterations: int,
                   divergence_factor: float = 1e6) -> OuterRun:
    """:func:`run_outer` in numpy, every rate of the grid as one batch: the same :class:`OuterRun` to float64 rounding.

    The steps are those of :mod:`core.meta.outer_step`, written out: SGD (with torch's heavy-ball momentum, the
    buffer starting at the first gradient), clipped (``g min(1, c / (||g|| + 1e-6))`` as ``clip_grad_norm_``, then
    the SGD base), normalized and SNGDM (a zero or non-finite norm: no move). Adam is not written out: use
    :func:`run_outer`. The unrolled loss uses the closed-form ``y_T`` (R3) instead of ``T`` steps.
    """
    name, options, max_norm = method.name, method.options, None
    if name == "clipped":
        name, options, max_norm = options.base, options.base_options, options.max_norm
    if name not in ("sgd", "normalized", "sngdm"):
        raise ValueError(f"run_outer_fast has no {method.label!r} step (sgd, clipped sgd, normalized, sngdm); "
                         "use run_outer")
    momentum = float(getattr(options, "momentum", 0.0))
    rates = np.asarray(rates, dtype=float)
    grid = rates.shape[0]
    mean_estimate = _mean_estimate_map(choice, tasks, steps, inner_rate, lam)
    x = np.broadcast_to(np.asarray(x0, dtype=float), (grid, tasks.n)).copy()
    buffer: np.ndarray | None = None  # SGD's and SNGDM's momentum (normalized GD: unused)
    rate_column = rates[:, None]
    # Every point first, the losses after, in one batch each: a run's path does not depend on the losses, and one
    # that blew up is cut where run_outer would have frozen it (its later losses inf, its last point the one where
    # F was first not finite or above divergence_factor F(x_0)). Its later steps are computed and thrown away.
    path = np.empty((grid, iterations + 1, tasks.n))
    path[:, 0] = x
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i in range(iterations):
            g = mean_estimate(x)
            if max_norm is not None:
                g = g * np.minimum(max_norm / (_vector_norm(g) + 1e-6), 1.0)
            if name == "sgd":
                # torch's heavy ball: the buffer is the first gradient, then momentum b + g
                buffer = g if buffer is None or not momentum else momentum * buffer + g
                x = x - rate_column * buffer
            else:
                if name == "sngdm":  # m from 0: beta m + (1 - beta) g
                    buffer = (np.zeros_like(g) if buffer is None else buffer) * momentum + g * (1 - momentum)
                direction = buffer if name == "sngdm" else g
                norm = _vector_norm(direction)
                ok = (norm > 0) & np.isfinite(norm)
                x = np.where(ok, x - (direction / np.where(ok, norm, 1.0)) * rate_column, x)
            path[:, i + 1] = x
        points = path[:, :, None, :]
        exact = outer_loss(tasks, points, lam)
        unrolled = np.mean(outer_task_loss(tasks, unrolled_iterate(tasks, points, steps, inner_rate, lam)), axis=-1)
    bad = ~np.isfinite(exact)
    bad[:, 1:] |= ~(exact[:, 1:] <= divergence_factor * exact[:, :1])
    died = bad.any(axis=1)
    cut = np.where(died, np.argmax(bad, axis=1), iterations)
    later = np.arange(iterations + 1) >= cut[:, None]
    frozen = later & died[:, None]
    exact = np.where(frozen, np.inf, exact)
    unrolled = np.where(frozen, np.inf, unrolled)
    return OuterRun(choice, method, rates, exact, unrolled, died, path[np.arange(grid), cut])
