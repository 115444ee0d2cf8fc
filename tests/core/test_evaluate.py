"""The reported interval is 1.96 * std / sqrt(n); multi-step-loss weights anneal as in MAML++."""

from __future__ import annotations

import math

import pytest
import torch

from core.evaluate import mean_and_ci95
from tests.tolerances import gamma


def test_ci95_formula():
    values = [0.2, 0.4, 0.6, 0.8]
    mean, ci = mean_and_ci95(values)
    std = math.sqrt(sum((v - 0.5) ** 2 for v in values) / 4)
    # Both sides are float64 sums of 4 terms of size <= 1 and a few more operations (square, divide, sqrt,
    # multiply): each within gamma_8 of the exact value, relatively, whatever the summation order.
    assert mean == pytest.approx(0.5, rel=gamma(8, torch.float64), abs=0)
    assert ci == pytest.approx(1.96 * std / 2, rel=2 * gamma(8, torch.float64), abs=0)
    # Constant values: the mean is 0.7 up to a 600-term sum's error (gamma_599 relative), the deviations
    # from it are at most that large, and so is the std; the interval divides it by sqrt(600) / 1.96.
    mean, ci = mean_and_ci95([0.7] * 600)
    mean_error = gamma(600, torch.float64) * 0.7
    assert mean == pytest.approx(0.7, rel=0, abs=mean_error)
    assert 0 <= ci <= 1.96 * mean_error / math.sqrt(600)
    with pytest.raises(ValueError):
        mean_and_ci95([])
