"""iMAML: conjugate gradient on (I + H/lambda) v = grad f_out against the dense implicit gradient and second-order
MAML on the proximal objective; refusals; a tiny training run."""

from __future__ import annotations

import pytest
import torch

from core.config import ConfigError, config_from_dict
from core.meta.estimator import QueryObjective, build_estimator, estimator_spec
from core.meta.first_order import conjugate_gradient
from tests.core.meta import bilevel_problem as problem
from tests.tolerances import gamma


@pytest.mark.parametrize("rule", ["sgd", "anil"])
def test_imaml_with_as_many_cg_steps_as_weights_is_the_implicit_gradient(rule):
    model = problem.learner(rule)
    tasks = problem.tasks()
    exact, per_task = problem.exact_meta_gradient(model, tasks)
    assert max(e.residual for e in per_task) < 1e-13  # the inner problems are solved (the fixture's premise)
    n = per_task[0].hessian.shape[0]
    estimate = build_estimator(
        "imaml", model, problem.CONVERGED_STEPS, options={"cg_steps": n}
    ).meta_grad(tasks)
    # Both solve (I + H/lambda) v = grad f_out at the same y* (the same inner iterations), one by LU, one by n CG
    # steps, which in exact arithmetic end at the solution. In floating point each is backward stable up to about
    # gamma_(3n) ||A|| ||v|| (LU, Higham 2002 thm 9.4; CG's attainable accuracy is of the same order), so each is
    # off the solution by at most kappa(A) times that, relative; phi's part adds one product of the same size.
    kappa = max(e.condition for e in per_task)
    scale = float(problem.flat(exact).norm())
    tolerance = 2 * kappa * gamma(3 * n, torch.float64) * scale
    assert problem.max_error(estimate.grads, exact) <= tolerance
    assert estimate.diagnostics["cg_residual"] <= tolerance
    # And second-order MAML through the same steps on the proximal objective agrees within both bounds.
    maml = build_estimator("maml", model, problem.CONVERGED_STEPS).meta_grad(tasks)
    bound = problem.maml_error_bound(per_task, float(problem.flat(exact).abs().max()))
    assert problem.max_error(maml.grads, exact) <= bound
    assert problem.max_error(estimate.grads, maml.grads) <= tolerance + bound
    assert abs(estimate.loss - maml.loss) <= gamma(n, torch.float64) * abs(maml.loss)


def test_few_cg_steps_fall_short_by_the_conjugate_gradient_bound():
    """With k steps CG's error in the A-norm is at most 2 ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))^k of the
    starting error (Golub and Van Loan, thm 11.3.3), so in the 2-norm at most sqrt(kappa) times that of ||v||."""
    model = problem.learner("sgd")
    tasks = problem.tasks()
    exact, per_task = problem.exact_meta_gradient(model, tasks)
    n = per_task[0].hessian.shape[0]
    errors = []
    for k in (1, 2, 5):
        estimate = build_estimator("imaml", model, problem.CONVERGED_STEPS, options={"cg_steps": k}).meta_grad(tasks)
        bound = 0.0
        for e in per_task:
            # The system of iMAML is I + H/lambda: its condition number is that of H + lambda I.
            root = e.condition ** 0.5
            bound += 2 * root * ((root - 1) / (root + 1)) ** k / len(per_task)
        scale = max(float(problem.flat(e.grads).norm()) for e in per_task)
        error = float((problem.flat(estimate.grads) - problem.flat(exact)).norm())
        assert error <= bound * scale + 2 * max(e.condition for e in per_task) * gamma(3 * n, torch.float64) * scale
        errors.append(error)
    assert errors[0] > errors[1] > errors[2] > 0


def test_conjugate_gradient_solves_a_small_system_exactly():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    rhs = torch.randn(6, generator=g, dtype=torch.float64)
    v, residual = conjugate_gradient(lambda p: a @ p, rhs, 6)
    want = torch.linalg.solve(a, rhs)
    kappa = float(torch.linalg.cond(a))
    # Both backward stable to about gamma_(3n) ||A|| ||v||: each off by kappa times that, relative.
    assert float((v - want).norm()) <= 2 * kappa * gamma(18, torch.float64) * float(want.norm())
    assert residual <= 2 * kappa * gamma(18, torch.float64) * float(rhs.norm())


def test_imaml_refuses_what_it_cannot_estimate():
    spec = estimator_spec("imaml")
    assert spec.executions == ("loop",) and spec.needs_proximal and not spec.rule_meta_gradients
    config = config_from_dict({"meta": {"estimator": "imaml", "proximal_lambda": 2.0,
                                        "estimator_options": {"cg_steps": 10}}})
    assert config.meta.estimator_options == {"cg_steps": 10}
    with pytest.raises(ConfigError, match=(
        r"meta.estimator 'imaml' estimates the meta-gradient of the proximal inner problem \(support loss \+ "
        r"lambda/2 \|\|y - x\|\|\^2\) and needs meta.proximal_lambda > 0, not 0")):
        config_from_dict({"meta": {"estimator": "imaml"}})
    for rule in ("meta_sgd", "per_step", "alfa", "alfa_random"):
        with pytest.raises(ConfigError, match=rf"meta.estimator 'imaml' gives no gradient to an inner rule's "
                                              rf"meta-learned parameters, and rule '{rule}' has some"):
            config_from_dict({"rule": {"name": rule}, "meta": {"estimator": "imaml", "proximal_lambda": 1.0}})
    with pytest.raises(ConfigError, match="meta.estimator 'imaml' does not support the multi-step loss"):
        config_from_dict({"meta": {"estimator": "imaml", "proximal_lambda": 1.0, "multi_step_loss": True}})
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match=r"meta.estimator: cg_steps must be a whole number >= 1, not"):
            config_from_dict({"meta": {"estimator": "imaml", "proximal_lambda": 1.0,
                                       "estimator_options": {"cg_steps": bad}}})
    with pytest.raises(ValueError, match="needs the proximal inner problem: a learner with proximal_lambda > 0"):
        build_estimator("imaml", problem.learner("sgd", 0.0), 3)
    with pytest.raises(ValueError, match="does not support the multi-step loss"):
        build_estimator("imaml", problem.learner("sgd"), 3).meta_grad(problem.tasks(), QueryObjective.multi_step(3, 0))


@pytest.mark.parametrize("rule", ["sgd", "anil"])
def test_a_tiny_training_run_with_imaml_records_it(tmp_path, rule):
    record = problem.train_briefly(tmp_path, "imaml", {"cg_steps": 3}, rule=rule)
    assert record.estimator == "imaml"
    assert record.config["meta"]["estimator_options"] == {"cg_steps": 3}
    assert record.config["meta"]["proximal_lambda"] == 1.0
