"""The engine still gives the shipped checkpoints' golden predictions (recorded by ``python -m tests.golden``).

The structure issue reorganises rules, backbones, checkpoints and the inner loop; none of that may change what a
shipped checkpoint predicts. The golden file was recorded before that work, in float64: on any CPU the same
operations agree to float64 rounding (about 1e-13 here), so the issue's bound of 1e-6 on the probabilities cannot
fail from rounding, only from a change of the computation.
"""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from tests.golden import EPISODES, GOLDEN_FILE, QUERIES_PER_CLASS, cases, predict

pytestmark = pytest.mark.slow

CASES = list(cases())
PROBABILITY_TOLERANCE = 1e-6  # the bound; see the module docstring for why rounding stays far below it


def test_the_golden_file_covers_every_shipped_checkpoint_and_rule() -> None:
    with safe_open(str(GOLDEN_FILE), framework="pt") as golden:
        keys = set(golden.keys())
        assert golden.metadata()["dtype"] == "float64" and int(golden.metadata()["episodes"]) == EPISODES
    assert keys == {f"{case.key}/{what}" for case, _path, _meta in CASES for what in ("predictions", "probabilities")}


@pytest.mark.parametrize("case, path, metadata", CASES, ids=[case.key for case, _p, _m in CASES])
def test_shipped_checkpoints_predict_as_recorded(case, path, metadata, real_omniglot) -> None:
    with safe_open(str(GOLDEN_FILE), framework="pt") as golden:
        expected_predictions = golden.get_tensor(f"{case.key}/predictions")
        expected_probabilities = golden.get_tensor(f"{case.key}/probabilities")
    predictions, probabilities = predict(case, path, metadata, real_omniglot)
    assert predictions.shape == (EPISODES, case.n_way * QUERIES_PER_CLASS)
    assert torch.equal(predictions, expected_predictions)
    assert float((probabilities - expected_probabilities).abs().max()) <= PROBABILITY_TOLERANCE
