"""The reported interval is 1.96 * std / sqrt(n); multi-step-loss weights anneal as in MAML++."""

from __future__ import annotations

import math

import pytest
import torch

from core.evaluate import mean_and_ci95
from core.meta.maml import multi_step_weights


def test_ci95_formula():
    values = [0.2, 0.4, 0.6, 0.8]
    mean, ci = mean_and_ci95(values)
    std = math.sqrt(sum((v - 0.5) ** 2 for v in values) / 4)
    assert mean == pytest.approx(0.5) and ci == pytest.approx(1.96 * std / 2)
    assert mean_and_ci95([0.7] * 600) == (pytest.approx(0.7), 0.0)
    with pytest.raises(ValueError):
        mean_and_ci95([])


def test_multi_step_weights_sum_to_one_and_anneal_to_the_last_step():
    start, end = multi_step_weights(5, 0.0), multi_step_weights(5, 1.0)
    torch.testing.assert_close(start, torch.full((5,), 0.2))
    assert float(end.sum()) == pytest.approx(1.0) and float(start.sum()) == pytest.approx(1.0)
    assert float(end[-1]) == pytest.approx(1 - 4 * 0.03 / 5)
    assert end[:-1].tolist() == pytest.approx([0.03 / 5] * 4)
