"""The frozen-schedule ablation: a task-conditioned rule with its learning state replaced by a training mean."""

from __future__ import annotations

import pytest
import torch

from core.adapt import adapt
from core.checkpoint import load_learner
from core.data.images import ImageSpec
from core.data.omniglot import OmniglotImageSet
from core.data.sampler import EpisodeSampler
from core.schedule_ablation import frozen_schedule_ablation, mean_learning_state, with_frozen_schedule
from tests.app.builders import TINY_IMAGE, save_tiny_checkpoint
from tests.core.test_rule_spread import EPISODE_DEPENDENT_ALFA, omniglot_tree


@pytest.fixture
def image_set(tmp_path) -> OmniglotImageSet:
    root = omniglot_tree(tmp_path / "omniglot", characters=6, drawings=4)
    return OmniglotImageSet(root, alphabets=["Tagalog"], spec=ImageSpec.from_dict(TINY_IMAGE))


def _learner(tmp_path, rule: dict):
    learner, _ = load_learner(save_tiny_checkpoint(tmp_path / "alfa.safetensors", rule=rule), rule=rule["name"])
    return learner


def test_frozen_schedule_equals_the_real_rule_when_every_episode_has_the_same_state(tmp_path, image_set):
    learner = _learner(tmp_path, EPISODE_DEPENDENT_ALFA)
    episode = EpisodeSampler(image_set, 3, 1, 2, seed=0).episode(0)
    # Calibrated on this one episode, the "mean" state is the episode's own state at every step.
    states = mean_learning_state(learner, [episode], steps=3, head_init="zero")
    assert states.shape == (3, learner.rule.state_size) and states.dtype == torch.float64
    frozen = with_frozen_schedule(learner, states)
    real_run = adapt(learner, episode, 3, head_init="zero")
    frozen_run = adapt(frozen, episode, 3, head_init="zero")
    # Exact: the frozen state is the same float32 numbers (stored in float64, which holds them exactly) fed to the
    # same generator, except the weight means, whose gradient path the evaluation never uses.
    assert frozen_run.traces == real_run.traces
    assert frozen_run.predictions == real_run.predictions
    assert frozen_run.probabilities == real_run.probabilities
    assert learner.rule.frozen_learning_state is None  # the (possibly cached) learner itself is untouched


def test_a_frozen_schedule_gives_every_episode_the_same_values(tmp_path, image_set):
    learner = _learner(tmp_path, EPISODE_DEPENDENT_ALFA)
    sampler = EpisodeSampler(image_set, 3, 1, 2, seed=0)
    frozen = with_frozen_schedule(learner, mean_learning_state(learner, sampler.episodes(4), 3, "zero"))
    real = [adapt(learner, e, 3, head_init="zero").traces for e in sampler.episodes(3, start=4)]
    fixed = [adapt(frozen, e, 3, head_init="zero").traces for e in sampler.episodes(3, start=4)]
    assert real[0] != real[1]  # this generator reads the episode...
    assert fixed[0] == fixed[1] == fixed[2]  # ...the frozen one cannot


def test_ablation_of_a_generator_that_ignores_its_input_changes_nothing(tmp_path, image_set):
    # The identity start (zero last layer, unit bias) outputs exactly one whatever it reads.
    learner = _learner(tmp_path, {"name": "alfa", "steps": 2, "lr": 0.4, "generator_init": "identity"})
    result = frozen_schedule_ablation(learner, image_set, image_set, n_way=3, k_shot=1, n_query=1, steps=2,
                                      episodes=5, calibration_episodes=3)
    assert result.real == result.frozen and result.real_ci95 == result.frozen_ci95
    assert (result.difference, result.difference_ci95, result.episodes_changed) == (0.0, 0.0, 0)
    assert (result.episodes, result.calibration_episodes, result.head_init) == (5, 3, "zero")


def test_a_rule_that_does_not_read_the_task_is_refused(tmp_path, image_set):
    learner = _learner(tmp_path, EPISODE_DEPENDENT_ALFA).with_rule("sgd")
    with pytest.raises(ValueError, match="'sgd' does not generate its values from the task"):
        mean_learning_state(learner, [], 2)
    with pytest.raises(ValueError, match="no tasks"):
        mean_learning_state(_learner(tmp_path, EPISODE_DEPENDENT_ALFA), [], 2)
