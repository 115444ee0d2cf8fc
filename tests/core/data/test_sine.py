"""SineTaskFamily: determinism, parameter and input ranges, shapes, and the curve itself."""

from __future__ import annotations

import math

import pytest
import torch

from core.data import SineTaskFamily, Task
from tests.tolerances import unit_roundoff


def test_same_seed_and_index_give_the_same_task() -> None:
    family = SineTaskFamily()
    a, b = family.task(3, k_shot=5, n_query=10, seed=1), family.task(3, k_shot=5, n_query=10, seed=1)
    for field in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert a.provenance == b.provenance
    assert family.task(4, 5, 10, seed=1).provenance != a.provenance
    assert family.task(3, 5, 10, seed=2).provenance != a.provenance


def test_batch_matches_individual_tasks() -> None:
    family = SineTaskFamily()
    batch = family.batch(start_index=7, count=3, k_shot=2, n_query=4, seed=9)
    assert len(batch) == 3 and all(isinstance(task, Task) for task in batch)
    for offset, task in enumerate(batch):
        assert torch.equal(task.query_y, family.task(7 + offset, 2, 4, seed=9).query_y)


def test_shapes_ranges_and_curve() -> None:
    family = SineTaskFamily(frequency=(0.8, 1.2))
    tasks = family.batch(0, 200, k_shot=10, n_query=20)
    for task in tasks:
        assert task.support_x.shape == task.support_y.shape == (10, 1)
        assert task.query_x.shape == task.query_y.shape == (20, 1)
        assert task.support_x.dtype == torch.float32 and task.query_y.dtype == torch.float32
        amplitude, frequency, phase = (task.provenance[k] for k in ("amplitude", "frequency", "phase"))
        assert 0.1 <= amplitude <= 5.0 and 0.8 <= frequency <= 1.2 and 0.0 <= phase <= math.pi
        assert float(task.query_x.min()) >= -5.0 and float(task.query_x.max()) <= 5.0
        expected = amplitude * torch.sin(frequency * task.query_x.double() - phase)
        # y is computed in float64 from the float64 x, then rounded to float32; the check starts from x rounded
        # to float32 (off by u32 |x| <= 5 u32), which the slope A f turns into 5 A f u32; rounding y adds A u32.
        # The float64 sides (numpy's and torch's sin within 4 ulp on any CPU, arguments up to 5 f + pi) add
        # a few u64 A (5 f + pi).
        u32, u64 = unit_roundoff(torch.float32), unit_roundoff(torch.float64)
        tolerance = amplitude * (5 * frequency + 1) * u32 + 8 * u64 * amplitude * (5 * frequency + math.pi)
        assert float((task.query_y.double() - expected).abs().max()) <= tolerance
        # |sin| <= 1 up to its 4 ulp (8 u64), A sin and this bound round once or twice more in float64, and the
        # float32 rounding of y adds at most u32: |y| <= A (1 + u32)(1 + 16 u64).
        assert float(task.support_y.abs().max()) <= amplitude * (1 + u32) * (1 + 16 * u64)
    amplitudes = [task.provenance["amplitude"] for task in tasks]
    assert min(amplitudes) < 1.0 and max(amplitudes) > 4.0  # the whole range gets used


def test_default_frequency_varies_as_in_alfa_table_8() -> None:
    frequencies = [SineTaskFamily().task(i, 1, 1).provenance["frequency"] for i in range(50)]
    assert all(0.8 <= f <= 1.2 for f in frequencies) and max(frequencies) - min(frequencies) > 0.3
    assert {SineTaskFamily(frequency=(1.0, 1.0)).task(i, 1, 1).provenance["frequency"] for i in range(5)} == {1.0}


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="amplitude"):
        SineTaskFamily(amplitude=(5.0, 0.1))
    with pytest.raises(ValueError, match="k_shot"):
        SineTaskFamily().task(0, k_shot=0, n_query=1)
