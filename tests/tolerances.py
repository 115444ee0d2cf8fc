"""Float tolerances derived from rounding-error analysis, so that they hold on any x86 CPU.

Two computations of the same float quantity (a per-task loop and vmap, batched and unbatched, a recomputed
and a stored inner loop, or one kernel compiled for AVX2 and for AVX-512) round differently: vector width,
blocking, thread splits and fused multiply-adds change the order of operations. A bound that merely passed
on one CPU says nothing about another, so the tests take their bounds from the arithmetic instead, in units
of the unit roundoff ``u = eps / 2`` (N. J. Higham, "Accuracy and Stability of Numerical Algorithms",
2nd ed., SIAM 2002; equation numbers below refer to it).
"""

from __future__ import annotations

import math

import torch

FLOAT32_TO_FLOAT64 = torch.finfo(torch.float64).eps / torch.finfo(torch.float32).eps  # 2**-29


def unit_roundoff(dtype: torch.dtype) -> float:
    """``u = eps / 2``: the largest relative error of one correctly rounded operation.

    float16: 4.9e-4, float32: 6.0e-8, float64: 1.1e-16 (normal numbers; below the smallest normal number the
    absolute error is at most half the subnormal spacing).
    """
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: relative error bound of a chain of ``n`` rounded operations (3.4).

    A sum of ``m`` terms computed in any order (left to right, pairwise, split across SIMD lanes or threads)
    has at most ``m - 1`` additions on any path, so its error is at most ``gamma(m - 1) * sum(|terms|)``
    (4.6); a dot product of length ``m`` is off by at most ``gamma(m) * sum(|x_i y_i|)`` (3.5). Because these
    bounds hold for every order, they hold whichever order a CPU's kernel picks.
    """
    nu = n * unit_roundoff(dtype)
    if nu >= 1:
        raise ValueError(f"gamma({n}) is unbounded in {dtype}: n * u = {nu}")
    return nu / (1 - nu)


def float64_error_from_float32(float32_error: float, magnitude: float = 0.0) -> float:
    """Bound on the rounding error of a float64 computation, from the same computation run in float32.

    To first order, the rounding error of a fixed sequence of operations is ``u`` times a sum of terms fixed
    by the data and the sequence, so the float64 result is off by about ``u64 / u32 = 2**-29`` times what
    the float32 twin is off from it (``float32_error``, measured on this machine, with this CPU's kernels).
    The terms of that sum round differently in the two precisions and partly cancel, so the ratio of the
    two errors is not exactly ``u64 / u32``; a factor 10 covers that, as in
    tests/bench/test_engine_speed.py. A single float32 number can land closer than its accuracy warrants
    by luck, so the float32 error counts as at least its own last rounding, ``u32 * magnitude``.
    """
    return 10 * FLOAT32_TO_FLOAT64 * max(float32_error, unit_roundoff(torch.float32) * magnitude)


def central_difference_error(derivative_h: float, derivative_2h: float, step: float, evaluation_error: float) -> float:
    """Bound on ``|D(h) - f'(x)|`` for ``D(h) = (f(x + h) - f(x - h)) / (2h)`` evaluated in floating point.

    Truncation: Taylor's theorem gives ``D(h) = f' + h^2 f''' / 6 + O(h^4)``, so ``D(2h) - D(h)`` is three
    times ``D(h) - f'`` to leading order: ``|D(2h) - D(h)|`` bounds the truncation error with a factor 3 to
    spare, without knowing ``f'''`` (Richardson's estimate). Rounding: each evaluation of ``f`` is off by at
    most ``evaluation_error``, so the difference quotient by at most ``2 * evaluation_error / (2h)``.
    """
    return abs(derivative_2h - derivative_h) + evaluation_error / step


def binomial_upper_threshold(trials: int, probability: float, significance: float) -> int:
    """The smallest ``k`` with ``P(Binomial(trials, probability) >= k) <= significance``.

    A success count of at least ``k`` happens by chance (each trial succeeding with ``probability``) with
    probability at most ``significance``: the bar for "better than chance" in a test of fixed data.
    """
    tail = 0.0
    for k in range(trials, -1, -1):
        tail += math.comb(trials, k) * probability**k * (1 - probability) ** (trials - k)
        if tail > significance:
            return k + 1
    return 0
