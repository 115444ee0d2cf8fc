"""The reported interval is 1.96 * std / sqrt(n); multi-step-loss weights anneal as in MAML++."""

from __future__ import annotations

import math

import pytest
import torch

from core.evaluate import mean_and_ci95
from core.meta.maml import multi_step_weights
from tests.tolerances import gamma, unit_roundoff


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


def test_multi_step_weights_sum_to_one_and_anneal_to_the_last_step():
    start, end = multi_step_weights(5, 0.0), multi_step_weights(5, 1.0)
    # The last weight is 1 minus a float32 sum of the other four (total <= 1: off by at most gamma_4), and
    # summing all five again adds at most gamma_4 more: 2 gamma_5 bounds both checks. Every other weight is
    # a single float32 rounding of 0.2 or 0.03 / 5, so it is within u32 of it, relatively.
    u32, sum_error = unit_roundoff(torch.float32), 2 * gamma(5, torch.float32)
    torch.testing.assert_close(start, torch.full((5,), 0.2), rtol=0, atol=sum_error)
    assert float(end.sum()) == pytest.approx(1.0, rel=0, abs=sum_error)
    assert float(start.sum()) == pytest.approx(1.0, rel=0, abs=sum_error)
    assert float(end[-1]) == pytest.approx(1 - 4 * 0.03 / 5, rel=0, abs=sum_error)
    assert end[:-1].tolist() == pytest.approx([0.03 / 5] * 4, rel=u32, abs=0)
