"""How smooth the MAML meta-objective is, measured: its local smoothness constant against its meta-gradient's norm.

Chayti and Jaggi (``shared/papers/first-order-meta-learning-with-convergence-guarantees.md``; ``shared/reference.md``,
"The bilevel view", "Outer steps") show that the MAML objective is not globally smooth: its smoothness constant
grows with the norm of the meta-gradient, the (L0, L1)-smoothness of Zhang et al. (2020, "Why gradient clipping
accelerates training"),

    L(x) = ||hessian F(x)||_2 <= L0 + L1 ||grad F(x)||,                                                        (S1)

which is why normalized and clipped outer steps (``core.meta.outer_step``) suit it better than a fixed-rate one.
This module measures both sides of (S1) at a point ``x`` of any twice-differentiable ``objective(x)`` of a flat
float64 vector ``x``, and fits (S1) to the measurements.

The MAML meta-objective itself is :class:`UnrolledMAML`: on a FIXED batch of tasks ``i = 1..m``,

    F(x) = 1/m sum_i L_query,i(y_T,i(x)),     y_0 = x,   y_{t+1} = y_t - alpha grad L_support,i(y_t)             (S2)

(MAML eq. 1 with ``T`` inner steps of the learner's rule, differentiated exactly: second order).

The local smoothness constant measured (:func:`local_smoothness`):

- ``smoothness``: the spectral norm of the meta-Hessian, ``max_k |eig_k(hessian F(x))|`` (S1's left side, the
  Lipschitz constant of ``grad F`` on an infinitesimal ball around ``x``), by the Lanczos method with full
  reorthogonalisation on Hessian-vector products (:func:`extreme_eigenvalues`). Each product is a double backward
  pass, ``d/dx <grad F(x), v>``, through the graph of ``grad F`` (itself a backward pass through the inner loop:
  third-order autograd, exact to rounding). Lanczos rather than plain power iteration: the meta-Hessian of a
  network has negative eigenvalues as large as its positive ones, where power iteration's rate
  ``|lambda_2 / lambda_1|`` is close to 1; Lanczos finds both ends of the spectrum in a few tens of products. The
  answer carries its own certificate: the residual ``r = ||H u - theta u||`` of the Ritz pair ``(theta, u)``,
  ``||u|| = 1``, is measured with one more product, and a symmetric ``H`` has an eigenvalue within ``r`` of
  ``theta`` (Parlett, "The Symmetric Eigenvalue Problem", theorem 4.5.1).
- ``secant_along_gradient``: ``||grad F(x + h d) - grad F(x)|| / h`` with ``d = grad F(x) / ||grad F(x)||``, the
  finite version along the direction an outer step takes; it is at most ``max_{|s| <= h} ||hessian F(x + s d)||``
  (the mean value theorem), and equals ``||H d||`` for a quadratic ``F`` whatever ``h``.

The fit of (S1) (:func:`fit_smoothness`): least squares of ``smoothness = L0 + L1 ||grad F||`` over the measured
points with ``L0, L1 >= 0``, with their Pearson correlation (raw and of the logarithms).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from core.data.task import Task
from core.learner import Learner
from core.meta.inner import apply_rule, inner_objective, task_loss
from core.meta.outer_step import OuterStepChoice

__all__ = [
    "WEIGHTINGS",
    "ExtremeEigenvalues",
    "LocalSmoothness",
    "MeasureSettings",
    "ParameterLayout",
    "SmoothnessFit",
    "TrajectoryPoint",
    "UnrolledMAML",
    "extreme_eigenvalues",
    "fit_smoothness",
    "gradient_with_graph",
    "hessian_operator",
    "local_smoothness",
    "secant_along_gradient",
    "smoothness_along_trajectory",
]

Objective = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------- the meta-objective (S2)


@dataclass(frozen=True)
class ParameterLayout:
    """Where each named tensor of a network lives in one flat vector (names in ``named_parameters`` order)."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, module: torch.nn.Module) -> ParameterLayout:
        named = list(module.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(p.shape for _, p in named))

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def unflatten(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views into ``x``, so that a function of them is a function of ``x`` for autograd."""
        if x.shape != (self.size,):
            raise ValueError(f"expected a flat vector of {self.size} entries, not the shape {tuple(x.shape)}")
        sizes = [math.prod(s) for s in self.shapes]
        return {n: part.view(s) for n, s, part in zip(self.names, self.shapes, torch.split(x, sizes))}


@dataclass(frozen=True, eq=False)
class UnrolledMAML:
    """The second-order MAML meta-objective (S2) of ``learner`` on a fixed batch of tasks, as a function of the flat
    vector of the backbone's initial weights (``layout``): ``F(x)``, differentiable to any order.

    The tasks run together under ``torch.func.vmap`` (as ``core.meta.batched`` does) through the inner step every
    path shares (``core.meta.inner``: the inner objective, proximal term included when the learner has one, and the
    rule's update). The learner's rule must have no meta-learned parameters (they would be a second outer variable
    held fixed here), and its head must be learned (``head_init = "learned"``, what sine regression uses).
    """

    learner: Learner
    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    inner_steps: int
    layout: ParameterLayout

    @classmethod
    def of(cls, learner: Learner, tasks: Sequence[Task], inner_steps: int) -> UnrolledMAML:
        """The objective on ``tasks`` (all with the same shapes), in the learner's dtype."""
        if inner_steps < 1:
            raise ValueError(f"the MAML objective needs at least one inner step, not {inner_steps}")
        if not tasks:
            raise ValueError("the MAML objective needs at least one task")
        if any(True for _ in learner.rule.parameters()):
            raise ValueError(
                f"rule {type(learner.rule).__name__} has meta-learned parameters; the smoothness is "
                "measured over the backbone's initial weights alone: use a rule without them (sgd)"
            )
        if learner.frozen_backbone:
            raise ValueError(
                "this learner re-initialises its backbone, so its initial weights are not an outer variable"
            )
        if any(t.query_y is None for t in tasks):
            raise ValueError("every task needs query targets: F is the query loss")
        dtype = next(learner.parameters()).dtype

        def stack(field: str) -> torch.Tensor:
            tensors = [getattr(t, field) for t in tasks]
            if len({tuple(x.shape) for x in tensors}) != 1:
                raise ValueError(f"every task must have the same {field} shape to run under vmap")
            stacked = torch.stack(tensors)
            return stacked.to(dtype) if stacked.is_floating_point() else stacked

        return cls(
            learner,
            stack("support_x"),
            stack("support_y"),
            stack("query_x"),
            stack("query_y"),
            inner_steps,
            ParameterLayout.of(learner.backbone),
        )

    def initial_point(self) -> torch.Tensor:
        """The learner's current initial weights as a flat vector (a detached copy)."""
        return self.layout.flatten({n: p.detach() for n, p in self.learner.backbone.named_parameters()}).clone()

    def task_losses(self, x: torch.Tensor) -> torch.Tensor:
        """``L_query,i(y_T,i(x))`` per task (S2), shape ``(m,)``."""
        learner, inner = self.learner, self.learner.inner_names
        params = self.layout.unflatten(x)

        def run(weights: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(learner.backbone, weights, (inputs,))

        def one_task(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
            fast = dict(params)
            anchor = {n: params[n] for n in inner}  # the proximal term's centre is x itself

            def support_objective(adapted: dict[str, torch.Tensor]) -> torch.Tensor:
                loss = task_loss(learner, run({**fast, **adapted}, sx), sy)
                return inner_objective(learner, loss, adapted, anchor)

            for step_index in range(self.inner_steps):
                # torch.func's gradient (autograd.grad cannot run under vmap); it stays on the graph of x, so the
                # meta-gradient is second order.
                grads = grad(support_objective)({n: fast[n] for n in inner})
                fast, _ = apply_rule(learner, fast, grads, step_index, {})
            return task_loss(learner, run(fast, qx), qy)

        return vmap(one_task)(self.support_x, self.support_y, self.query_x, self.query_y)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``F(x)``: the mean query loss after the inner loop (S2)."""
        return self.task_losses(x).mean()


# ------------------------------------------------------------------------------------------------- the measurement


def gradient_with_graph(objective: Objective, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_leaf, F(x), grad F(x))``, the gradient still on the graph of ``x_leaf`` (a grad-tracking copy of ``x``) so
    that ``d/dx <grad F, v> = hessian F(x) v`` is one more backward pass."""
    leaf = x.detach().clone().requires_grad_()
    with torch.enable_grad():
        value = objective(leaf)
        if value.shape != ():
            raise ValueError(f"the objective must return a scalar, not the shape {tuple(value.shape)}")
        (gradient,) = torch.autograd.grad(value, leaf, create_graph=True)
    if not (torch.isfinite(value) and torch.all(torch.isfinite(gradient))):
        raise FloatingPointError(
            f"the objective or its gradient is not finite here (F = {float(value):g}): the inner loop diverged"
        )
    return leaf, value, gradient


def hessian_operator(leaf: torch.Tensor, gradient: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> hessian F(x) v`` from :func:`gradient_with_graph`'s ``leaf`` and ``gradient``: the backward pass of
    ``<grad F, v>`` (the vector-Jacobian product of ``grad F``, which is ``H^T v = H v``), keeping the graph for
    the next product."""

    def product(v: torch.Tensor) -> torch.Tensor:
        (hv,) = torch.autograd.grad(gradient, leaf, grad_outputs=v, retain_graph=True)
        return hv.detach()

    return product


@dataclass(frozen=True)
class ExtremeEigenvalues:
    """Both ends of a symmetric operator's spectrum by Lanczos, with the certificate of the dominant one.

    ``largest`` and ``smallest`` are the extreme Ritz values (each within the spectrum's range, so ``spectral_norm``
    never exceeds the true one in exact arithmetic); ``residual = ||H u - theta u||`` for the dominant Ritz pair
    (``theta`` the one of larger magnitude, ``||u|| = 1``), measured with an extra product: some eigenvalue of ``H``
    lies within ``residual`` of ``theta``. ``converged``: ``residual <= tolerance * |theta|``, or Lanczos found an
    invariant subspace (then the Ritz values are eigenvalues, to rounding).
    """

    largest: float
    smallest: float
    residual: float
    steps: int
    converged: bool

    @property
    def spectral_norm(self) -> float:
        return max(abs(self.largest), abs(self.smallest))


def extreme_eigenvalues(
    operator: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    *,
    tolerance: float = 1e-6,
    min_steps: int = 20,
    max_steps: int = 80,
) -> ExtremeEigenvalues:
    """The extreme eigenvalues of the symmetric ``operator`` (``v -> H v``) by Lanczos from ``start``.

    Full reorthogonalisation (each new vector is projected off all the previous ones, twice: "twice is enough",
    Parlett, section 6.9) keeps the basis orthogonal in floating point, so no spurious copies of converged Ritz
    values appear. Stops when the dominant Ritz pair's estimated residual ``|beta_j s_j|`` is below
    ``tolerance * |theta|`` after at least ``min_steps`` products (then measures it), at an invariant subspace, or
    after ``max_steps`` products. The floor ``min_steps``: a Ritz pair can converge to an inner eigenvalue first; the
    extreme ones are found in a Krylov space of a few tens of vectors (Kaniel-Paige-Saad bounds, Parlett ch. 12).
    """
    if not (tolerance > 0 and 1 <= min_steps <= max_steps):
        raise ValueError(
            f"need tolerance > 0 and 1 <= min_steps <= max_steps, not {tolerance}, {min_steps}, {max_steps}"
        )
    norm = torch.linalg.vector_norm(start)
    if not (torch.isfinite(norm) and norm > 0):
        raise ValueError("the Lanczos start vector must be finite and nonzero")
    dim = start.numel()
    basis = [start / norm]
    alphas: list[float] = []
    betas: list[float] = []
    invariant = False
    while True:
        w = operator(basis[-1])
        alphas.append(float(basis[-1] @ w))
        stacked = torch.stack(basis)
        for _ in range(2):
            w = w - stacked.T @ (stacked @ w)
        beta = float(torch.linalg.vector_norm(w))
        tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        ritz, vectors = np.linalg.eigh(tridiagonal)
        dominant = int(np.argmax(np.abs(ritz)))
        theta = float(ritz[dominant])
        # An invariant subspace: beta is rounding next to the operator's scale (its largest Ritz value).
        invariant = len(basis) == dim or beta <= 1e-12 * max(abs(theta), np.finfo(float).tiny)
        estimated = abs(beta * vectors[-1, dominant])
        if invariant or (estimated <= tolerance * abs(theta) and len(basis) >= min_steps) or len(basis) == max_steps:
            break
        betas.append(beta)
        basis.append(w / beta)
    steps = len(basis)
    ritz_vector = torch.stack(basis).T @ torch.as_tensor(vectors[:, dominant], dtype=start.dtype)
    ritz_vector = ritz_vector / torch.linalg.vector_norm(ritz_vector)
    residual = float(torch.linalg.vector_norm(operator(ritz_vector) - theta * ritz_vector))
    return ExtremeEigenvalues(
        float(ritz[-1]), float(ritz[0]), residual, steps, invariant or residual <= tolerance * abs(theta)
    )


def secant_along_gradient(objective: Objective, x: torch.Tensor, gradient: torch.Tensor, step: float) -> float:
    """``||grad F(x + h d) - grad F(x)|| / h``, ``d = grad F(x) / ||grad F(x)||``, ``h = step`` (module docstring)."""
    if not step > 0:
        raise ValueError(f"the secant step must be positive, not {step}")
    g = gradient.detach()
    norm = torch.linalg.vector_norm(g)
    if not norm > 0:
        raise ValueError("the secant is taken along the gradient, which is zero here")
    _, _, moved = gradient_with_graph(objective, x.detach() + step * g / norm)
    return float(torch.linalg.vector_norm(moved.detach() - g)) / step


@dataclass(frozen=True)
class LocalSmoothness:
    """Both sides of (S1) at one point, and the measurement's own certificate (:class:`ExtremeEigenvalues`)."""

    loss: float
    meta_grad_norm: float
    smoothness: float  # ||hessian F(x)||_2, the dominant Ritz value's magnitude
    largest_eigenvalue: float
    smallest_eigenvalue: float
    residual: float
    lanczos_steps: int
    converged: bool
    secant_along_gradient: float


@dataclass(frozen=True)
class MeasureSettings:
    """How :func:`local_smoothness` measures: Lanczos's relative residual ``tolerance`` and its step bounds
    (:func:`extreme_eigenvalues`), and the secant's step ``secant_step * max(1, ||x||)``."""

    tolerance: float = 1e-6
    min_steps: int = 20
    max_steps: int = 80
    secant_step: float = 1e-5

    def __post_init__(self) -> None:
        if not (self.tolerance > 0 and 1 <= self.min_steps <= self.max_steps and self.secant_step > 0):
            raise ValueError(f"need tolerance > 0, 1 <= min_steps <= max_steps and secant_step > 0, not {self}")


def local_smoothness(
    objective: Objective, x: torch.Tensor, settings: MeasureSettings = MeasureSettings(), seed: int = 0
) -> LocalSmoothness:
    """Measure (S1) at ``x``: ``F(x)``, ``||grad F(x)||``, the meta-Hessian's spectral norm and its extreme
    eigenvalues (Lanczos from a Gaussian vector drawn with ``seed``), and the secant along the gradient."""
    leaf, value, gradient = gradient_with_graph(objective, x)
    hessian_vector_product = hessian_operator(leaf, gradient)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(x.numel(), generator=generator, dtype=torch.float64).to(x.dtype)
    spectrum = extreme_eigenvalues(
        hessian_vector_product,
        start,
        tolerance=settings.tolerance,
        min_steps=settings.min_steps,
        max_steps=settings.max_steps,
    )
    step = settings.secant_step * max(1.0, float(torch.linalg.vector_norm(x)))
    secant = secant_along_gradient(objective, x, gradient, step)
    return LocalSmoothness(
        loss=float(value.detach()),
        meta_grad_norm=float(torch.linalg.vector_norm(gradient.detach())),
        smoothness=spectrum.spectral_norm,
        largest_eigenvalue=spectrum.largest,
        smallest_eigenvalue=spectrum.smallest,
        residual=spectrum.residual,
        lanczos_steps=spectrum.steps,
        converged=spectrum.converged,
        secant_along_gradient=secant,
    )


@dataclass(frozen=True)
class TrajectoryPoint:
    """(S1) measured at one outer iteration of one meta-training trajectory, and where: the point ``x``."""

    trajectory: str
    iteration: int
    measured: LocalSmoothness
    x: torch.Tensor


def smoothness_along_trajectory(
    objective: Objective,
    start: torch.Tensor,
    outer_step: OuterStepChoice,
    lr: float,
    iterations: int,
    every: int,
    label: str,
    settings: MeasureSettings = MeasureSettings(),
    seed: int = 0,
) -> list[TrajectoryPoint]:
    """Meta-train ``x`` from ``start`` with exact meta-gradients of ``objective`` and ``outer_step`` at the rate ``lr``
    (``core.meta.outer_step``: the same steps training takes) for ``iterations`` outer steps, measuring (S1) with
    :func:`local_smoothness` before the first step and after every ``every``-th one.

    The same Lanczos start (``seed``) at every point, so that the points differ only by where they are.
    """
    if iterations < 0 or every < 1:
        raise ValueError(f"need iterations >= 0 and every >= 1, not {iterations}, {every}")
    x = start.detach().clone().requires_grad_()
    step = outer_step.build([x], lr)
    points = []
    for iteration in range(iterations + 1):
        if iteration % every == 0:
            here = x.detach().clone()
            points.append(TrajectoryPoint(label, iteration, local_smoothness(objective, here, settings, seed), here))
        if iteration == iterations:
            break
        step.zero_grad()
        with torch.enable_grad():
            (x.grad,) = torch.autograd.grad(objective(x), x)
        step.step()
    return points


# -------------------------------------------------------------------------------------------------------- the fit

WEIGHTINGS = ("log", "absolute")
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class SmoothnessFit:
    """(S1) as an equality, ``smoothness = L0 + L1 ||grad F||``, fitted by least squares over the points with
    ``L0, L1 >= 0`` (they are the constants of a bound: a negative one would describe no smoothness).

    ``weighting``: ``"log"`` minimises ``sum_i (log(L0 + L1 n_i) - log s_i)^2``, so that a point off by a factor
    counts the same wherever it lies (the points span orders of magnitude); ``"absolute"`` minimises
    ``sum_i (L0 + L1 n_i - s_i)^2``, which the largest points decide. ``correlation``: Pearson's of ``(n_i, s_i)``;
    ``log_correlation`` and ``log_slope``: Pearson's and the least-squares slope of ``(log n_i, log s_i)`` (a slope of 1
    is ``s`` growing in proportion to ``n``). ``ratio_range``: the smallest and largest ``s_i / (L0 + L1 n_i)``, how
    far the points lie from the line.
    """

    L0: float
    L1: float
    weighting: str
    correlation: float
    log_correlation: float
    log_slope: float
    ratio_range: tuple[float, float]
    points: int


def _absolute_fit(norms: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """``argmin sum (L0 + L1 n - s)^2`` over ``L0, L1 >= 0``.

    The objective is a convex quadratic: its minimiser over the quadrant is the unconstrained one when that is
    feasible, and otherwise lies on an edge (one coefficient 0, the other its one-column least squares clamped at 0),
    so the best of the feasible candidates is the answer.
    """
    design = np.stack([np.ones_like(norms), norms], axis=1)
    candidates = [np.linalg.lstsq(design, values, rcond=None)[0]]
    for kept in range(2):
        column = design[:, kept]
        c = np.zeros(2)
        c[kept] = max(0.0, float(column @ values) / float(column @ column))
        candidates.append(c)
    feasible = [c for c in candidates if np.all(c >= 0)]
    best = min(feasible, key=lambda c: float(np.sum((design @ c - values) ** 2)))
    return float(best[0]), float(best[1])


def _log_fit(norms: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """``argmin sum (log(L0 + L1 n) - log s)^2`` over ``L0, L1 >= 0``, through the ratio ``r = L0 / L1``.

    ``log(L0 + L1 n) = log L1 + log(r + n)``: for a fixed ``r`` the best ``log L1`` is the mean of
    ``log s - log(r + n)``, and what is left is a function of ``r`` alone, searched on a log grid of ``r`` spanning
    twelve decades either side of the norms, with ``r = 0`` (no ``L0``) and ``r = infinity`` (no ``L1``: ``L0`` the
    geometric mean of ``s``) as candidates, then refined by golden-section search between the best grid point's
    neighbours (to a relative ``1e-12`` in ``r``).
    """
    log_s = np.log(values)

    def residual(r: float) -> tuple[float, float]:
        shifted = np.log(r + norms)
        log_l1 = float(np.mean(log_s - shifted))
        return float(np.sum((log_l1 + shifted - log_s) ** 2)), log_l1

    grid = np.geomspace(1e-12 * norms.min(), 1e12 * norms.max(), 2401)
    scores = [residual(r)[0] for r in grid]
    best = int(np.argmin(scores))
    low, high = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, grid.size - 1)])
    while high - low > 1e-12:
        a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
        if residual(math.exp(a))[0] <= residual(math.exp(b))[0]:
            high = b
        else:
            low = a
    r = math.exp(0.5 * (low + high))
    candidates = {(r * math.exp(residual(r)[1]), math.exp(residual(r)[1])): residual(r)[0]}
    candidates[(0.0, math.exp(residual(0.0)[1]))] = residual(0.0)[0]
    constant = float(np.sum((np.mean(log_s) - log_s) ** 2))
    candidates[(math.exp(float(np.mean(log_s))), 0.0)] = constant
    return min(candidates, key=candidates.__getitem__)


def fit_smoothness(
    meta_grad_norms: Sequence[float], smoothness: Sequence[float], weighting: str = "log"
) -> SmoothnessFit:
    norms = np.asarray(meta_grad_norms, dtype=float)
    values = np.asarray(smoothness, dtype=float)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    if norms.shape != values.shape or norms.ndim != 1:
        raise ValueError(f"need two equally long lists, not the shapes {norms.shape} and {values.shape}")
    if norms.size < 3:
        raise ValueError(f"a line and its correlation need at least three points, not {norms.size}")
    if not (np.all(np.isfinite(norms)) and np.all(np.isfinite(values)) and np.all(norms > 0) and np.all(values > 0)):
        raise ValueError("every meta-gradient norm and smoothness must be finite and positive")
    if np.ptp(norms) == 0 or np.ptp(values) == 0:
        raise ValueError("the points have a constant coordinate: no line or correlation is defined")
    l0, l1 = _log_fit(norms, values) if weighting == "log" else _absolute_fit(norms, values)
    ratio = values / (l0 + l1 * norms)
    log_n, log_s = np.log(norms), np.log(values)
    return SmoothnessFit(
        l0,
        l1,
        weighting,
        float(np.corrcoef(norms, values)[0, 1]),
        float(np.corrcoef(log_n, log_s)[0, 1]),
        float(np.polyfit(log_n, log_s, 1)[0]),
        (float(ratio.min()), float(ratio.max())),
        int(norms.size),
    )
