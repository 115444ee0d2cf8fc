"""The smoothness measurement of core/bilevel/smoothness.py against closed forms and dense eigen-solves (float64).

Eigenvalue checks use the measurement's own certificate: for a symmetric operator ``H`` and a unit ``u``, some
eigenvalue lies within ``||H u - theta u||`` of ``theta`` (Parlett, theorem 4.5.1). A reference eigenpair
``(lambda, v)`` of a second computation of the same Hessian (closed form, dense autograd) is turned into a
certificate for the operator Lanczos used with one product, ``e = ||H v - lambda v||``; both refer to the dominant
eigenvalue, so ``|theta - lambda| <= residual + e``, every term measured, nothing assumed about rounding.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from core.bilevel import quadratic as qd
from core.bilevel.smoothness import (
    MeasureSettings,
    UnrolledMAML,
    extreme_eigenvalues,
    fit_smoothness,
    gradient_with_graph,
    hessian_operator,
    local_smoothness,
    smoothness_along_trajectory,
)
from core.data.sine import SineTaskFamily
from core.learner import Learner
from core.meta.estimator import LAST_STEP
from core.meta.outer_step import OuterStepChoice
from core.meta.unroll import unrolled_meta_grad
from tests.tolerances import float64_error_from_float32, gamma

F64 = torch.float64
LAM = 0.5
STEPS = 4
SPEC = qd.QuadraticFamilySpec(n=40, tasks=3, kappa=50.0, outer_kappa=5.0, seed=3)
RATE = 1 / (SPEC.smoothness + LAM)


@pytest.fixture(scope="module")
def tasks() -> qd.QuadraticTasks:
    return qd.make_family(SPEC)


def unrolled_quadratic(tasks: qd.QuadraticTasks, steps: int, rate: float, lam: float):
    """``F(x) = mean_i f_out,i(y_T,i(x))`` in torch: ``steps`` gradient steps on the proximal inner problem (R1 of
    core/bilevel/quadratic.py), the same iteration as :func:`qd.inner_solve`."""
    A, a, B, b = (torch.from_numpy(v) for v in (tasks.A, tasks.a, tasks.B, tasks.b))

    def objective(x: torch.Tensor) -> torch.Tensor:
        y = x.expand_as(a)
        for _ in range(steps):
            y = y - rate * (torch.einsum("mij,mj->mi", A, y - a) + lam * (y - x))
        r = y - b
        return 0.5 * torch.einsum("mi,mij,mj->m", r, B, r).mean()

    return objective


def unrolled_hessian(tasks: qd.QuadraticTasks, steps: int, rate: float, lam: float) -> np.ndarray:
    """The meta-Hessian of the unrolled quadratic objective in closed form.

    ``y_T,i(x)`` is affine in ``x`` with the Jacobian ``J_T,i`` (R3, symmetric), and ``f_out,i`` is quadratic with the
    Hessian ``B_i``, so ``F(x) = mean_i 1/2 (J_T,i x + c_i - b_i)^T B_i (J_T,i x + c_i - b_i)`` is quadratic with
    ``hessian F = mean_i J_T,i^T B_i J_T,i`` at every ``x``.
    """
    jacobian = qd.unrolled_jacobian(tasks, steps, rate, lam)
    hessian = np.mean(np.swapaxes(jacobian, -1, -2) @ tasks.B @ jacobian, axis=0)
    return 0.5 * (hessian + hessian.T)


def reference_certificate(operator, vector: np.ndarray, value: float) -> float:
    """``||H v - lambda v||`` with the operator Lanczos used, for a reference unit eigenvector ``v``."""
    v = torch.from_numpy(vector / np.linalg.norm(vector))
    return float(torch.linalg.vector_norm(operator(v) - value * v))


def dominant(eigenvalues: np.ndarray, eigenvectors: np.ndarray) -> tuple[float, np.ndarray]:
    i = int(np.argmax(np.abs(eigenvalues)))
    return float(eigenvalues[i]), eigenvectors[:, i]


# ------------------------------------------------------------------------------------------------ on a quadratic


def test_the_torch_objective_is_the_unrolled_quadratic(tasks):
    # The objective the other quadratic tests measure is R3's: its gradient is J_T^T grad f_out(y_T).
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(SPEC.n))
    _, value, gradient = gradient_with_graph(unrolled_quadratic(tasks, STEPS, RATE, LAM), x)
    assert math.isclose(float(value), float(qd.unrolled_loss(tasks, x.numpy(), STEPS, RATE, LAM)), rel_tol=1e-12)
    exact = qd.meta_gradient_mean(qd.unrolled_gradient(tasks, x.numpy(), STEPS, RATE, LAM))
    assert np.linalg.norm(gradient.detach().numpy() - exact) <= 1e-12 * np.linalg.norm(exact)


def test_the_measured_smoothness_is_the_closed_form_largest_eigenvalue(tasks):
    objective = unrolled_quadratic(tasks, STEPS, RATE, LAM)
    hessian = unrolled_hessian(tasks, STEPS, RATE, LAM)
    eigenvalues, eigenvectors = np.linalg.eigh(hessian)
    expected, vector = dominant(eigenvalues, eigenvectors)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(SPEC.n))
    # Fewer Lanczos steps than the dimension: the answer comes from the residual test, not an exhausted space.
    settings = MeasureSettings(tolerance=1e-8, min_steps=3, max_steps=SPEC.n - 1)
    measured = local_smoothness(objective, x, settings)
    leaf, _, gradient = gradient_with_graph(objective, x)
    operator = hessian_operator(leaf, gradient)
    assert measured.converged and measured.lanczos_steps < SPEC.n
    assert measured.residual <= settings.tolerance * measured.smoothness
    certificate = reference_certificate(operator, vector, expected)
    assert abs(measured.smoothness - abs(expected)) <= measured.residual + certificate
    # The other end of the spectrum is a Ritz value too: never outside [lambda_min, lambda_max] (interlacing; the
    # eigenvalues of the operator are within its certificate of the closed form's)
    assert eigenvalues[0] - certificate <= measured.smallest_eigenvalue <= measured.largest_eigenvalue
    assert measured.largest_eigenvalue <= eigenvalues[-1] + measured.residual + certificate
    # F is quadratic: the secant along the gradient is ||H d|| for any step, the gradient moving exactly by h H d.
    d = gradient.detach().numpy() / np.linalg.norm(gradient.detach().numpy())
    along = np.linalg.norm(hessian @ d)
    # grad F(x + h d) - grad F(x) is a difference of two gradients of magnitude ||g||, each rounded to about
    # gamma(40 n) ||g|| (a few n-long products per inner step): divided by h, that error stays below 1e-6 here.
    h = settings.secant_step * max(1.0, float(torch.linalg.vector_norm(x)))
    rounding = 2 * gamma(40 * SPEC.n, F64) * float(torch.linalg.vector_norm(gradient)) / h
    assert abs(measured.secant_along_gradient - along) <= rounding + 1e-12 * along


def test_the_trajectory_is_gradient_descent_and_is_measured_where_it_says(tasks):
    objective = unrolled_quadratic(tasks, STEPS, RATE, LAM)
    x0 = np.random.default_rng(2).standard_normal(SPEC.n)
    rate = 0.5
    points = smoothness_along_trajectory(
        objective, torch.from_numpy(x0), OuterStepChoice.parse("sgd"), rate, 6, 3, "gd", MeasureSettings(min_steps=3)
    )
    assert [(p.trajectory, p.iteration) for p in points] == [("gd", 0), ("gd", 3), ("gd", 6)]
    x = x0.copy()
    expected_norms = []
    for iteration in range(7):
        g = qd.meta_gradient_mean(qd.unrolled_gradient(tasks, x, STEPS, RATE, LAM))
        if iteration % 3 == 0:
            expected_norms.append(np.linalg.norm(g))
        x = x - rate * g
    # The same GD iteration in closed form (R3) and in torch: equal to rounding (relative 1e-12 covers 6 steps of
    # products of length n).
    assert np.allclose([p.measured.meta_grad_norm for p in points], expected_norms, rtol=1e-12, atol=0)
    # On a quadratic the smoothness is the same everywhere.
    values = [p.measured.smoothness for p in points]
    assert max(values) - min(values) <= 2 * max(p.measured.residual for p in points)


# ------------------------------------------------------------------------------------------------ Lanczos itself


def test_lanczos_finds_a_dominant_negative_eigenvalue_that_power_iteration_would_crawl_to():
    # |lambda_1| = 10 against lambda_2 = 9.9: power iteration's error shrinks by 0.99 a step. Lanczos sees both ends.
    spectrum = torch.cat([torch.tensor([-10.0, 9.9], dtype=F64), torch.linspace(-5.0, 5.0, 198, dtype=F64)])
    basis, _ = torch.linalg.qr(torch.randn(200, 200, generator=torch.Generator().manual_seed(0), dtype=F64))
    matrix = basis @ torch.diag(spectrum) @ basis.T
    found = extreme_eigenvalues(lambda v: matrix @ v, torch.ones(200, dtype=F64), tolerance=1e-10, max_steps=120)
    assert found.converged and found.steps < 120
    assert abs(found.smallest - -10.0) <= found.residual
    assert found.spectral_norm == abs(found.smallest)
    assert 9.9 - 1e-6 <= found.largest <= 9.9 + 1e-12  # a Ritz value never leaves the spectrum's range


def test_lanczos_refuses_a_zero_start_and_bad_bounds():
    with pytest.raises(ValueError, match="start vector"):
        extreme_eigenvalues(lambda v: v, torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="min_steps"):
        extreme_eigenvalues(lambda v: v, torch.ones(3, dtype=F64), min_steps=5, max_steps=2)
    with pytest.raises(ValueError, match="min_steps"):
        MeasureSettings(min_steps=0)


# ---------------------------------------------------------------------------------------- the MAML objective (S2)


def sine_objective(hidden: tuple[int, ...], tasks: int, steps: int, dtype: torch.dtype, lam: float = 0.0):
    learner = Learner(
        {"name": "mlp", "hidden": list(hidden), "n_classes": 1},
        {"name": "sgd", "lr": 0.05},
        task_kind="regression",
        seed=0,
        proximal_lambda=lam,
    ).to(dtype)
    batch = SineTaskFamily().batch(0, tasks, 5, 5, seed=0)
    return learner, batch, UnrolledMAML.of(learner, batch, steps)


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_the_objective_s_gradient_is_the_engine_s_second_order_maml_meta_gradient(lam):
    def difference(dtype: torch.dtype) -> tuple[float, float]:
        learner, batch, objective = sine_objective((8, 8), 3, 3, dtype, lam)
        batch = [
            dataclasses.replace(
                t, **{k: getattr(t, k).to(dtype) for k in ("support_x", "support_y", "query_x", "query_y")}
            )
            for t in batch
        ]
        engine = unrolled_meta_grad(learner, batch, LAST_STEP, 3, "learned", True, "loop")
        expected = objective.layout.flatten({n.removeprefix("backbone."): g for n, g in engine.grads.items()})
        _, value, gradient = gradient_with_graph(objective, objective.initial_point())
        assert math.isclose(float(value), engine.loss, rel_tol=1e-5 if dtype == torch.float32 else 1e-12)
        return float(torch.linalg.vector_norm(gradient.detach() - expected)), float(torch.linalg.vector_norm(expected))

    error32, magnitude = difference(torch.float32)
    error64, _ = difference(F64)
    assert error64 <= float64_error_from_float32(error32, magnitude)


def test_lanczos_on_a_tiny_network_matches_a_dense_eigen_solve():
    _, _, objective = sine_objective((6, 6), 4, 3, F64)
    x = objective.initial_point()
    dense = torch.autograd.functional.hessian(objective, x).numpy()
    dense = 0.5 * (dense + dense.T)
    eigenvalues, eigenvectors = np.linalg.eigh(dense)
    expected, vector = dominant(eigenvalues, eigenvectors)
    settings = MeasureSettings(tolerance=1e-10, min_steps=10, max_steps=x.numel() - 1)
    measured = local_smoothness(objective, x, settings)
    leaf, _, gradient = gradient_with_graph(objective, x)
    certificate = reference_certificate(hessian_operator(leaf, gradient), vector, expected)
    assert measured.converged and measured.lanczos_steps < x.numel()
    assert abs(measured.smoothness - abs(expected)) <= measured.residual + certificate
    ends = (measured.largest_eigenvalue, measured.smallest_eigenvalue)
    assert max(ends, key=abs) * expected > 0  # the dominant end, with its sign
    assert eigenvalues[0] < 0 < eigenvalues[-1]  # an indefinite meta-Hessian: what power iteration finds hard


def test_the_objective_refuses_what_it_cannot_measure():
    learner = Learner(
        {"name": "mlp", "hidden": [4], "n_classes": 1}, {"name": "meta_sgd", "lr": 0.01}, task_kind="regression", seed=0
    )
    batch = SineTaskFamily().batch(0, 2, 5, 5)
    with pytest.raises(ValueError, match="meta-learned parameters"):
        UnrolledMAML.of(learner, batch, 1)
    _, _, objective = sine_objective((4,), 2, 1, F64)
    with pytest.raises(ValueError, match="inner step"):
        UnrolledMAML.of(objective.learner, batch, 0)
    with pytest.raises(ValueError, match="flat vector"):
        objective(torch.zeros(3, dtype=F64))
    with pytest.raises(FloatingPointError, match="not finite"):
        gradient_with_graph(objective, torch.full((objective.layout.size,), float("nan"), dtype=F64))


# -------------------------------------------------------------------------------------------------------- the fit


@pytest.mark.parametrize("weighting", ["log", "absolute"])
def test_the_fit_recovers_l0_and_l1_from_points_on_the_line(weighting):
    norms = np.geomspace(0.1, 1e4, 12)
    fit = fit_smoothness(norms, 3.0 + 250.0 * norms, weighting)
    assert fit.points == 12 and fit.weighting == weighting
    # An exact line: the absolute fit is a linear least squares, exact to rounding (the design's condition number is
    # about 1e5); the log fit finds r = L0 / L1 by golden section to a relative 1e-12 and L1 in closed form from it.
    assert math.isclose(fit.L0, 3.0, rel_tol=1e-8) and math.isclose(fit.L1, 250.0, rel_tol=1e-10)
    assert fit.ratio_range[0] == pytest.approx(1.0, rel=1e-10) and fit.ratio_range[1] == pytest.approx(1.0, rel=1e-10)
    assert math.isclose(fit.correlation, 1.0, rel_tol=1e-12)


def test_each_weighting_minimises_its_own_residuals_and_the_logs_see_proportionality():
    norms = np.array([1.0, 2.0, 4.0, 1e6])
    values = np.array([10.0, 25.0, 40.0, 2e6])  # about 10 n on the small points, 2 n on the large one

    def squares(fit, weighting):
        if weighting == "log":
            return float(np.sum((np.log(fit.L0 + fit.L1 * norms) - np.log(values)) ** 2))
        return float(np.sum((fit.L0 + fit.L1 * norms - values) ** 2))

    fits = {w: fit_smoothness(norms, values, w) for w in ("log", "absolute")}
    for weighting, fit in fits.items():
        other = fits["absolute" if weighting == "log" else "log"]
        assert squares(fit, weighting) < squares(other, weighting)
        for d0, d1 in ((1e-3, 0.0), (-1e-3, 0.0), (0.0, 1e-6), (0.0, -1e-6)):
            moved = dataclasses.replace(fit, L0=fit.L0 * (1 + d0), L1=fit.L1 * (1 + d1))
            assert squares(moved, weighting) > squares(fit, weighting)
    assert fits["absolute"].L1 == pytest.approx(2.0, rel=1e-4)  # the large point decides the absolute fit
    line = fit_smoothness([1.0, 10.0, 100.0], [5.0, 50.0, 500.0])
    assert math.isclose(line.log_slope, 1.0, rel_tol=1e-12) and math.isclose(line.L1, 5.0, rel_tol=1e-12)


def test_a_negative_intercept_is_clamped_to_zero_with_the_slope_of_a_line_through_the_origin():
    norms = np.array([1.0, 2.0, 5.0, 10.0])
    values = 4.0 * norms - 2.0  # unconstrained: L0 = -2
    # With L0 = 0 each fit is closed form: sum(n s) / sum(n^2), and the geometric mean of s / n for the logs.
    absolute = fit_smoothness(norms, values, "absolute")
    assert absolute.L0 == 0.0 and math.isclose(absolute.L1, float(norms @ values) / float(norms @ norms), rel_tol=1e-14)
    ratio = values / (absolute.L1 * norms)
    assert absolute.ratio_range == (ratio.min(), ratio.max())
    logs = fit_smoothness(norms, values, "log")
    assert logs.L0 == 0.0 and math.isclose(logs.L1, math.exp(np.mean(np.log(values / norms))), rel_tol=1e-14)


def test_a_flat_cloud_is_fitted_by_a_constant():
    # s does not grow with n (it falls): the best line with L1 >= 0 is L1 = 0, L0 the geometric mean of s.
    norms, values = np.array([1.0, 10.0, 100.0]), np.array([8.0, 4.0, 2.0])
    fit = fit_smoothness(norms, values)
    assert fit.L1 == 0.0 and math.isclose(fit.L0, 4.0, rel_tol=1e-14)


def test_the_fit_refuses_bad_points():
    with pytest.raises(ValueError, match="three points"):
        fit_smoothness([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="equally long"):
        fit_smoothness([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        fit_smoothness([1.0, 2.0, float("nan")], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="constant"):
        fit_smoothness([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="weighting"):
        fit_smoothness([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "squared")
