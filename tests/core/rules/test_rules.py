"""Each inner-loop rule applies exactly the update its paper writes down."""

from __future__ import annotations

import math

import pytest
import torch

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import build_estimator
from core.rules import build_rule
from core.rules.alfa import ALFAOptions, ALFARandomRule, ALFARule
from core.rules.meta_sgd import MetaSGDOptions, MetaSGDRule
from core.rules.per_step import PerStepOptions, PerStepRule
from core.rules.sgd import SGDOptions, SGDRule
from tests.tolerances import unit_roundoff

SHAPES = {"a.weight": torch.Size([3, 4]), "a.bias": torch.Size([3]), "b.weight": torch.Size([2, 3])}
NAMES = list(SHAPES)

# The rules update element by element: each new value is one multiply and one subtract (ALFA: two multiplies
# and a subtract), each correctly rounded by whichever kernel runs it, with nothing a kernel could reorder or
# fuse. Where a test writes the same expression with the same float32 operands, the results are equal.
EXACT = {"rtol": 0, "atol": 0}


def _params_and_grads(seed=0):
    g = torch.Generator().manual_seed(seed)
    params = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    grads = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    return params, grads


def test_sgd_update_and_trace():
    params, grads = _params_and_grads()
    new, trace = SGDRule(NAMES, SHAPES, SGDOptions(lr=0.25)).step(params, grads, 0, {})
    for n in NAMES:
        torch.testing.assert_close(new[n], params[n] - 0.25 * grads[n], **EXACT)  # same operations and operands
        assert float(trace.alpha[n]) == 0.25 and float(trace.beta[n]) == 1.0


def test_per_step_rule_uses_the_rate_of_each_step_and_clamps_past_the_last():
    rule = PerStepRule(NAMES, SHAPES, PerStepOptions(steps=3, lr=0.1))
    with torch.no_grad():
        for rates in rule.rates.values():
            rates.copy_(torch.tensor([0.1, 0.2, 0.3]))
    params, grads = _params_and_grads()
    for step, rate in [(0, 0.1), (2, 0.3), (7, 0.3)]:
        new, trace = rule.step(params, grads, step, {})
        # torch multiplies a float32 tensor by a Python number in float32: the same operand as the stored rate.
        torch.testing.assert_close(new["a.bias"], params["a.bias"] - rate * grads["a.bias"], **EXACT)
        # The stored rate is the Python number rounded once to float32: within u32 of it, relatively.
        assert float(trace.alpha["a.bias"]) == pytest.approx(rate, rel=unit_roundoff(torch.float32), abs=0)


def test_meta_sgd_is_elementwise():
    rule = MetaSGDRule(NAMES, SHAPES, MetaSGDOptions(lr=0.1))
    with torch.no_grad():
        rule.rates["a-weight"].uniform_(0.0, 1.0)
    params, grads = _params_and_grads()
    new, trace = rule.step(params, grads, 0, {})
    torch.testing.assert_close(new["a.weight"], params["a.weight"] - rule.rates["a-weight"] * grads["a.weight"], **EXACT)
    assert float(trace.alpha["a.weight"]) == float(rule.rates["a-weight"].detach().mean())  # the same reduction


def test_alfa_generator_input_layout_and_output_split():
    rule = ALFARule(NAMES, SHAPES, ALFAOptions(steps=2))
    params, grads = _params_and_grads(1)
    params = {n: p.requires_grad_() for n, p in params.items()}
    grads = {n: g.requires_grad_() for n, g in grads.items()}
    state = rule.generator_input(params, grads)
    expected = torch.tensor([float(params[n].mean()) for n in NAMES] + [float(grads[n].mean()) for n in NAMES])
    # Exact: each float32 mean goes through a Python float (exactly) and back to float32 (exactly).
    torch.testing.assert_close(state.detach(), expected, **EXACT)
    # Weight means carry gradient (they are part of the task state), gradient means are constants.
    assert state.requires_grad
    state[len(NAMES):].sum().backward()
    assert all(g.grad is None for g in grads.values())
    assert rule.generator[0].in_features == 2 * len(NAMES) == rule.generator[2].out_features
    alpha_tilde, beta_tilde, used = rule.generate(params, grads)
    full = rule.generator(rule.generator_input(params, grads))
    torch.testing.assert_close(alpha_tilde, full[: len(NAMES)], **EXACT)  # the same call on the same input
    torch.testing.assert_close(beta_tilde, full[len(NAMES):], **EXACT)
    torch.testing.assert_close(used, state, **EXACT)


def test_normalised_learning_state_is_scale_free_agreement_and_log_rms():
    rule = ALFARule(NAMES, SHAPES, ALFAOptions(steps=2, learning_state="normalised"))
    params, grads = _params_and_grads(4)
    grads["a.bias"] = torch.zeros_like(grads["a.bias"])  # a layer with no gradient (behind a zero head)
    state = rule.generator_input(params, grads).detach().double()
    n = len(NAMES)
    assert rule.state_size == 3 * n == rule.generator[0].in_features and rule.generator[2].out_features == 2 * n
    for index, name in enumerate(NAMES):
        g = grads[name].double()
        rms = float(g.pow(2).mean().sqrt())
        agreement = float(g.mean()) / rms if rms > 0 else 0.0
        # float32 means and square roots of a handful of elements: a few float32 ulps of values of order one.
        eps = torch.finfo(torch.float32).eps
        assert abs(float(state[n + index]) - agreement) <= 8 * eps
        assert abs(float(state[2 * n + index]) - math.log10(rms + 1e-8)) <= 8 * eps * 8
        assert -1 <= float(state[n + index]) <= 1
    assert float(state[2 * n + NAMES.index("a.bias")]) == pytest.approx(-8.0)
    # Scaling every gradient by 10 leaves the agreement and adds one to log10(rms) (for rms >> 1e-8).
    scaled = rule.generator_input(params, {k: 10 * g for k, g in grads.items()}).detach().double()
    torch.testing.assert_close(scaled[n: 2 * n], state[n: 2 * n], rtol=0, atol=8 * torch.finfo(torch.float32).eps)
    nonzero = [2 * n + i for i, name in enumerate(NAMES) if name != "a.bias"]
    torch.testing.assert_close(scaled[nonzero], state[nonzero] + 1, rtol=0, atol=1e-5)


def test_frozen_learning_state_replaces_the_tasks_and_is_recorded():
    rule = ALFARule(NAMES, SHAPES, ALFAOptions(steps=2))
    params, grads = _params_and_grads(5)
    other_params, other_grads = _params_and_grads(6)
    real, trace = rule.step(params, grads, 1, {})
    torch.testing.assert_close(trace.learning_state, rule.generator_input(params, grads).detach(), **EXACT)
    frozen = torch.stack([torch.zeros(2 * len(NAMES)), trace.learning_state])  # step 1 reads this task's state
    rule.freeze_learning_state(frozen)
    # Another task's weights and gradients, but the same tau: the same alpha/beta as the first task got.
    _, frozen_trace = rule.step(other_params, other_grads, 1, {})
    for name in NAMES:
        assert float(frozen_trace.alpha[name]) == float(trace.alpha[name])
    torch.testing.assert_close(frozen_trace.learning_state, trace.learning_state, **EXACT)
    with pytest.raises(ValueError, match=r"must be \(steps, 6\)"):
        rule.freeze_learning_state(torch.zeros(2, 5))
    rule.freeze_learning_state(None)
    again, _ = rule.step(params, grads, 1, {})
    for name in NAMES:
        torch.testing.assert_close(again[name], real[name], **EXACT)


def test_unknown_learning_state_is_refused():
    with pytest.raises(ValueError, match="learning_state must be 'means' or 'normalised'"):
        ALFAOptions(learning_state="sign")


@pytest.mark.parametrize("random_init", [False, True])
def test_alfa_applied_update_equals_equation_elementwise(random_init):
    rule_class = ALFARandomRule if random_init else ALFARule
    rule = rule_class(NAMES, SHAPES, ALFAOptions(steps=3, lr=0.01, weight_decay=5e-4))
    with torch.no_grad():
        rule.alpha0.uniform_(0.0, 0.1)
        rule.beta0.uniform_(0.0, 0.1)
        if random_init:
            for d in rule.decay.values():
                d.uniform_(0.0, 1.0)
    params, grads = _params_and_grads(2)
    step = 1
    new, trace = rule.step(params, grads, step, {})
    out = rule.generator(torch.cat([torch.stack([params[n].mean() for n in NAMES]), torch.stack([grads[n].mean() for n in NAMES])]))
    for index, n in enumerate(NAMES):
        a_t, b_t = out[index], out[len(NAMES) + index]
        alpha = a_t * rule.alpha0[step, index]
        shrink = b_t * rule.beta0[step, index]
        if random_init:
            shrink = rule.decay[n.replace(".", "-")] * shrink
        expected = (1 - shrink) * params[n] - alpha * grads[n]
        # Exact: the generator sees the same means in the same layout (the same Linear calls on the same
        # input), and eq. (7) is the same element-wise operations on the same operands.
        torch.testing.assert_close(new[n], expected, **EXACT)
        assert float(trace.alpha[n]) == float(alpha)
        assert float(trace.beta[n]) == float((1 - shrink).mean())


def test_alfa_initial_post_multipliers_follow_the_reference():
    rule = ALFARule(NAMES, SHAPES, ALFAOptions(steps=5, lr=0.01, weight_decay=5e-4))
    assert rule.alpha0.shape == (5, len(NAMES))
    # Exact: 5e-4 * 0.01 is the double 5e-6, so both sides round the same double to float32.
    torch.testing.assert_close(rule.alpha0, torch.full((5, 3), 0.01), **EXACT)
    torch.testing.assert_close(rule.beta0, torch.full((5, 3), 5e-6), **EXACT)
    random = ALFARandomRule(NAMES, SHAPES, ALFAOptions(steps=5))
    torch.testing.assert_close(random.beta0, torch.ones(5, 3), **EXACT)
    torch.testing.assert_close(random.decay["a-weight"], torch.full((3, 4), 5e-6), **EXACT)


def test_identity_generator_init_starts_as_sgd_with_decay():
    rule = ALFARule(NAMES, SHAPES, ALFAOptions(steps=2, lr=0.05, weight_decay=0.0, generator_init="identity"))
    params, grads = _params_and_grads(3)
    new, _ = rule.step(params, grads, 0, {})
    # Exact: a zero last layer with bias one outputs exactly 1, so the rates are exactly 0.05 (float32) and
    # the decay exactly 0, leaving the same multiply and subtract as plain SGD.
    for n in NAMES:
        torch.testing.assert_close(new[n], params[n] - 0.05 * grads[n], **EXACT)


def test_alfa_random_init_never_changes_the_backbone():
    backbone = {"name": "conv4", "in_channels": 1, "image_size": 8, "filters": 3, "n_blocks": 2, "n_classes": 2}
    learner = Learner(backbone, {"name": "alfa_random", "steps": 2}, head_init="zero", seed=0)
    before = {n: p.clone() for n, p in learner.backbone.named_parameters()}
    estimator = build_estimator("maml", learner, inner_steps=2)
    trainable = {n: p for n, p in learner.named_parameters() if p.requires_grad}
    assert not any(n.startswith("backbone.") for n in trainable)
    # The frozen backbone is Xavier-uniform with zero biases.
    params = dict(learner.backbone.named_parameters())
    assert all(float(params[n].abs().max()) == 0 for n in learner.inner_names if n.endswith("bias"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 8, 8, generator=g)
    task = Task(x, torch.tensor([0, 0, 1, 1]), x.clone(), torch.tensor([0, 0, 1, 1]), class_names=["a", "b"])
    optimizer = torch.optim.Adam(trainable.values(), lr=0.1)
    grads = estimator.meta_grad([task]).grads
    for n, p in trainable.items():
        p.grad = grads[n]
    optimizer.step()
    assert any(float(grads[n].abs().sum()) > 0 for n in grads)
    for n, p in learner.backbone.named_parameters():
        assert torch.equal(p, before[n]), n
        assert not p.requires_grad


def test_build_rule_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown inner-loop rule"):
        build_rule({"name": "adam"}, NAMES, SHAPES)
