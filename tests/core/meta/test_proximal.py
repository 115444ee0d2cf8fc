"""``meta.proximal_lambda``: the inner problem support loss + lambda/2 ||y - x||^2, formed once in the inner step and
used by every execution of the meta-gradient, by evaluation, and by adaptation of a checkpoint trained with it."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from core.adapt import adapt_regression
from core.checkpoint import load_learner
from core.checkpoint.format import read_header
from core.config import ADDED_META_KEYS, ConfigError, TrainConfig, config_from_dict
from core.meta.estimator import QueryObjective
from core.meta.inner import forward, inner_loop, inner_objective, prepare_head, task_loss
from tests.core.meta.test_maml_gradients import (
    _estimate,
    _float64_error,
    _in_float32,
    _learner,
    _tiny_task,
    _trainable,
)
from tests.core.meta.test_outer_step import _raw, _trainer
from tests.tolerances import gamma


def test_zero_lambda_is_the_plain_support_loss_itself():
    """At 0 the inner objective is the very support-loss tensor: every gradient is computed by the same operations as
    before the option existed, so MAML and FO-MAML are bit for bit today's (their own tests pin those values)."""
    learner = _learner({"name": "sgd", "lr": 0.3})
    assert learner.proximal_lambda == 0.0
    task = _tiny_task(0)
    params = learner.initial_params()
    loss = task_loss(learner, forward(learner, params, task.support_x), task.support_y)
    assert inner_objective(learner, loss, params, dict(params)) is loss
    # And a learner with lambda = 0 set explicitly gives exactly the default learner's meta-gradients.
    explicit = copy.deepcopy(learner)
    explicit.proximal_lambda = 0.0
    for second_order in (True, False):
        a, _ = _estimate(learner, [task], second_order)
        b, _ = _estimate(explicit, [task], second_order)
        for name in a:
            assert torch.equal(a[name], b[name])


def test_the_inner_step_descends_the_proximal_objective():
    """Two SGD steps by hand: y1 = x - lr g(x), y2 = y1 - lr (g(y1) + lambda (y1 - x))."""
    learner = _learner({"name": "sgd", "lr": 0.3})
    learner.proximal_lambda = 0.7
    task = _tiny_task(1)
    x = {n: p.detach() for n, p in learner.initial_params().items()}
    got = inner_loop(learner, x, task.support_x, task.support_y, 2, create_graph=False, differentiable=False).params

    def support_grad(y):
        y = {n: p.detach().requires_grad_(n in learner.inner_names) for n, p in y.items()}
        loss = task_loss(learner, forward(learner, y, task.support_x), task.support_y)
        return dict(zip(learner.inner_names, torch.autograd.grad(loss, [y[n] for n in learner.inner_names])))

    g0 = support_grad(x)
    y1 = {n: (x[n] - 0.3 * g0[n] if n in g0 else x[n]) for n in x}
    g1 = support_grad(y1)
    for n in learner.inner_names:
        want = y1[n] - 0.3 * (g1[n] + 0.7 * (y1[n] - x[n]))
        # Same operations up to the order of the two gradient terms' sum and the factor 0.5 * lambda * 2 of
        # autograd's derivative of the square: a few roundings of numbers no larger than |y1| + lr |g1| + ...
        scale = float(y1[n].abs().max() + 0.3 * (g1[n].abs().max() + 0.7 * (y1[n] - x[n]).abs().max()))
        assert float((got[n] - want).abs().max()) <= gamma(8, torch.float64) * scale, n
    # The anchor is the adaptation's start: with lambda the adapted weights move less far from it.
    plain = copy.deepcopy(learner)
    plain.proximal_lambda = 0.0
    free = inner_loop(plain, x, task.support_x, task.support_y, 2, create_graph=False, differentiable=False).params
    assert any(not torch.equal(free[n], got[n]) for n in learner.inner_names)


@pytest.mark.parametrize("rule,head_init", [
    ({"name": "sgd", "lr": 0.3}, "prototype"),
    ({"name": "meta_sgd", "lr": 0.2}, "learned"),
    ({"name": "anil", "lr": 0.3}, "prototype"),
])
def test_every_execution_gives_the_same_proximal_meta_gradient(rule, head_init):
    """loop, recompute and vmap with lambda > 0, second and first order, agree to rounding; and lambda changes the
    second-order gradient (the term -lambda (y - x) is differentiated with respect to x as well)."""
    learner = _learner(rule, head_init)
    learner.proximal_lambda = 0.8
    learner32 = copy.deepcopy(learner).float()
    tasks = [_tiny_task(s) for s in range(2)]
    for second_order in (True, False):
        loop, _ = _estimate(learner, tasks, second_order)
        loop32, _ = _estimate(learner32, _in_float32(tasks), second_order)
        for execution in ("recompute", "vmap"):
            other, _ = _estimate(learner, tasks, second_order, execution)
            other32, _ = _estimate(learner32, _in_float32(tasks), second_order, execution)
            # As in test_maml_gradients: each float64 result is off the exact one by its float32-sized bound.
            tolerance = _float64_error(loop, loop32) + _float64_error(other, other32)
            for name in loop:
                assert float((other[name] - loop[name]).abs().max()) <= tolerance, (execution, second_order, name)
    plain = copy.deepcopy(learner)
    plain.proximal_lambda = 0.0
    without, _ = _estimate(plain, tasks, True)
    with_lambda, _ = _estimate(learner, tasks, True)
    assert any(not torch.allclose(without[n], with_lambda[n], rtol=1e-6) for n in without)
    assert set(with_lambda) == set(_trainable(learner))


@pytest.mark.parametrize("second_order", [True, False])
def test_the_multi_step_loss_works_on_the_proximal_objective_in_every_execution(second_order):
    """MAML and FO-MAML keep MAML++'s multi-step loss with lambda > 0: loop, recompute and vmap agree to rounding."""
    learner = _learner({"name": "sgd", "lr": 0.3}, "prototype")
    learner.proximal_lambda = 0.8
    learner32 = copy.deepcopy(learner).float()
    tasks = [_tiny_task(s) for s in range(2)]
    objective32 = QueryObjective.multi_step(3, 0.3)
    objective = QueryObjective(objective32.step_weights.double())
    loop, _ = _estimate(learner, tasks, second_order, objective=objective)
    loop32, _ = _estimate(learner32, _in_float32(tasks), second_order, objective=objective32)
    last, _ = _estimate(learner, tasks, second_order)
    assert any(not torch.allclose(loop[n], last[n], rtol=1e-6) for n in loop)  # the weights matter
    for execution in ("recompute", "vmap"):
        other, _ = _estimate(learner, tasks, second_order, execution, objective)
        other32, _ = _estimate(learner32, _in_float32(tasks), second_order, execution, objective32)
        tolerance = _float64_error(loop, loop32) + _float64_error(other, other32)
        for name in loop:
            assert float((other[name] - loop[name]).abs().max()) <= tolerance, (execution, name)


def test_config_reads_checks_and_records_proximal_lambda():
    assert config_from_dict({}).meta.proximal_lambda == 0.0
    config = config_from_dict({"meta": {"proximal_lambda": 2}})
    assert config.meta.proximal_lambda == 2.0 and config_from_dict(config.to_dict()) == config
    for bad in (-1.0, math.inf, "1", True):
        with pytest.raises(ConfigError, match=r"meta.proximal_lambda must be a finite number >= 0 \(0 = no proximal"):
            config_from_dict({"meta": {"proximal_lambda": bad}})
    # Stored configs written before the option trained on the plain support loss.
    assert ADDED_META_KEYS["proximal_lambda"] == 0.0


def test_a_checkpoint_adapts_and_validates_with_its_own_lambda(tmp_path, monkeypatch):
    raw = _raw(tmp_path, {"proximal_lambda": 1.5})
    trainer = _trainer(raw)
    assert trainer.learner.proximal_lambda == 1.5
    trainer.step(0)
    trainer.iteration = 1
    trainer.save_state()
    path = trainer.save_deployable("last.safetensors", None)
    learner, metadata = load_learner(path)
    assert learner.proximal_lambda == 1.5 and metadata.training.train_config().meta.proximal_lambda == 1.5
    # Another rule on the same checkpoint solves the same inner problem.
    assert learner.with_rule("anil").proximal_lambda == 1.5
    # Adaptation of the loaded checkpoint is the trained learner's adaptation, lambda included.
    task = trainer.val_source.task(0)
    assert adapt_regression(learner, task, 3) == adapt_regression(trainer.learner.eval(), task, 3)
    plain = copy.deepcopy(learner)
    plain.proximal_lambda = 0.0
    assert adapt_regression(plain, task, 3) != adapt_regression(learner, task, 3)
    # A checkpoint whose stored config has no proximal_lambda (written before the option) adapts with 0.
    full = TrainConfig.to_dict

    def as_before(self):
        stored = full(self)
        del stored["meta"]["proximal_lambda"]
        return stored

    monkeypatch.setattr(TrainConfig, "to_dict", as_before)
    old = trainer.save_deployable("old.safetensors", None)
    monkeypatch.undo()
    assert "proximal_lambda" not in read_header(old)["training"]["config"]["meta"]
    assert load_learner(old)[0].proximal_lambda == 0.0


def test_resuming_with_another_lambda_is_refused(tmp_path):
    trainer = _trainer(_raw(tmp_path, {"proximal_lambda": 1.0}))
    trainer.step(0)
    trainer.iteration = 1
    trainer.save_state()
    assert _trainer(_raw(tmp_path, {"proximal_lambda": 1.0})).load_state()
    with pytest.raises(ValueError, match="differs in: meta"):
        _trainer(_raw(tmp_path, {"proximal_lambda": 2.0})).load_state()


def test_prepare_head_anchor_is_the_prepared_head():
    """With a prototype head the proximal centre is the prototype head the adaptation starts from."""
    learner = _learner({"name": "sgd", "lr": 0.3}, "prototype")
    learner.proximal_lambda = 5.0
    task = _tiny_task(3)
    start = prepare_head(learner, learner.initial_params(), task.support_x, task.support_y, 3, "prototype")
    start = {n: p.detach() for n, p in start.items()}
    # Zero steps: nothing moves; one step: the proximal gradient at the start is zero, so lambda changes nothing.
    one = inner_loop(learner, start, task.support_x, task.support_y, 1, create_graph=False, differentiable=False)
    plain = copy.deepcopy(learner)
    plain.proximal_lambda = 0.0
    one_plain = inner_loop(plain, start, task.support_x, task.support_y, 1, create_graph=False, differentiable=False)
    for n in learner.inner_names:
        assert torch.equal(one.params[n], one_plain.params[n])
