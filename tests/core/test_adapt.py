"""Adaptation on real Omniglot episodes: support loss falls, the cached learner is untouched, results are complete."""

from __future__ import annotations

import pytest
import torch

from core.adapt import adapt, default_head_init
from core.data.omniglot import OmniglotImageSet
from core.data.sampler import EpisodeSampler
from core.learner import Learner
from tests.tolerances import binomial_upper_threshold, gamma


def _learner(rule, head_init="learned", n_classes=5):
    return Learner({"name": "conv4", "filters": 16, "n_classes": n_classes}, rule, head_init=head_init, seed=0)


@pytest.fixture(scope="module")
def image_set(real_omniglot):
    return OmniglotImageSet(real_omniglot, alphabets=["Tagalog"])


@pytest.fixture(scope="module")
def episodes(image_set):
    sampler = EpisodeSampler(image_set, n_way=5, k_shot=3, n_query=4, seed=11)
    return [sampler.episode(i) for i in range(3)]


@pytest.mark.parametrize(
    "rule",
    [
        {"name": "sgd", "lr": 0.4},
        {"name": "per_step", "steps": 5, "lr": 0.4},
        {"name": "meta_sgd", "lr": 0.4},
        {"name": "alfa", "steps": 5, "lr": 0.4, "generator_init": "identity"},
        {"name": "alfa_random", "steps": 5, "lr": 0.4, "generator_init": "identity"},
    ],
)
def test_adaptation_lowers_support_loss_on_real_omniglot(episodes, rule):
    learner = _learner(rule, head_init="zero")
    before = {n: t.clone() for n, t in learner.state_dict().items()}
    for episode in episodes:
        result = adapt(learner, episode, steps=5)
        assert len(result.support_loss) == 6 and len(result.traces) == 5
        losses = result.support_loss
        assert losses[-1] < losses[0] and min(losses[1:]) < 0.75 * losses[0], losses
        assert set(result.traces[0]) == set(learner.inner_names)
        assert len(result.probabilities) == len(episode.query_x)
        # Softmax divides the n computed exponentials by their own float32 sum (times its reciprocal), so
        # their errors cancel: the n probabilities sum to 1 within gamma_{n-1} (the sum) + 2 u32 (reciprocal,
        # products) <= gamma_{n+1}; adding them up as Python floats costs gamma_{n-1} of float64 more.
        n = episode.n_way
        assert all(abs(sum(p) - 1) <= gamma(n + 1, torch.float32) + gamma(n, torch.float64) for p in result.probabilities)
        assert result.accuracy is not None and 0 <= result.accuracy <= 1
    for n, t in learner.state_dict().items():
        assert torch.equal(t, before[n]), f"adaptation modified the learner's {n}"


def test_head_choices_for_other_class_counts(episodes):
    learner = _learner({"name": "sgd", "lr": 0.4}, n_classes=3)
    episode = episodes[0]
    assert default_head_init(learner, 5) == "prototype" and default_head_init(learner, 3) == "learned"
    alfa = _learner({"name": "alfa", "steps": 2}, n_classes=3)
    assert default_head_init(alfa, 5) == "zero" and default_head_init(alfa, 3) == "learned"
    assert default_head_init(_learner({"name": "sgd"}, head_init="zero", n_classes=3), 5) == "zero"
    with pytest.raises(ValueError, match="meta-learned head has 3 classes"):
        adapt(learner, episode, steps=1, head_init="learned")
    for head in ("zero", "prototype"):
        result = adapt(learner, episode, steps=2, head_init=head)
        assert len(result.probabilities[0]) == 5 and result.head_init == head


def test_zero_steps_with_prototype_head_is_nearest_prototype(image_set):
    learner = _learner({"name": "sgd", "lr": 0.4})
    sampler = EpisodeSampler(image_set, n_way=5, k_shot=3, n_query=15, seed=11)
    results = [adapt(learner, sampler.episode(i), steps=0, head_init="prototype") for i in range(4)]
    assert all(result.support_loss and not result.traces for result in results)
    # Better than chance: prototypes of random conv features already carry signal. By chance each of the
    # 300 queries would be right with probability 1/5, a Binomial(300, 0.2) count (mean 60, sd 6.9); the
    # bar is the count chance reaches with probability at most 0.001 (83). Measured: 147 of 300.
    queries = sum(len(result.predictions) for result in results)
    correct = sum(p == t for result in results for p, t in zip(result.predictions, result.query_labels))
    assert queries == 300 and correct >= binomial_upper_threshold(queries, 1 / 5, 0.001)


def test_unlabelled_queries_and_bad_episodes(episodes):
    learner = _learner({"name": "sgd", "lr": 0.4})
    episode = episodes[0]
    episode.query_y = None
    result = adapt(learner, episode, steps=1)
    assert result.accuracy is None and result.query_labels is None and len(result.predictions) == 20
    empty = type(episode)(episode.support_x, episode.support_y, episode.query_x[:0], None, episode.class_names)
    with pytest.raises(ValueError, match="no query images"):
        adapt(learner, empty, steps=1)
    one_class = type(episode)(episode.support_x[:3], episode.support_y[:3], episode.query_x, None, episode.class_names[:1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        adapt(learner, one_class, steps=1)


def test_concurrent_adaptations_share_one_learner_and_stay_independent(episodes):
    """Two sessions adapting at once with the one cached learner get exactly the results they get alone."""
    from concurrent.futures import ThreadPoolExecutor

    learner = _learner({"name": "alfa", "steps": 5, "lr": 0.4, "generator_init": "identity"}, head_init="zero")
    before = {n: t.clone() for n, t in learner.state_dict().items()}
    alone = [adapt(learner, episode, steps=5) for episode in episodes[:2]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda e: adapt(learner, e, steps=5), [episodes[0], episodes[1]] * 3))
    for index, result in enumerate(together):
        reference = alone[index % 2]
        # Exact: the same operations on the same tensors in one process with one thread setting, and CPU
        # kernels are deterministic; only shared state between the sessions could make them differ.
        assert result.predictions == reference.predictions
        assert result.probabilities == reference.probabilities
        assert result.support_loss == reference.support_loss
    for n, t in learner.state_dict().items():
        assert torch.equal(t, before[n])
