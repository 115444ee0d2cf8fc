"""bench/half_precision.py runs a shipped checkpoint and its float16 copy on the same held-out episodes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("half_precision", ROOT / "bench" / "half_precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_half_precision_copy_is_half_the_size_and_is_judged_on_identical_episodes(real_omniglot):
    path = ROOT / "assets" / "checkpoints" / "conv4_maml.safetensors"
    rows = _load_script().compare(path, episodes=2)
    assert [(r["way"], r["shot"], r["protocol"]) for r in rows] == [
        (5, 1, "any-classes"), (5, 5, "any-classes"), (20, 1, "any-classes"), (20, 1, "within-alphabet")]
    for row in rows:
        assert row["predictions"] == row["way"] * 15 * 2  # 15 queries per class, 2 episodes
        assert 0 <= row["changed_predictions"] <= row["predictions"]
        assert row["float16_bytes"] < 0.55 * row["float32_bytes"]
        if row["changed_predictions"] == 0:  # same predictions must mean the same accuracy
            assert row["float16"] == row["float32"]
