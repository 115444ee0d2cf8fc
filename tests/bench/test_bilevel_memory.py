"""The bilevel memory benchmark: which cases it measures, how it summarises a sweep, and one tiny measured case."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from models.backbones.conv1d import Conv1d

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bilevel_memory", ROOT / "bench" / "bilevel_memory.py")
bilevel_memory = importlib.util.module_from_spec(_spec)
sys.modules["bilevel_memory"] = bilevel_memory  # dataclasses look their module up by name
_spec.loader.exec_module(bilevel_memory)
MemoryCase = bilevel_memory.MemoryCase


def test_the_sweeps_measure_each_point_once():
    chosen = bilevel_memory.cases(["maml", "fo_b_maml"], [16, 64, 256], [5, 10, 50])
    # Per estimator: three widths at 10 steps, then 5 and 50 steps at 64 channels (64 x 10 is already measured).
    assert [(c.estimator, c.channels, c.inner_steps) for c in chosen] == [
        (e, w, s) for e in ("maml", "fo_b_maml") for (w, s) in ((16, 10), (64, 10), (256, 10), (64, 5), (64, 50))
    ]


def test_growth_is_the_largest_points_extra_memory_over_the_smallest():
    rows = [
        {"estimator": "maml", "channels": 64, "inner_steps": steps, "peak_extra_mb": extra}
        for steps, extra in ((50, 150.0), (5, 25.0), (10, 40.0))
    ] + [{"estimator": "maml", "channels": 16, "inner_steps": 10, "peak_extra_mb": 15.0}]
    growth = bilevel_memory.flatness(rows, "maml", "inner_steps")
    assert growth == {
        "estimator": "maml", "axis": "inner_steps", "from": 5, "to": 50,
        "peak_extra_mb_from": 25.0, "peak_extra_mb_to": 150.0, "ratio": 6.0,
    }  # fmt: skip
    assert bilevel_memory.flatness(rows, "maml", "channels")["ratio"] == round(40.0 / 15.0, 2)
    assert bilevel_memory.flatness(rows, "fo_b_maml", "channels") == {}


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["maml", "fo_b_maml"])
def test_one_tiny_case_measured_in_its_own_process(estimator):
    case = MemoryCase(estimator, channels=4, inner_steps=2, n_way=2, k_shot=1, n_query=2, meta_batch=1)
    row = bilevel_memory.run_in_subprocess(case, "cpu", timeout=300)
    assert {k: row[k] for k in ("estimator", "channels", "inner_steps", "meta_batch")} == {
        "estimator": estimator, "channels": 4, "inner_steps": 2, "meta_batch": 1,
    }  # fmt: skip
    assert row["finite"] and row["device"] == "cpu"
    # torch alone keeps tens of megabytes resident; the high-water mark is never below the size before the call.
    assert row["rss_before_mb"] > 20
    assert row["peak_rss_mb"] >= row["rss_before_mb"] and row["peak_extra_mb"] >= 0
    assert row["peak_extra_mb"] == pytest.approx(row["peak_rss_mb"] - row["rss_before_mb"], abs=0.11)
    network = Conv1d(channels=4, n_classes=2)
    # The learner's parameters are the backbone's (the sgd rule learns nothing).
    assert row["parameters_mb"] == round(sum(p.numel() * 4 for p in network.parameters()) / 2**20, 3)
