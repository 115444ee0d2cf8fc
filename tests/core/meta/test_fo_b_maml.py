"""FO-B-MAML, forward difference: against the dense implicit gradient and second-order MAML on the proximal objective,
its O(delta) bias, refusals, a tiny training run. The symmetric estimator: test_fo_b_maml_sym.py."""

from __future__ import annotations

import pytest
import torch

from core.config import ConfigError, config_from_dict
from core.meta.estimator import QueryObjective, build_estimator, estimator_spec
from tests.core.meta import bilevel_problem as problem
from tests.tolerances import gamma

DELTA = 1e-4


def _estimate(model, tasks, name: str, delta: float):
    return build_estimator(name, model, problem.CONVERGED_STEPS, options={"delta": delta}).meta_grad(tasks)


@pytest.mark.parametrize("rule", ["sgd", "anil"])
def test_forward_fo_b_maml_is_the_implicit_gradient_up_to_its_order_delta_bias(rule):
    model = problem.learner(rule)
    tasks = problem.tasks()
    exact, per_task = problem.exact_meta_gradient(model, tasks)
    assert max(e.residual for e in per_task) < 1e-13  # the inner problems are solved (the fixture's premise)
    at_delta = _estimate(model, tasks, "fo_b_maml", DELTA)
    at_2delta = _estimate(model, tasks, "fo_b_maml", 2 * DELTA)
    # D(delta) = grad F + a delta + b delta^2 + ... (Taylor in delta of the perturbed solution), so
    # D(2 delta) - D(delta) = a delta + 3 b delta^2: the bias a delta itself to leading order, twice it covering a
    # second-order term up to a fifth of the first (Richardson's estimate, as in tests/tolerances.py). The inner
    # problems are solved to rounding, and each evaluation's rounding enters divided by delta.
    truncation = 2 * problem.max_error(at_2delta.grads, at_delta.grads)
    rounding = 2 * problem.perturbation_rounding(per_task, exact) / DELTA
    error = problem.max_error(at_delta.grads, exact)
    assert error <= truncation + rounding
    # A first-order estimate: halving delta halves the error. Its leading term a delta halves exactly and the
    # ratio is 2 (1 + O(delta)); the band 1.5 to 2.5 tells order one from order zero (1) and order two (4).
    error_2delta = problem.max_error(at_2delta.grads, exact)
    assert 1.5 <= error_2delta / error <= 2.5
    # Second-order MAML on the proximal objective agrees within both bounds.
    maml = build_estimator("maml", model, problem.CONVERGED_STEPS).meta_grad(tasks)
    maml_bound = problem.maml_error_bound(per_task, float(problem.flat(exact).abs().max()))
    assert problem.max_error(at_delta.grads, maml.grads) <= truncation + rounding + maml_bound
    # The reported loss is the query loss at y_0, MAML's.
    n = per_task[0].hessian.shape[0]
    assert abs(at_delta.loss - maml.loss) <= gamma(n, torch.float64) * abs(maml.loss)


def test_forward_fo_b_maml_for_the_initialisation_is_lambda_times_the_solution_difference():
    """lambda (y_0 - y_delta) / delta, with both inner problems solved by the estimator's own first-order steps."""
    from core.meta.first_order import first_order_adapt, starting_weights

    model = problem.learner("sgd")
    task = problem.task(1)
    estimate = build_estimator("fo_b_maml", model, 20, options={"delta": 0.01}).meta_grad([task])
    start = starting_weights(model, task, "learned")
    y_0, _ = first_order_adapt(model, start, task, 20)
    y_delta, _ = first_order_adapt(model, start, task, 20, 0.01)
    for n in model.inner_names:
        want = problem.LAMBDA * (y_0[n] - y_delta[n]) / 0.01
        torch.testing.assert_close(estimate.grads[f"backbone.{n}"], want, rtol=0, atol=0)


def test_fo_b_maml_refuses_what_it_cannot_estimate():
    for name in ("fo_b_maml", "fo_b_maml_sym"):
        spec = estimator_spec(name)
        assert spec.executions == ("loop",) and spec.needs_proximal and not spec.rule_meta_gradients
        config = config_from_dict({"meta": {"estimator": name, "proximal_lambda": 2.0,
                                            "estimator_options": {"delta": 1e-3}}})
        assert config.meta.estimator_options == {"delta": 1e-3}
        with pytest.raises(ConfigError, match=(
            rf"meta.estimator '{name}' estimates the meta-gradient of the proximal inner problem \(support loss \+ "
            r"lambda/2 \|\|y - x\|\|\^2\) and needs meta.proximal_lambda > 0, not 0")):
            config_from_dict({"meta": {"estimator": name}})
        for rule in ("meta_sgd", "per_step", "alfa", "alfa_random"):
            with pytest.raises(ConfigError, match=rf"meta.estimator '{name}' gives no gradient to an inner rule's "
                                                  rf"meta-learned parameters, and rule '{rule}' has some"):
                config_from_dict({"rule": {"name": rule}, "meta": {"estimator": name, "proximal_lambda": 1.0}})
        with pytest.raises(ConfigError, match=f"meta.estimator '{name}' does not support the multi-step loss"):
            config_from_dict({"meta": {"estimator": name, "proximal_lambda": 1.0, "multi_step_loss": True}})
        for bad in (0.0, -1e-3, float("inf"), "0.1"):
            with pytest.raises(ConfigError, match=r"meta.estimator: delta must be a finite number > 0, not"):
                config_from_dict({"meta": {"estimator": name, "proximal_lambda": 1.0,
                                           "estimator_options": {"delta": bad}}})
        with pytest.raises(ValueError, match="needs the proximal inner problem"):
            build_estimator(name, problem.learner("sgd", 0.0), 3)
        with pytest.raises(ValueError, match="does not support the multi-step loss"):
            build_estimator(name, problem.learner("sgd"), 3).meta_grad(problem.tasks(), QueryObjective.multi_step(3, 0))


@pytest.mark.parametrize("rule", ["sgd", "anil"])
def test_a_tiny_training_run_with_fo_b_maml_records_it(tmp_path, rule):
    record = problem.train_briefly(tmp_path, "fo_b_maml", {"delta": 0.01}, rule=rule)
    assert record.estimator == "fo_b_maml" and record.config["meta"]["estimator_options"] == {"delta": 0.01}
