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


class _Result:
    accuracy = 1.0
    head_init = "learned"


def test_within_group_evaluation_passes_the_option_to_the_sampler_and_names_the_protocol(monkeypatch):
    """Every evaluated episode takes its classes from one alphabet, and the result says which protocol it was."""
    from types import SimpleNamespace

    from core import evaluate
    from tests.core.data.test_sampler import AlphabetCodedSet

    episodes = []

    def fake_adapt(learner, episode, steps, head_init, device):
        episodes.append(episode)
        return _Result()

    monkeypatch.setattr(evaluate, "adapt", fake_adapt)
    learner = SimpleNamespace(parameters=lambda: iter([torch.zeros(1)]), rule=SimpleNamespace(name="sgd"))
    image_set = AlphabetCodedSet({"Greek": 6, "Latin": 9, "Runic": 3})
    result = evaluate.evaluate_classification(learner, image_set, 5, 1, 2, episodes=8, steps=1, seed=3,
                                              progress=False, within_group=True)
    assert result.protocol == "within-alphabet" and result.to_dict()["protocol"] == "within-alphabet"
    assert len(episodes) == 8
    for episode in episodes:
        assert len({image_set.group_of(name) for name in episode.class_names}) == 1
        assert episode.provenance["within_group"] is True and episode.provenance["seed"] == 3
    episodes.clear()
    default = evaluate.evaluate_classification(learner, image_set, 5, 1, 2, episodes=8, steps=1, seed=3, progress=False)
    assert default.protocol == "any-classes" and not any("within_group" in e.provenance for e in episodes)
    assert any(len({image_set.group_of(name) for name in e.class_names}) > 1 for e in episodes)


def test_test_time_augmentation_adapts_on_more_support_images_of_the_same_episodes(monkeypatch):
    """With ``support_augment`` each episode is the plain protocol's episode with distorted support copies added:
    same classes, same queries; the result records the augmentation."""
    from types import SimpleNamespace

    from core import evaluate
    from core.data.augment import AugmentConfig, SupportAugment
    from tests.core.data.test_augment import DrawnCharacters

    episodes = []

    def fake_adapt(learner, episode, steps, head_init, device):
        episodes.append(episode)
        return _Result()

    monkeypatch.setattr(evaluate, "adapt", fake_adapt)
    learner = SimpleNamespace(parameters=lambda: iter([torch.zeros(1)]), rule=SimpleNamespace(name="sgd"))
    image_set = DrawnCharacters()
    plain = evaluate.evaluate_classification(learner, image_set, 3, 1, 2, episodes=4, steps=1, seed=3, progress=False)
    plain_episodes = list(episodes)
    episodes.clear()
    augment = SupportAugment(2, AugmentConfig(rotation=15))
    result = evaluate.evaluate_classification(learner, image_set, 3, 1, 2, episodes=4, steps=1, seed=3,
                                              progress=False, support_augment=augment)
    assert plain.support_augment is None and result.support_augment == augment.to_dict()
    assert result.to_dict()["support_augment"] == {"copies": 2, "ranges": AugmentConfig(rotation=15).to_dict()}
    for before, after in zip(plain_episodes, episodes, strict=True):
        assert after.class_names == before.class_names and torch.equal(after.query_x, before.query_x)
        assert torch.equal(after.support_x[:3], before.support_x) and after.support_x.shape[0] == 9
