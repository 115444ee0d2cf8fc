"""Spread of a rule's alpha/beta over held-out episodes: the decomposition, the summary and the real pipeline."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.adapt import adapt
from core.checkpoint import TrainingData, load_learner, read_metadata
from core.data.images import ImageSpec
from core.data.omniglot import OmniglotImageSet
from core.data.sampler import EpisodeSampler
from core.rule_spread import (
    HeldOutDataMissing,
    RuleSpread,
    VarianceShares,
    heldout_image_set,
    rule_spread,
    spread_of_traces,
    variance_shares,
)
from tests.app.builders import TINY_IMAGE, save_tiny_checkpoint, shape_image
from tests.tolerances import gamma, unit_roundoff

REPO = Path(__file__).resolve().parents[2]
# A generator with random weights (not the identity start), so alpha/beta depend on the episode.
EPISODE_DEPENDENT_ALFA = {"name": "alfa", "steps": 3, "lr": 0.4}
# Statistics of the hand-made float64 tables below (values <= 0.7, deviations from their means >= 0.1): each
# is a few sums over at most 6 terms (gamma_6 each), cancellation in x - mean amplifies relative errors at
# most 7 times, and a share or a departure divides two such results: under 100 u64 in all.
HAND_MADE = gamma(100, torch.float64)


def omniglot_tree(root: Path, alphabet: str = "Tagalog", characters: int = 6, drawings: int = 4) -> Path:
    """A tiny Omniglot layout: ``images_background/<alphabet>/characterNN/NN_k.png``, a different shape per character."""
    for c in range(1, characters + 1):
        folder = root / "images_background" / alphabet / f"character{c:02d}"
        folder.mkdir(parents=True)
        for k in range(drawings):
            image = shape_image(c, k + c, size=28).rotate(15 * c)
            image.save(folder / f"{c:02d}_{k}.png")
    return root


@pytest.fixture
def omniglot(tmp_path) -> Path:
    return omniglot_tree(tmp_path / "omniglot")


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_tiny_checkpoint(tmp_path / "alfa.safetensors", rule=EPISODE_DEPENDENT_ALFA)


def test_variance_shares_of_an_additive_table():
    # x[e, j] = a_e + b_j: SS_episode = J * sum (a_e - mean a)^2 = 3 * 2 = 6, SS_step = E * sum (b_j - mean b)^2
    # = 2 * 2 = 4, nothing left for the interaction.
    a, b = np.array([0.0, 2.0]), np.array([0.0, 1.0, 2.0])
    shares = variance_shares(a[:, None] + b[None, :])
    # Small integers: every mean, deviation and sum of squares is exact, so are 6 / 10, 4 / 10 and 0.
    assert (shares.episode, shares.step, shares.interaction) == (0.6, 0.4, 0.0)


def test_variance_shares_of_a_pure_interaction_and_of_constant_values():
    shares = variance_shares(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    assert (shares.episode, shares.step, shares.interaction) == (0.0, 0.0, 1.0)
    assert variance_shares(np.full((4, 5), 0.1)) == VarianceShares(None, None, None)
    with pytest.raises(ValueError, match="episodes x steps"):
        variance_shares(np.zeros(3))


def test_spread_of_hand_made_traces():
    def trace(alphas):
        return [{"w": {"alpha": alpha, "beta": 1.0}} for alpha in alphas]

    layers = spread_of_traces([trace([0.1, 0.3]), trace([0.3, 0.5])])
    assert [layer.layer for layer in layers] == ["w"]
    alpha = layers[0].alpha
    assert alpha.mean == pytest.approx([0.2, 0.4], rel=HAND_MADE, abs=0)
    assert alpha.std == pytest.approx([0.1, 0.1], rel=HAND_MADE, abs=0)
    assert (alpha.minimum, alpha.maximum) == ([0.1, 0.3], [0.3, 0.5])
    assert layers[0].alpha_shares.episode == pytest.approx(0.5, rel=HAND_MADE, abs=0)
    assert layers[0].alpha_shares.step == pytest.approx(0.5, rel=HAND_MADE, abs=0)
    assert layers[0].beta_shares == VarianceShares(None, None, None)
    with pytest.raises(ValueError, match="same inner steps and layers"):
        spread_of_traces([trace([0.1, 0.3]), trace([0.1])])
    with pytest.raises(ValueError, match="no episodes"):
        spread_of_traces([])


def test_alfa_spread_over_held_out_episodes(checkpoint, omniglot):
    spread = rule_spread(checkpoint, "alfa", steps=3, n_way=3, k_shot=1, episodes=4, n_query=2,
                         omniglot_root=omniglot)
    metadata = read_metadata(checkpoint)
    assert tuple(layer.layer for layer in spread.layers) == metadata.inner_tensors
    assert (spread.episodes, spread.steps, spread.rule, spread.data) == (4, 3, "alfa", "omniglot: Tagalog")
    assert len(spread.accuracies) == 4 and all(0.0 <= a <= 1.0 for a in spread.accuracies)
    for layer in spread.layers:
        for values in (layer.alpha, layer.beta):
            assert len(values.mean) == 3
            assert all(lo <= m <= hi for lo, m, hi in zip(values.minimum, values.mean, values.maximum))
    # The generator reads the episode's weights and gradients, so the episode moves alpha.
    assert any(layer.alpha_shares.episode > 0.01 for layer in spread.layers)
    assert any(max(layer.alpha.std) > 0 for layer in spread.layers)

    # Task 0 of the same sampler, adapted directly, lies inside the band; one episode alone is its mean.
    learner, _ = load_learner(checkpoint, rule="alfa")
    image_set = OmniglotImageSet(omniglot, alphabets=["Tagalog"], spec=ImageSpec.from_dict(TINY_IMAGE))
    first = adapt(learner, EpisodeSampler(image_set, 3, 1, 2, seed=0).episode(0), 3)
    for layer in spread.layers:
        for step, values in enumerate(first.traces):
            assert layer.alpha.minimum[step] <= values[layer.layer]["alpha"] <= layer.alpha.maximum[step]
    alone = rule_spread(checkpoint, "alfa", steps=3, n_way=3, k_shot=1, episodes=1, n_query=2, omniglot_root=omniglot)
    # The mean of one episode is its value divided by one: exact.
    assert alone.layers[0].alpha.mean == [step[alone.layers[0].layer]["alpha"] for step in first.traces]

    # Seeded: the same call gives the same numbers, and the result survives JSON.
    again = rule_spread(checkpoint, "alfa", steps=3, n_way=3, k_shot=1, episodes=4, n_query=2, omniglot_root=omniglot)
    assert again.layers == spread.layers
    assert RuleSpread.from_dict(json.loads(json.dumps(spread.to_dict()))) == spread


def test_sgd_has_no_spread_and_no_variance_to_share(checkpoint, omniglot):
    done = []
    spread = rule_spread(checkpoint, "sgd", steps=2, n_way=2, k_shot=1, episodes=3, n_query=1,
                         omniglot_root=omniglot, on_episode=lambda i, n: done.append((i, n)))
    assert done == [(1, 3), (2, 3), (3, 3)]
    for layer in spread.layers:
        # Three copies of 0.4 rounded to float32 (u32 off 0.4), averaged in float64 (gamma_3 more).
        sgd_rate = pytest.approx([0.4, 0.4], rel=unit_roundoff(torch.float32) + gamma(3, torch.float64), abs=0)
        assert layer.alpha.mean == sgd_rate and layer.alpha.std == [0.0, 0.0]
        assert layer.beta.minimum == layer.beta.maximum == [1.0, 1.0]
        assert layer.alpha_shares == layer.beta_shares == VarianceShares(None, None, None)


def test_missing_held_out_data_is_said_in_one_line(checkpoint, tmp_path):
    with pytest.raises(HeldOutDataMissing, match=r"held-out Omniglot alphabets \(Tagalog\) are not under"):
        rule_spread(checkpoint, "alfa", steps=3, n_way=3, k_shot=1, omniglot_root=tmp_path / "empty")
    metadata = read_metadata(checkpoint)
    with pytest.raises(HeldOutDataMissing, match="does not record its held-out"):
        heldout_image_set(dataclasses.replace(
            metadata, training=dataclasses.replace(metadata.training, data=TrainingData(kind="omniglot", root=None))
        ))
    with pytest.raises(HeldOutDataMissing, match="not an image classifier"):
        heldout_image_set(dataclasses.replace(metadata, image=None))


def test_more_ways_than_held_out_classes_is_a_clear_error(checkpoint, omniglot):
    with pytest.raises(ValueError, match="too few for 20-way"):
        rule_spread(checkpoint, "alfa", steps=3, n_way=20, k_shot=1, omniglot_root=omniglot)


def test_shipped_alfa_checkpoint_on_real_omniglot(real_omniglot):
    path = REPO / "assets" / "checkpoints" / "conv4_alfa_maml.safetensors"
    spread = rule_spread(path, "alfa", steps=5, n_way=5, k_shot=1, episodes=3, omniglot_root=real_omniglot)
    assert spread.data == "omniglot: Japanese_(katakana), Tagalog"
    assert tuple(layer.layer for layer in spread.layers) == read_metadata(path).inner_tensors
    # 93 % on held-out alphabets when shipped; chance is 20 %. Over these 75 queries the binomial standard
    # error is 3 points at 93 % (0.5 is 14 of them below), and chance (Binomial(75, 0.2)) passes 0.5 with
    # probability 3e-9.
    assert np.mean(spread.accuracies) > 0.5
    assert any(layer.alpha_shares.episode is not None and layer.alpha_shares.episode > 0 for layer in spread.layers)


def test_departure_of_an_episode_from_the_spread():
    def trace(alphas, beta=1.0):
        return [{"w": {"alpha": alpha, "beta": beta}} for alpha in alphas]

    layer = spread_of_traces([trace([0.1, 0.3]), trace([0.3, 0.5])])[0]  # alpha mean 0.2, 0.4; std 0.1; beta fixed
    assert layer.departure([0.2, 0.4], [1.0, 1.0]) == pytest.approx(0.0, rel=0, abs=HAND_MADE)
    assert layer.departure([0.2, 0.7], [1.0, 1.0]) == pytest.approx(3.0, rel=HAND_MADE, abs=0)
    assert layer.departure([0.2, 0.4], [1.0, 0.9]) == float("inf")  # beta never varied, this episode's did


def test_a_checkpoint_changed_since_the_run_is_refused(checkpoint, omniglot):
    with pytest.raises(ValueError, match="has changed since this run"):
        rule_spread(checkpoint, "alfa", steps=3, n_way=3, k_shot=1, episodes=1, omniglot_root=omniglot,
                    expected_sha256="0" * 64)
