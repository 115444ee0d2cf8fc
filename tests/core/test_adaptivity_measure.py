"""The adaptivity measure (``core.rule_spread``) on synthetic ALFA generators whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from core.checkpoint import load_learner
from core.data.images import ImageSpec
from core.data.omniglot import OmniglotImageSet
from core.data.sampler import EpisodeSampler
from core.rule_spread import rule_spread
from tests.app.builders import TINY_IMAGE, save_tiny_checkpoint
from tests.core.test_rule_spread import omniglot_tree
from tests.tolerances import gamma, unit_roundoff

RULE = {"name": "alfa", "steps": 1, "lr": 0.4, "weight_decay": 0.0}
GAIN = 1e3  # alpha~_l = 1 + GAIN * mean(grad_l): large enough that the episodes visibly differ
EPISODES = 6


@pytest.fixture
def setup(tmp_path):
    root = omniglot_tree(tmp_path / "omniglot", characters=6, drawings=4)
    checkpoint = save_tiny_checkpoint(tmp_path / "alfa.safetensors", rule=RULE)
    return root, checkpoint


def _loader_with(generator_weights):
    def loader(path, rule, device):
        learner, metadata = load_learner(path, rule=rule, device=device)
        generator_weights(learner.rule)
        return learner, metadata

    return loader


def _ignore_input(rule) -> None:
    with torch.no_grad():
        rule.generator[0].weight.normal_()  # reads everything...
        rule.generator[2].weight.zero_()  # ...and outputs none of it
        rule.generator[2].bias.fill_(1.5)


def _gain_on_gradient_means(rule) -> None:
    """alpha~_l = 1 + GAIN * mean(grad_l) and beta~ = 1, with no cancellation: h = [relu(g), relu(-g)] exactly
    (weights 0 and +-1), then GAIN * h+ - GAIN * h- + 1 (one of the two is zero)."""
    n = len(rule.layer_names)
    with torch.no_grad():
        first, last = rule.generator[0], rule.generator[2]
        first.weight.zero_(), first.bias.zero_(), last.weight.zero_()
        first.weight[:n, n:] = torch.eye(n)
        first.weight[n:, n:] = -torch.eye(n)
        last.weight[:n, :n] = GAIN * torch.eye(n)
        last.weight[:n, n:] = -GAIN * torch.eye(n)
        last.bias.fill_(1.0)


def test_a_generator_that_ignores_its_input_has_no_spread(setup):
    root, checkpoint = setup
    spread = rule_spread(checkpoint, "alfa", steps=1, n_way=5, k_shot=1, episodes=EPISODES, n_query=1,
                         omniglot_root=root, loader=_loader_with(_ignore_input))
    for layer in spread.layers:
        # Exact: every episode runs the same float operations on the same generator output.
        assert layer.alpha.std == [0.0] and layer.beta.std == [0.0]
        assert layer.alpha.minimum == layer.alpha.maximum
        assert layer.alpha_shares.episode is None  # nothing varies, so there is nothing to share out


def test_a_generator_reading_gradient_means_has_the_spread_computed_by_hand(setup):
    root, checkpoint = setup
    spread = rule_spread(checkpoint, "alfa", steps=1, n_way=5, k_shot=1, episodes=EPISODES, n_query=1,
                         omniglot_root=root, loader=_loader_with(_gain_on_gradient_means))
    assert spread.head_init == "learned"  # 5-way: the trained head, so every layer has a gradient at step 0

    # By hand: the support gradient of the initial weights, its layer means, alpha = alpha0 * (1 + GAIN * mean).
    learner, _ = load_learner(checkpoint, rule="alfa")
    image_set = OmniglotImageSet(root, alphabets=["Tagalog"], spec=ImageSpec.from_dict(TINY_IMAGE))
    names = learner.inner_names
    expected, mean_abs_grad = [], np.zeros(len(names))
    for episode in EpisodeSampler(image_set, 5, 1, 1, seed=0).episodes(EPISODES):
        params = {n: p.detach().requires_grad_() for n, p in learner.backbone.named_parameters()}
        loss = torch.nn.functional.cross_entropy(functional_call(learner.backbone, params, (episode.support_x,)),
                                                 episode.support_y)
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        means = np.array([float(g.double().mean()) for g in grads])
        mean_abs_grad = np.maximum(mean_abs_grad, [float(g.double().abs().mean()) for g in grads])
        expected.append(float(learner.rule.alpha0[0, 0]) * (1 + GAIN * means))
    expected = np.array(expected)  # episodes x layers
    assert expected.std(axis=0).max() > 1e-3  # the construction really makes alpha depend on the episode

    u32 = unit_roundoff(torch.float32)
    largest = max(p.numel() for p in learner.backbone.parameters())
    alpha0 = float(learner.rule.alpha0[0, 0])
    for index, layer in enumerate(spread.layers):
        assert layer.layer == names[index]
        # Per episode: the rule's float32 layer mean differs from the float64 mean of the same float32 gradient
        # by at most gamma(n) * mean|g| (a sum of n terms, then one division); GAIN * mean + 1 and the product
        # with alpha0 add three roundings of |alpha|. The float32 gradient itself is the same computation
        # (functional_call on the same weights and images) up to the order of reductions, bounded the same way.
        per_episode = (alpha0 * GAIN * 2 * gamma(largest, torch.float32) * mean_abs_grad[index]
                       + 4 * u32 * np.abs(expected[:, index]).max())
        # The population std moves by at most the largest change of one value (it is 1-Lipschitz in max norm).
        assert abs(layer.alpha.std[0] - expected[:, index].std()) <= per_episode
        assert abs(layer.alpha.mean[0] - expected[:, index].mean()) <= per_episode
        assert layer.beta.std == [0.0]  # beta~ = 1 exactly and no weight decay: beta = 1 in every episode
