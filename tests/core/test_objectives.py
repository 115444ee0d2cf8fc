"""One objective per task kind: its loss, its metric and its head set-up, replacing the task-kind branches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.objectives import ClassificationObjective, RegressionObjective, objective_for
from models.backbones import HeadNames
from tests.tolerances import gamma

HEAD = HeadNames("head.weight", "head.bias")


def _params(n_classes: int = 3, features: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"head.weight": torch.randn(n_classes, features, generator=g), "head.bias": torch.randn(n_classes, generator=g),
            "features.w": torch.randn(features, 2, generator=g)}


def _features(params, x):
    return x @ params["features.w"].t()


def test_objectives_are_found_by_kind_and_an_unknown_kind_lists_them():
    assert isinstance(objective_for("classification"), ClassificationObjective)
    assert isinstance(objective_for("regression"), RegressionObjective)
    with pytest.raises(ValueError, match="unknown task kind 'ranking'; choose one of classification, regression"):
        objective_for("ranking")


def test_classification_scores_cross_entropy_and_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    target = torch.tensor([0, 0, 0])
    objective = objective_for("classification")
    assert torch.equal(objective.loss(logits, target), F.cross_entropy(logits, target))
    assert objective.metric(logits, target) == torch.tensor(2 / 3)  # the float32 mean of three 0/1 values
    assert objective.has_metric and objective.higher_is_better and objective.metric_name == "accuracy"


def test_regression_scores_mse_and_has_no_separate_metric():
    objective = objective_for("regression")
    output, target = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])
    assert float(objective.loss(output, target)) == 2.5
    assert objective.metric(output, target) is None and not objective.higher_is_better
    params = _params()
    assert objective.prepare_head(params, HEAD, _features, output, target, None, "zero") is params


def test_classification_heads_learned_zero_and_prototype():
    objective = objective_for("classification")
    params = _params(n_classes=3)
    support_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    support_y = torch.tensor([0, 1, 0, 1])
    assert objective.prepare_head(params, HEAD, _features, support_x, support_y, 3, "learned") is params
    with pytest.raises(ValueError, match="the meta-learned head has 3 classes but the episode has 2"):
        objective.prepare_head(params, HEAD, _features, support_x, support_y, 2, "learned")
    zero = objective.prepare_head(params, HEAD, _features, support_x, support_y, 2, "zero")
    assert zero["head.weight"].shape == (2, 4) and not zero["head.weight"].any() and not zero["head.bias"].any()
    assert zero["features.w"] is params["features.w"]
    prototype = objective.prepare_head(params, HEAD, _features, support_x, support_y, 2, "prototype")
    embedding = _features({k: v.double() for k, v in params.items()}, support_x.double())
    centres = torch.stack([embedding[support_y == k].mean(0) for k in range(2)])
    # Against float64: each float32 centre is a 4-term one-hot product then a division (gamma_5 of the largest
    # embedding entry, beyond the float32 rounding of the embedding itself, gamma_2); the bias sums 4 squares.
    largest = float(embedding.abs().max())
    centre_error = (gamma(5, torch.float32) + gamma(2, torch.float32)) * largest
    torch.testing.assert_close(prototype["head.weight"].double(), 2 * centres, rtol=0, atol=2 * centre_error)
    bias_error = 4 * (2 * largest * centre_error + gamma(5, torch.float32) * largest**2)
    torch.testing.assert_close(prototype["head.bias"].double(), -(centres**2).sum(1), rtol=0, atol=bias_error)
    with pytest.raises(ValueError, match="unknown head_init 'random'"):
        objective.prepare_head(params, HEAD, _features, support_x, support_y, 2, "random")
