"""Reptile: (x - y_T) / (T inner_lr) for the adapted weights, FO-MAML's query gradient for the others, refusals."""

from __future__ import annotations

import pytest
import torch

from core.config import ConfigError, config_from_dict
from core.meta.estimator import QueryObjective, build_estimator, estimator_spec
from core.meta.inner import inner_loop
from tests.core.meta import bilevel_problem as problem
from tests.tolerances import gamma

STEPS = 5


@pytest.mark.parametrize("rule", ["sgd", "anil"])
@pytest.mark.parametrize("lam", [0.0, problem.LAMBDA])
def test_reptile_is_its_formula(rule, lam):
    model = problem.learner(rule, lam)
    tasks = problem.tasks()
    estimate = build_estimator("reptile", model, STEPS).meta_grad(tasks)
    expected = {}
    for task in tasks:
        x = {n: p.detach() for n, p in model.initial_params().items()}
        # The evaluation path's inner loop (same objective, lambda included): the same operations in the same order.
        y = inner_loop(model, x, task.support_x, task.support_y, STEPS, create_graph=False, differentiable=False).params
        for n in model.inner_names:
            expected[n] = expected.get(n, 0) + (x[n] - y[n].detach()) / (STEPS * problem.LR) / len(tasks)
    for n, want in expected.items():
        got = estimate.grads[f"backbone.{n}"]
        # The same y_T; the estimator scales each task's direction by 1/2 and sums where this divides the sum:
        # a few roundings apart (gamma_4 of the entries' size).
        assert float((got - want).abs().max()) <= gamma(4, torch.float64) * float(want.abs().max()), n
    if rule == "anil":
        # The feature extractor is not adapted: it gets first-order MAML's gradient, the query loss's at y_T.
        first_order = build_estimator("fomaml", model, STEPS).meta_grad(tasks)
        features = [n for n in estimate.grads if n.removeprefix("backbone.") not in model.inner_names]
        assert features
        for n in features:
            # The same query forward pass and backward at the same y_T; the two tasks' halves summed in the same order.
            torch.testing.assert_close(estimate.grads[n], first_order.grads[n], rtol=0,
                                       atol=gamma(4, torch.float64) * float(first_order.grads[n].abs().max()))
        assert abs(estimate.loss - first_order.loss) <= gamma(4, torch.float64) * abs(estimate.loss)


def test_reptile_is_registered_and_refuses_what_it_cannot_train():
    spec = estimator_spec("reptile")
    assert spec.executions == ("loop",) and not spec.needs_proximal and not spec.rule_meta_gradients
    assert config_from_dict({"meta": {"estimator": "reptile"}}).meta.estimator == "reptile"
    for rule in ("meta_sgd", "per_step", "alfa", "alfa_random"):
        with pytest.raises(ConfigError, match=(
            rf"meta.estimator 'reptile' gives no gradient to an inner rule's meta-learned parameters, and rule "
            rf"'{rule}' has some \(its rates would never be trained\): use a rule without meta-learned parameters "
            r"\(sgd, anil\) or an estimator that trains them \(maml, fomaml\)")):
            config_from_dict({"rule": {"name": rule}, "meta": {"estimator": "reptile"}})
    with pytest.raises(ConfigError, match="meta.estimator 'reptile' does not support the multi-step loss"):
        config_from_dict({"meta": {"estimator": "reptile", "multi_step_loss": True}})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) for estimator 'reptile': delta \(known: none\)"):
        config_from_dict({"meta": {"estimator": "reptile", "estimator_options": {"delta": 0.1}}})
    with pytest.raises(ConfigError, match="runs its tasks by loop"):
        config_from_dict({"meta": {"estimator": "reptile", "batched": True}})
    model = problem.learner("sgd")
    with pytest.raises(ValueError, match="does not support the multi-step loss"):
        build_estimator("reptile", model, 3).meta_grad(problem.tasks(), QueryObjective.multi_step(3, 0.0))


def test_a_tiny_training_run_with_reptile_records_it(tmp_path):
    record = problem.train_briefly(tmp_path, "reptile", {}, lam=0.0)
    assert record.estimator == "reptile" and record.config["meta"]["estimator"] == "reptile"
