"""FO-B-MAML, symmetric difference: against the dense implicit gradient and second-order MAML on the proximal
objective, its O(delta^2) bias, a tiny training run (its refusals: test_fo_b_maml.py, shared with the forward one)."""

from __future__ import annotations

import pytest
import torch

from core.meta.estimator import build_estimator
from core.meta.first_order import first_order_adapt, starting_weights
from tests.core.meta import bilevel_problem as problem
from tests.tolerances import central_difference_error

DELTA = 1e-3


def _estimate(model, tasks, delta: float):
    return build_estimator(
        "fo_b_maml_sym", model, problem.CONVERGED_STEPS, options={"delta": delta}
    ).meta_grad(tasks)


@pytest.mark.parametrize("rule", ["sgd", "anil"])
def test_symmetric_fo_b_maml_is_the_implicit_gradient_up_to_its_order_delta_squared_bias(rule):
    model = problem.learner(rule)
    tasks = problem.tasks()
    exact, per_task = problem.exact_meta_gradient(model, tasks)
    assert max(e.residual for e in per_task) < 1e-13  # the inner problems are solved (the fixture's premise)
    at_delta = _estimate(model, tasks, DELTA)
    at_2delta = _estimate(model, tasks, 2 * DELTA)
    # A central difference in delta of G(delta): D(delta) = grad F + c delta^2 + O(delta^4), so D(2 delta) -
    # D(delta) = 3 c delta^2 bounds the bias with a factor 3 to spare, and each evaluation's rounding enters
    # divided by delta (tests/tolerances.py, central_difference_error).
    truncation = problem.max_error(at_2delta.grads, at_delta.grads)
    tolerance = central_difference_error(0.0, truncation, DELTA, problem.perturbation_rounding(per_task, exact))
    error = problem.max_error(at_delta.grads, exact)
    assert error <= tolerance
    # A second-order estimate: halving delta quarters the error. Its leading term c delta^2 quarters exactly and
    # the ratio is 4 (1 + O(delta^2)); the band 3 to 5 tells order two from order one (2) and order three (8).
    error_2delta = problem.max_error(at_2delta.grads, exact)
    assert 3.0 <= error_2delta / error <= 5.0
    maml = build_estimator("maml", model, problem.CONVERGED_STEPS).meta_grad(tasks)
    maml_bound = problem.maml_error_bound(per_task, float(problem.flat(exact).abs().max()))
    assert problem.max_error(at_delta.grads, maml.grads) <= tolerance + maml_bound
    # With the same delta the symmetric estimate is closer than the forward one (O(delta^2) against O(delta)).
    forward = build_estimator("fo_b_maml", model, problem.CONVERGED_STEPS, options={"delta": DELTA}).meta_grad(tasks)
    assert error < problem.max_error(forward.grads, exact)


def test_symmetric_fo_b_maml_for_the_initialisation_is_its_formula():
    """lambda (y_-delta - y_+delta) / (2 delta), both perturbed problems solved by the estimator's own steps."""
    model = problem.learner("sgd")
    task = problem.task(1)
    estimate = build_estimator("fo_b_maml_sym", model, 20, options={"delta": 0.01}).meta_grad([task])
    start = starting_weights(model, task, "learned")
    y_plus, _ = first_order_adapt(model, start, task, 20, 0.01)
    y_minus, _ = first_order_adapt(model, start, task, 20, -0.01)
    for n in model.inner_names:
        want = problem.LAMBDA * (y_minus[n] - y_plus[n]) / (0.01 - -0.01)
        torch.testing.assert_close(estimate.grads[f"backbone.{n}"], want, rtol=0, atol=0)


@pytest.mark.parametrize("rule", ["sgd", "anil"])
def test_a_tiny_training_run_with_fo_b_maml_sym_records_it(tmp_path, rule):
    record = problem.train_briefly(tmp_path, "fo_b_maml_sym", {"delta": 0.01}, rule=rule)
    assert record.estimator == "fo_b_maml_sym" and record.config["meta"]["estimator"] == "fo_b_maml_sym"
