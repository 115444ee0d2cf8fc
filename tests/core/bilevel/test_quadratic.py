"""The quadratic bilevel study: every estimator against its own closed form and the exact meta-gradient (float64).

The equation labels (R1)-(R6) are those of core/bilevel/quadratic.py's docstring, from shared/reference.md, "The
bilevel view". Float tolerances are rounding-error bounds (tests/tolerances.py's ``gamma``): a chain of ``k``
rounded operations is off by at most ``gamma(k)`` times the magnitudes it combines; a matrix-vector product with
``|A|`` is bounded through ``|| |A| ||_2 <= ||A||_F``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.bilevel import quadratic as qd
from core.meta.outer_step import OuterStepChoice
from tests.tolerances import central_difference_error, gamma, unit_roundoff

F64 = torch.float64
U = unit_roundoff(F64)
LAM = 0.5
SPEC = qd.QuadraticFamilySpec(n=6, tasks=3, kappa=50.0, outer_kappa=5.0, seed=3)
RATE = 1 / (SPEC.smoothness + LAM)  # q = 1 - rate (mu + lambda) = 0.653: a stable inner loop (rate < 2/(L + lambda))


@pytest.fixture(scope="module")
def tasks() -> qd.QuadraticTasks:
    return qd.make_family(SPEC)


def _point(seed: int, n: int = SPEC.n) -> np.ndarray:
    # Multiples of 2^-20 below 2 in magnitude: x +- 1 (the finite-difference steps below) are then exact.
    return np.round(np.random.default_rng(seed).standard_normal(n) * 2**20) / 2**20


def _fro(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.norm(matrix, axis=(-2, -1))


def _norm(v: np.ndarray) -> np.ndarray:
    return np.linalg.norm(v, axis=-1)


def _loop_roundoff(tasks: qd.QuadraticTasks, x: np.ndarray, steps: int, delta: float = 0.0) -> np.ndarray:
    """Per task, a bound on ``||fl(y_T) - y_T||`` for :func:`qd.inner_solve`.

    Every iterate lies within ``||x - y*_delta||`` of ``y*_delta`` (the map contracts), so its norm is at most
    ``s``. One step ``y - rate (A (y - a) + delta B (y - b) + lambda (y - x))`` is a chain of at most ``2n + 8``
    operations per entry (two length-``n`` dot products, the differences, scalings and sums), so it adds at most
    ``gamma(2n + 8)`` times the magnitudes it combines; the contraction ``M_delta`` damps the error of a step by
    ``q`` per later step, hence the factor ``sum_{t<T} q^t <= min(T, 1/(1-q))``.
    """
    n = tasks.n
    q = qd.contraction_factor(tasks, RATE, LAM, delta)
    k = tasks.A + LAM * np.eye(n) + delta * tasks.B
    rhs = qd._mv(tasks.A, tasks.a) + delta * qd._mv(tasks.B, tasks.b) + LAM * x
    y_star = np.linalg.solve(k, rhs[..., None])[..., 0]
    s = _norm(y_star) + _norm(x - y_star)
    magnitude = s + RATE * (_fro(tasks.A) * (s + _norm(tasks.a)) + abs(delta) * _fro(tasks.B) * (s + _norm(tasks.b))
                            + LAM * (s + _norm(x)))
    return gamma(2 * n + 8, F64) * magnitude * np.minimum(steps, 1 / (1 - q))


def _closed_form_roundoff(tasks: qd.QuadraticTasks, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per task, bounds on the rounding of ``y*`` and of the exact meta-gradient (R1, R2 through the eigenvectors).

    ``A`` is ``Q diag(e) Q^T`` rounded and ``Q`` (QR: ``n`` Householder reflections of length ``n``) is orthogonal
    to within ``gamma(n^2)``; ``y* = Q [(Q^T (A a + lambda x)) / (e + lambda)]`` is four chains of at most
    ``n + 3`` operations per entry, on magnitudes bounded through ``|| |Q| ||_2^2 <= n`` and
    ``||K^-1|| = 1 / (mu + lambda)``. The meta-gradient ``lambda K^-1 B (y* - b)`` adds the same again, on
    ``||B||_F (||y*|| + ||b||)``, and carries ``y*``'s error through ``lambda K^-1 B`` (``||lambda K^-1|| <= 1``).
    """
    n = tasks.n
    chain = (gamma(n**2, F64) + 4 * gamma(n + 3, F64)) * n
    y_star = qd.inner_solution(tasks, x, LAM)
    k_min = tasks.eigenvalues[:, 0] + LAM
    y_err = chain * ((_fro(tasks.A) * _norm(tasks.a) + LAM * _norm(x)) / k_min + _norm(y_star))
    g_err = _fro(tasks.B) * (y_err + chain * (_norm(y_star) + _norm(tasks.b)))
    return y_err, g_err


def _maml_roundoff(tasks: qd.QuadraticTasks, x: np.ndarray, steps: int) -> np.ndarray:
    """Per task, a bound on the rounding of :func:`qd.maml`.

    The backward pass is ``T`` steps of ``v <- v - rate (A v + lambda v)`` (at most ``2n + 6`` operations per entry
    on magnitudes ``(1 + rate (||A||_F + lambda)) ||v||``, with ``||v|| <= ||B||_F ||y_T - b||`` since
    ``||M|| <= 1``), each error reaching ``x`` with a weight at most ``1 + rate lambda T``, plus the sum of ``T``
    terms; the error of ``y_T`` enters through ``B`` with the same weight.
    """
    n = tasks.n
    v_norm = _fro(tasks.B) * _norm(qd.inner_solve(tasks, x, steps, RATE, LAM) - tasks.b)
    weight = 1 + RATE * LAM * steps
    return ((steps * gamma(2 * n + 6, F64) * (1 + RATE * (_fro(tasks.A) + LAM)) + gamma(steps + 1, F64))
            * weight * v_norm + _fro(tasks.B) * _loop_roundoff(tasks, x, steps) * weight)


def _limit_roundoff(tasks: qd.QuadraticTasks, x: np.ndarray, steps: int) -> np.ndarray:
    """Per task, a bound on the rounding of :func:`qd.fo_b_maml_limit` (R6).

    ``T`` steps of ``z <- z - rate (A z + lambda z + B (y_t - b))``: at most ``2n + 8`` operations per entry on
    magnitudes ``(1 + rate (||A||_F + lambda)) ||z|| + rate ||B||_F (s + ||b||)``, with
    ``||z|| <= rate T ||B||_F (s + ||b||)`` (``s`` bounds the iterates, ``||M|| <= 1``), plus the error of each
    ``y_t`` through ``rate B``; all times ``lambda``.
    """
    n = tasks.n
    y_star = qd.inner_solution(tasks, x, LAM)
    s = _norm(y_star) + _norm(x - y_star) + _norm(tasks.b)
    z_norm = RATE * steps * _fro(tasks.B) * s
    per_step = gamma(2 * n + 8, F64) * ((1 + RATE * (_fro(tasks.A) + LAM)) * z_norm + RATE * _fro(tasks.B) * s)
    return LAM * steps * (per_step + RATE * _fro(tasks.B) * _loop_roundoff(tasks, x, steps))


def _fo_b_roundoff(tasks: qd.QuadraticTasks, x: np.ndarray, steps: int, name: str, delta: float) -> np.ndarray:
    """Per task, a bound on the rounding of a FO-B-MAML estimate: ``lambda (2 ||dy||) / delta`` (forward) or
    ``/ (2 delta)`` (symmetric), ``dy`` the rounding of each ``y_T`` (``_loop_roundoff``), with the final
    subtraction, division and product (``gamma(3)``)."""
    loops = np.max([_loop_roundoff(tasks, x, steps, s) for s in (-delta, 0.0, delta)], axis=0)
    return LAM * 2 * loops / (delta if name == "fo_b_maml" else 2 * delta) * (1 + gamma(3, F64))


# ------------------------------------------------------------------------------------------- the inner problem


def test_the_generator_sets_the_condition_number_and_is_seeded(tasks):
    eig = np.linalg.eigvalsh(tasks.A)
    # A is Q diag(e) Q^T rounded (chains of n + 2 operations on magnitudes || |Q| ||^2 ||A|| <= n ||A||_F), Q is
    # orthogonal to within gamma(n^2) (n Householder reflections of length n), and eigvalsh is backward stable
    # (its error of the same gamma(n^2) ||A||_F order): by Weyl's inequality each computed eigenvalue is within the
    # sum of these perturbations of the set ones, [L/kappa, ..., L].
    n = SPEC.n
    tol = (2 * gamma(n**2, F64) + n * gamma(n + 2, F64)) * _fro(tasks.A)[:, None]
    assert np.all(np.abs(eig - tasks.eigenvalues) <= tol)
    # L / (L / kappa): two roundings, so kappa is met to gamma(2)
    assert np.allclose(tasks.eigenvalues[:, -1] / tasks.eigenvalues[:, 0], SPEC.kappa, rtol=gamma(2, F64), atol=0)
    again = qd.make_family(SPEC)
    assert np.array_equal(again.A, tasks.A) and np.array_equal(again.b, tasks.b)
    other = qd.make_family(qd.QuadraticFamilySpec(n=6, tasks=3, kappa=50.0, outer_kappa=5.0, seed=4))
    assert not np.array_equal(other.A, tasks.A)
    assert not np.array_equal(tasks.A[0], tasks.A[1])  # each task its own eigenvectors
    identity = qd.make_family(qd.QuadraticFamilySpec(n=4, tasks=2, outer_kappa=1.0, outer_smoothness=2.0))
    assert np.array_equal(identity.B, np.broadcast_to(2 * np.eye(4), (2, 4, 4)))


def test_the_closed_form_inner_solution_is_stationary(tasks):
    x = _point(0)
    y_star = qd.inner_solution(tasks, x, LAM)
    residual = _norm(qd.inner_gradient(tasks, x, y_star, LAM))
    # The residual K y* - (A a + lambda x) is zero in exact arithmetic; in floating point it is at most ||K|| times
    # the rounding of y* (_closed_form_roundoff) plus its own: a chain of n + 3 operations per entry on magnitudes
    # ||A||_F (||y*|| + ||a||) + lambda (||y*|| + ||x||).
    n = tasks.n
    y_err, _ = _closed_form_roundoff(tasks, x)
    tol = ((tasks.eigenvalues[:, -1] + LAM) * y_err
           + gamma(n + 3, F64) * (_fro(tasks.A) * (_norm(y_star) + _norm(tasks.a)) + LAM * (_norm(y_star) + _norm(x))))
    assert np.all(residual <= tol), (residual, tol)
    # ... and the stationarity fails for a point that is not y* (the check can fail).
    assert np.all(_norm(qd.inner_gradient(tasks, x, y_star + 1e-6, LAM)) > 10 * tol)


def test_inner_steps_converge_at_the_rate_of_the_contraction_factor(tasks):
    x = _point(1)
    y_star = qd.inner_solution(tasks, x, LAM)
    q = qd.contraction_factor(tasks, RATE, LAM)
    # rate = 1 / (L + lambda) puts every 1 - rate (e + lambda) in [0, 1): the largest is the smallest eigenvalue's
    assert np.all(q < 1) and np.array_equal(q, 1 - RATE * (tasks.eigenvalues[:, 0] + LAM))
    # The slowest direction: the eigenvector whose factor |1 - rate (e_i + lambda)| is q. y_T - y* = M^T (x - y*)
    # (R3), so q^T |<v, x - y*>| <= ||y_T - y*|| <= q^T ||x - y*||: the rate is exactly q, not only bounded by it.
    worst = np.argmax(np.abs(1 - RATE * (tasks.eigenvalues + LAM)), axis=-1)
    v = tasks.eigenvectors[np.arange(tasks.size), :, worst]
    start = x - y_star
    y_star_error, _ = _closed_form_roundoff(tasks, x)
    for steps in (1, 5, 20, 50):
        error = _norm(qd.inner_solve(tasks, x, steps, RATE, LAM) - y_star)
        slack = _loop_roundoff(tasks, x, steps) + y_star_error
        assert np.all(error <= q**steps * _norm(start) + slack), steps
        assert np.all(error >= q**steps * np.abs(np.sum(v * start, axis=-1)) - slack), steps
        # the closed form y* + M^T (x - y*) is the same iterate
        closed = qd.unrolled_iterate(tasks, x, steps, RATE, LAM)
        assert np.all(_norm(closed - qd.inner_solve(tasks, x, steps, RATE, LAM)) <= 2 * slack), steps


# ------------------------------------------------------------------------------------------------------ MAML


def test_maml_is_the_gradient_of_the_unrolled_objective(tasks):
    steps = 7
    x = _point(2)
    n, m = tasks.n, tasks.size
    grad = qd.meta_gradient_mean(qd.maml(tasks, x, steps, RATE, LAM))
    # y_T is affine in x (R3) and f_out quadratic, so phi(x) = mean f_out(y_T(x)) is a quadratic: its central
    # difference (phi(x + h e_j) - phi(x - h e_j)) / 2h has no truncation error for any h. Only rounding counts, and
    # it shrinks as 1/h, so h = 1 (the problem's own scale; x +- 1 is exact, see _point). Each phi is off by at
    # most ||B r|| ||dy_T|| + gamma(n + 3) ||B||_F ||r||^2 / 2 (r = y_T - b, the quadratic form a chain of n + 3
    # operations), so the difference quotient by at most twice that over 2h.
    h = 1.0
    central = np.empty(n)
    bound = np.empty(n)
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        values, errors = [], []
        for point in (x + e, x - e):
            y_t = qd.inner_solve(tasks, point, steps, RATE, LAM)
            r_norm = _norm(y_t - tasks.b)
            per_task = (_norm(qd.outer_gradient(tasks, y_t)) * _loop_roundoff(tasks, point, steps)
                        + gamma(n + 3, F64) * _fro(tasks.B) * r_norm**2 / 2)
            values.append(qd.unrolled_loss(tasks, point, steps, RATE, LAM))
            errors.append(np.mean(per_task) + gamma(m, F64) * np.mean(qd.outer_task_loss(tasks, y_t)))
        central[j] = (values[0] - values[1]) / (2 * h)
        bound[j] = (errors[0] + errors[1]) / (2 * h)
    maml_bound = np.mean(_maml_roundoff(tasks, x, steps))  # the mean over tasks only averages these bounds
    assert np.all(np.abs(grad - central) <= bound + maml_bound), (np.abs(grad - central), bound + maml_bound)
    # the same gradient in closed form, J_T^T grad f_out(y_T) with J_T = M^T + lambda K^-1 (I - M^T)
    closed = qd.meta_gradient_mean(qd.unrolled_gradient(tasks, x, steps, RATE, LAM))
    # closed form: y_T = y* + M^T (x - y*) and J_T, each through the eigenvectors like y* (_closed_form_roundoff),
    # the error of y_T reaching the gradient through J_T^T B (||J_T|| <= 1 here, every factor lying in [0, 1])
    y_err, _ = _closed_form_roundoff(tasks, x)
    chain = (gamma(n**2, F64) + 4 * gamma(n + 3, F64)) * n
    v_norm = _fro(tasks.B) * _norm(qd.unrolled_iterate(tasks, x, steps, RATE, LAM) - tasks.b)
    closed_bound = maml_bound + np.mean(_fro(tasks.B) * (2 * y_err + chain * _norm(x)) + 2 * chain * v_norm)
    assert np.all(np.abs(grad - closed) <= closed_bound)
    # ... and it is not FO-MAML's gradient (the Jacobian matters here)
    assert np.max(np.abs(grad - qd.meta_gradient_mean(qd.fomaml(tasks, x, steps, RATE, LAM)))) > 1e3 * np.max(bound)


def test_maml_approaches_the_exact_meta_gradient_as_the_inner_steps_grow(tasks):
    x = _point(3)
    exact = qd.exact_meta_gradient(tasks, x, LAM)
    y_star = qd.inner_solution(tasks, x, LAM)
    q = qd.contraction_factor(tasks, RATE, LAM)
    b_norm = np.linalg.norm(tasks.B, ord=2, axis=(-2, -1))
    errors = []
    for steps in (1, 5, 20, 50):
        error = _norm(qd.maml(tasks, x, steps, RATE, LAM) - exact)
        # maml - exact = M^T (I - lambda K^-1) grad f_out(y_T) + lambda K^-1 B M^T (x - y*), and
        # ||I - lambda K^-1||, ||lambda K^-1|| <= 1: at most q^T ||B|| (||y_T - b|| + ||x - y*||).
        y_t = qd.inner_solve(tasks, x, steps, RATE, LAM)
        predicted = q**steps * b_norm * (_norm(y_t - tasks.b) + _norm(x - y_star))
        slack = _maml_roundoff(tasks, x, steps) + _closed_form_roundoff(tasks, x)[1]
        assert np.all(error <= predicted + slack), steps
        errors.append(error)
    errors = np.array(errors)
    assert np.all(np.diff(errors, axis=0) < 0)
    assert np.all(errors[-1] / _norm(exact) < 1e-7)  # q^50 = 5.8e-10


# ------------------------------------------------------------------------------------------------------ iMAML


def test_imaml_with_n_cg_steps_is_the_implicit_gradient_and_fewer_steps_are_worse(tasks):
    steps = 10
    x = _point(4)
    n = tasks.n
    g = qd.outer_gradient(tasks, qd.inner_solve(tasks, x, steps, RATE, LAM))
    q = tasks.eigenvectors
    target = qd._mv(q, LAM * qd._mv(np.swapaxes(q, -1, -2), g) / (tasks.eigenvalues + LAM))
    # n CG steps solve an n-dimensional system exactly in exact arithmetic. In floating point a CG step is a chain
    # of at most 2n + 8 operations per entry (a matrix-vector product, two dot products, the step sizes, three
    # updates), so k = n steps have a backward error of at most gamma(n (2n + 8)), which the condition number of
    # S = I + A/lambda turns into the forward error; the reference (through the eigenvectors, two length-n products
    # with || |Q| ||^2 <= n, and Q orthogonal to gamma(n^2)) adds its own.
    cond = (1 + tasks.eigenvalues[:, -1] / LAM) / (1 + tasks.eigenvalues[:, 0] / LAM)
    tol = cond * gamma(n * (2 * n + 8), F64) + n * (gamma(n**2, F64) + 2 * gamma(n + 2, F64))
    errors = np.array([qd.relative_error(qd.imaml(tasks, x, steps, RATE, LAM, k), target) for k in range(n + 1)])
    assert np.all(errors[n] <= tol), (errors[n], tol)
    # CG's 2-norm error falls at every step (Hestenes and Stiefel), so fewer steps are strictly worse
    assert np.all(np.diff(errors, axis=0) < 0)
    assert np.all(errors[n - 1] > 100 * tol)
    assert np.array_equal(errors[0], np.ones(tasks.size))  # no step: v = 0


def test_conjugate_gradient_stops_on_a_solved_system():
    rhs = np.array([[1.0, 0.0], [0.0, 0.0]])  # the second system is solved by v = 0
    v = qd.conjugate_gradient(lambda p: 2 * p, rhs, 3)
    assert np.array_equal(v, np.array([[0.5, 0.0], [0.0, 0.0]]))


# ------------------------------------------------------------------------------------------ FO-MAML and Reptile


def test_fomaml_and_reptile_keep_a_bias_that_does_not_vanish_with_the_inner_steps(tasks):
    x = _point(5)
    exact = qd.exact_meta_gradient(tasks, x, LAM)
    # FO-MAML's limit is grad f_out(y*); it differs from lambda K^-1 grad f_out(y*) by A K^-1 grad f_out(y*) =
    # (A / lambda) exact, so its relative error tends to ||A exact|| / (lambda ||exact||) >= mu / lambda = 0.04.
    predicted = _norm(qd._mv(tasks.A, exact)) / (LAM * _norm(exact))
    assert np.all(predicted >= tasks.eigenvalues[:, 0] / LAM)
    # Reptile's (x - y_T) / (T rate) -> 0: its relative error tends to 1 from below, at least
    # 1 - ||x - y_T|| / (T rate ||exact||).
    y_star = qd.inner_solution(tasks, x, LAM)
    q = qd.contraction_factor(tasks, RATE, LAM)
    _, exact_err = _closed_form_roundoff(tasks, x)
    n = tasks.n
    for steps in (100, 200, 400):
        fo = qd.relative_error(qd.fomaml(tasks, x, steps, RATE, LAM), exact)
        # FO-MAML at T is B (y_T - b), within ||B|| (q^T ||x - y*|| + rounding of y_T) of its limit. Perturbing
        # exact by eps moves ||e - exact|| / ||exact|| by at most eps (1 + that ratio) / ||exact||, on both sides;
        # the predicted value also carries A's product with exact (eps ||A||_F / lambda, and its own rounding, a
        # chain of n operations on ||A||_F ||exact|| / lambda).
        moved = (_fro(tasks.B) * (q**steps * _norm(x - y_star) + _loop_roundoff(tasks, x, steps))
                 + exact_err * (2 + fo + predicted + _fro(tasks.A) / LAM)
                 + gamma(n, F64) * _fro(tasks.A) / LAM * _norm(exact))
        assert np.all(np.abs(fo - predicted) <= moved / _norm(exact)), steps
        assert np.all(fo > 0.5 * tasks.eigenvalues[:, 0] / LAM)
        # Reptile: ||r - e|| >= ||e|| - ||r||, up to the rounding of the two norms and the quotient (gamma(n + 3))
        y_t = qd.inner_solve(tasks, x, steps, RATE, LAM)
        rep = qd.relative_error(qd.reptile(tasks, x, steps, RATE, LAM), exact)
        floor = 1 - _norm(x - y_t) / (steps * RATE * _norm(exact))
        assert np.all(rep >= floor - 2 * gamma(n + 3, F64) - exact_err / _norm(exact)), steps
        assert np.all(rep > 0.5), steps


# ---------------------------------------------------------------------------------------------------- FO-B-MAML


def test_fo_b_maml_reaches_the_exact_meta_gradient_with_enough_steps_and_a_small_delta(tasks):
    x = _point(6)
    exact = qd.exact_meta_gradient(tasks, x, LAM)
    for name, delta in (("fo_b_maml", 1e-5), ("fo_b_maml_sym", 1e-3)):
        assert np.all(qd.relative_error(qd.estimate(name, tasks, x, 200, RATE, LAM, delta), exact) < 1e-3), name
        # with too few inner steps it does not, whatever delta
        assert np.all(qd.relative_error(qd.estimate(name, tasks, x, 3, RATE, LAM, delta), exact) > 1e-3), name


def test_at_a_finite_t_fo_b_maml_tends_to_the_t_step_derivative_which_converges_like_t_q_to_the_t(tasks):
    x = _point(12)
    steps, delta = 7, 1e-3
    limit = qd.fo_b_maml_limit(tasks, x, steps, RATE, LAM)
    # The symmetric estimator is the central difference, with step delta, of -lambda y_T(delta) at 0, and R6 is that
    # derivative: tests/tolerances.py's bound (Richardson's estimate from the step 2 delta, plus the rounding of
    # lambda y_T, lambda times _loop_roundoff, over delta) covers the difference, with R6's own rounding.
    d1 = qd.fo_b_maml_sym(tasks, x, steps, RATE, LAM, delta)
    d2 = qd.fo_b_maml_sym(tasks, x, steps, RATE, LAM, 2 * delta)
    evaluation = LAM * max(_loop_roundoff(tasks, x, steps, s).max() for s in (-2 * delta, 0.0, 2 * delta))
    bound = central_difference_error(d1, d2, delta, evaluation) + _limit_roundoff(tasks, x, steps)[:, None]
    assert np.all(np.abs(d1 - limit) <= bound)
    assert np.max(np.abs(d1 - limit)) < 1e-3 * np.max(np.abs(limit))  # the bound is not vacuous
    # R6 - grad F is bounded by alpha lambda ||B|| (T q^(T-1) ||x - y*|| + q^T ||y* - b|| / (1 - q)): FO-B-MAML's
    # inner-loop error falls like T q^T, not q^T like MAML's
    exact = qd.exact_meta_gradient(tasks, x, LAM)
    y_star = qd.inner_solution(tasks, x, LAM)
    q = qd.contraction_factor(tasks, RATE, LAM)
    b_norm = np.linalg.norm(tasks.B, ord=2, axis=(-2, -1))
    for steps in (1, 5, 20, 50):
        error = _norm(qd.fo_b_maml_limit(tasks, x, steps, RATE, LAM) - exact)
        slack = _limit_roundoff(tasks, x, steps) + _closed_form_roundoff(tasks, x)[1]
        predicted = RATE * LAM * b_norm * (steps * q ** (steps - 1) * _norm(x - y_star)
                                           + q**steps * _norm(y_star - tasks.b) / (1 - q))
        assert np.all(error <= predicted + slack), steps
    assert np.all(error / _norm(exact) < 1e-6)


def _k_norm(tasks: qd.QuadraticTasks, v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(v * qd._mv(tasks.A + LAM * np.eye(tasks.n), v), axis=-1))


@pytest.mark.parametrize(("name", "delta", "halving"), [("fo_b_maml", 1e-3, 2.0), ("fo_b_maml_sym", 1e-2, 4.0)])
def test_halving_delta_halves_the_forward_bias_and_quarters_the_symmetric_one(tasks, name, delta, halving):
    # With T -> infinity the biases are exactly (R4, R5), with P = K^-1 B and w = lambda P (y* - b) = grad F:
    #     forward   - grad F = -delta P (I + delta P)^-1 w         (first order: the delta^2 term does not cancel)
    #     symmetric - grad F = delta^2 P^2 (I - delta^2 P^2)^-1 w  (second order: the odd powers of delta cancel)
    # P is self-adjoint in the K inner product (K P = B), so in the K-norm each eigencomponent (eigenvalue p of P,
    # 0 < p <= rho = ||B|| / (mu + lambda)) is scaled from delta/2 to delta by 2 (1 + delta p/2) / (1 + delta p)
    # (forward) or 4 (1 - delta^2 p^2 / 4) / (1 - delta^2 p^2) (symmetric): the ratio of the two biases lies in
    # [2 (1 + delta rho/2) / (1 + delta rho), 2] or [4, 4 (1 - delta^2 rho^2 / 4) / (1 - delta^2 rho^2)].
    # That is the range where the delta bias dominates: T = 400 makes q^T (1e-74) negligible, and the rounding of
    # the difference quotient, lambda (2 ||dy||) / delta or lambda (2 ||dy||) / (2 delta), stays 1e-3 below the
    # bias (checked). At much smaller delta the rounding, growing as 1/delta, would take over.
    steps = 400
    x = _point(7)
    exact = qd.exact_meta_gradient(tasks, x, LAM)
    rho = np.linalg.eigvalsh(tasks.B)[:, -1] / (tasks.eigenvalues[:, 0] + LAM)
    k_scale = np.sqrt(tasks.eigenvalues[:, -1] + LAM)  # ||v||_K <= sqrt(||K||) ||v||
    _, exact_error = _closed_form_roundoff(tasks, x)
    measured, rounding = [], []
    for d in (delta, delta / 2):
        assert np.all(qd.contraction_factor(tasks, RATE, LAM, d) ** steps < 1e-40)
        estimate = qd.estimate(name, tasks, x, steps, RATE, LAM, d)
        measured.append(_k_norm(tasks, estimate - exact))
        rounding.append(k_scale * (_fo_b_roundoff(tasks, x, steps, name, d) + exact_error))
    assert np.all(rounding[0] < 1e-3 * measured[0]) and np.all(rounding[1] < 1e-3 * measured[1])
    if halving == 2.0:
        low, high = 2 * (1 + delta * rho / 2) / (1 + delta * rho), np.full_like(rho, 2.0)
    else:
        low, high = np.full_like(rho, 4.0), 4 * (1 - (delta * rho) ** 2 / 4) / (1 - (delta * rho) ** 2)
    # |measured - bias| <= rounding, and bias(delta) / bias(delta/2) lies in [low, high]
    assert np.all(measured[0] - rounding[0] <= high * (measured[1] + rounding[1]))
    assert np.all(measured[0] + rounding[0] >= low * (measured[1] - rounding[1]))
    # hence "roughly halves / quarters": [low, high] is within 0.2 % of 2 and 0.05 % of 4 here, the rounding 1e-3
    ratio = measured[0] / measured[1]
    assert np.all(np.abs(ratio - halving) < 0.01 * halving), ratio


def test_the_symmetric_bias_is_the_closed_form_not_smaller(tasks):
    # R5 exactly: on quadratics the symmetric bias is Theta(delta^2), with the coefficient lambda P^3 (y* - b).
    x = _point(8)
    steps, delta = 400, 1e-2
    n = tasks.n
    exact = qd.exact_meta_gradient(tasks, x, LAM)
    k = tasks.A + LAM * np.eye(n)
    p = np.linalg.solve(k, tasks.B)
    p2 = p @ p
    predicted = delta**2 * qd._mv(p2, qd._mv(np.linalg.inv(np.eye(n) - delta**2 * p2), exact))
    bias = qd.fo_b_maml_sym(tasks, x, steps, RATE, LAM, delta) - exact
    # Rounding: the estimate's (_fo_b_roundoff) and exact's; predicted is delta^2 (4e-4) times products of
    # well-conditioned matrices (cond(K) = 3, I - delta^2 P^2 = I to 2e-4), its rounding negligible beside exact's.
    _, exact_error = _closed_form_roundoff(tasks, x)
    assert np.all(_norm(bias - predicted) <= _fo_b_roundoff(tasks, x, steps, "fo_b_maml_sym", delta) + 2 * exact_error)
    # not smaller than delta^2: in the K-norm each eigencomponent of w = grad F is scaled by
    # delta^2 p^2 / (1 - delta^2 p^2) >= delta^2 p_min^2, p_min >= lambda_min(B) / lambda_max(K); back in the
    # 2-norm that loses at most sqrt(cond K).
    k_eig = tasks.eigenvalues + LAM
    p_min = np.linalg.eigvalsh(tasks.B)[:, 0] / k_eig[:, -1]
    floor = delta**2 * p_min**2 * np.sqrt(k_eig[:, 0] / k_eig[:, -1]) * _norm(exact)
    assert np.all(_norm(bias) >= floor)


# --------------------------------------------------------------------------------------------- the registry


def test_the_registry_names_every_estimator_and_checks_settings(tasks):
    assert list(qd.ESTIMATORS) == ["maml", "fomaml", "reptile", "imaml", "fo_b_maml", "fo_b_maml_sym"]
    x = _point(9)
    assert np.array_equal(qd.estimate("imaml", tasks, x, 3, RATE, LAM, 2), qd.imaml(tasks, x, 3, RATE, LAM, 2))
    assert np.array_equal(qd.EstimatorChoice("fo_b_maml_sym", 1e-3)(tasks, x, 3, RATE, LAM),
                          qd.fo_b_maml_sym(tasks, x, 3, RATE, LAM, 1e-3))
    assert qd.EstimatorChoice("imaml", 5).label == "imaml (cg=5)"
    with pytest.raises(ValueError, match="unknown estimator 'mamll'"):
        qd.EstimatorChoice("mamll")
    with pytest.raises(ValueError, match="needs its delta"):
        qd.EstimatorChoice("fo_b_maml")
    with pytest.raises(ValueError, match="takes no setting"):
        qd.EstimatorChoice("maml", 3)
    with pytest.raises(ValueError, match="needs its cg_steps"):
        qd.estimate("imaml", tasks, x, 3, RATE, LAM)


# ------------------------------------------------------------------------------------------- outer optimisation
# The outer steps themselves (normalized step length, clipping, the SNGDM recursion) are training's and are tested
# with it, in tests/core/meta/test_outer_step.py.


def test_outer_gd_with_the_exact_gradient_reaches_the_minimum_and_a_too_large_rate_is_flagged(tasks):
    x_star, f_star, smoothness = qd.optimal_outer(tasks, LAM)
    assert np.linalg.norm(qd.meta_gradient_mean(qd.exact_meta_gradient(tasks, x_star, LAM))) < 1e-12
    # MAML at T = 100 is the exact gradient to q^100 < 1e-18; GD with the rate 1/L_F contracts F - F* by at least
    # 1 - mu_F / L_F per step; a rate of 3 / L_F (> 2 / L_F) makes GD diverge along the top eigenvector.
    run = qd.run_outer(tasks, np.zeros(tasks.n), qd.EstimatorChoice("maml"), 100, RATE, LAM, OuterStepChoice.parse("sgd"),
                       [1 / smoothness, 3 / smoothness], 300, divergence_factor=1e3)
    assert run.exact_loss.shape == (2, 301)
    assert not run.diverged[0] and run.diverged[1] and np.isinf(run.exact_loss[1, -1])
    assert np.all(np.diff(run.exact_loss[0]) <= 1e-15)
    assert run.exact_loss[0, -1] - f_star < 1e-6 * (run.exact_loss[0, 0] - f_star)
    assert math.isclose(run.unrolled_loss[0, -1], run.exact_loss[0, -1], rel_tol=1e-12)
    assert run.best == 0


@pytest.mark.parametrize("method", [OuterStepChoice.parse("sngdm", {"momentum": 0.5}),
                                    OuterStepChoice.parse("clipped", {"max_norm": 0.05}),
                                    OuterStepChoice.parse("normalized")], ids=lambda m: m.name)
def test_each_rate_of_a_grid_is_its_own_run(tasks, method):
    """One run is one outer variable: its normalized step's norm (or clipping) is its own, not the grid's."""
    rates = [0.01, 0.1, 1.0]
    grid = qd.run_outer(tasks, np.zeros(tasks.n), qd.EstimatorChoice("fomaml"), 5, RATE, LAM, method, rates, 4)
    for k, rate in enumerate(rates):
        alone = qd.run_outer(tasks, np.zeros(tasks.n), qd.EstimatorChoice("fomaml"), 5, RATE, LAM, method, [rate], 4)
        assert np.array_equal(alone.final_x[0], grid.final_x[k])
        assert np.array_equal(alone.exact_loss[0], grid.exact_loss[k])
