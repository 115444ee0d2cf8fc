"""The estimator registry and protocol: names, options and executions checked up front; MAML++'s query objective."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from core.config import ConfigError, config_from_dict
from core.data.task import Task
from core.learner import Learner
from core.meta import estimator as registry
from core.meta.estimator import LAST_STEP, MetaGradient, QueryObjective, build_estimator, registered_estimators
from tests.tolerances import gamma, unit_roundoff

TINY_CONV = {"name": "conv4", "in_channels": 1, "image_size": 8, "filters": 3, "n_blocks": 2, "n_classes": 2}


def _task(seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 1, 1])
    return Task(torch.randn(4, 1, 8, 8, generator=g), labels, torch.randn(4, 1, 8, 8, generator=g), labels, ["a", "b"])


def test_the_maml_estimators_are_registered_with_their_executions():
    assert {"maml", "fomaml"} <= set(registered_estimators())
    for name in ("maml", "fomaml"):
        assert set(registry.estimator_spec(name).executions) == {"loop", "recompute", "vmap"}


def test_unknown_names_options_and_executions_are_refused_with_the_choices():
    learner = Learner(TINY_CONV, {"name": "sgd", "lr": 0.1}, seed=0)
    with pytest.raises(ValueError, match=r"unknown meta-gradient estimator 'mamll'; choose one of .*fomaml.*maml"):
        build_estimator("mamll", learner, 2)
    with pytest.raises(ValueError, match=r"unknown option\(s\) for estimator 'maml': delta"):
        build_estimator("maml", learner, 2, options={"delta": 1e-3})
    with pytest.raises(ValueError, match="not 'threads'"):
        build_estimator("maml", learner, 2, execution="threads")


def test_config_names_the_estimator_and_reads_the_legacy_algorithm_key():
    assert config_from_dict({}).meta.estimator == "maml"
    # The configs stored in the shipped checkpoints say meta.algorithm: each value is one of today's estimators.
    assert config_from_dict({"meta": {"algorithm": "first_order"}}).meta.estimator == "fomaml"
    assert config_from_dict({"meta": {"algorithm": "second_order"}}).meta.estimator == "maml"
    with pytest.raises(ConfigError, match="meta.algorithm must be second_order or first_order"):
        config_from_dict({"meta": {"algorithm": "third_order"}})
    with pytest.raises(ConfigError, match="contradicts meta.estimator"):
        config_from_dict({"meta": {"algorithm": "first_order", "estimator": "maml"}})
    with pytest.raises(ConfigError, match=r"meta.estimator: unknown meta-gradient estimator 'reptilee'"):
        config_from_dict({"meta": {"estimator": "reptilee"}})
    with pytest.raises(ConfigError, match=r"meta.estimator: unknown option\(s\) for estimator 'maml': k"):
        config_from_dict({"meta": {"estimator_options": {"k": 5}}})
    assert config_from_dict({"meta": {"recompute": True}}).meta.execution == "recompute"


def test_a_registered_estimator_is_built_from_its_options_and_runs_in_training(monkeypatch):
    """What the bilevel-lab issue relies on: one decorated class is all a new estimator needs."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @dataclass(frozen=True)
    class HalfOptions:
        factor: float = 0.5

    @registry.register_estimator("half_maml", "Half of MAML", HalfOptions)
    @dataclass
    class HalfMAML:
        learner: Learner
        inner_steps: int
        head_init: str
        options: HalfOptions
        execution: str

        def meta_grad(self, tasks, objective=LAST_STEP) -> MetaGradient:
            full = build_estimator("maml", self.learner, self.inner_steps).meta_grad(tasks, objective)
            return MetaGradient({n: self.options.factor * g for n, g in full.grads.items()}, full.loss, full.metric)

    learner = Learner(TINY_CONV, {"name": "sgd", "lr": 0.1}, seed=0)
    tasks = [_task(0), _task(1)]
    half = build_estimator("half_maml", learner, 2, options={"factor": 0.25}).meta_grad(tasks)
    full = build_estimator("maml", learner, 2).meta_grad(tasks)
    for name, gradient in full.grads.items():
        # Multiplying by a power of two is exact.
        assert torch.equal(half.grads[name], 0.25 * gradient)
    assert config_from_dict({"meta": {"estimator": "half_maml", "estimator_options": {"factor": 0.1}}})


def test_the_last_step_objective_counts_only_the_final_query_loss():
    assert not LAST_STEP.every_step
    assert [LAST_STEP.weight(step, 3) for step in (1, 2, 3)] == [0.0, 0.0, 1.0]
    weights = QueryObjective.multi_step(3, 0.5)
    assert weights.every_step and [float(weights.weight(k, 3)) for k in (1, 2, 3)] == weights.step_weights.tolist()


def test_multi_step_weights_sum_to_one_and_anneal_to_the_last_step():
    start, end = QueryObjective.multi_step(5, 0.0).step_weights, QueryObjective.multi_step(5, 1.0).step_weights
    # The last weight is 1 minus a float32 sum of the other four (total <= 1: off by at most gamma_4), and
    # summing all five again adds at most gamma_4 more: 2 gamma_5 bounds both checks. Every other weight is
    # a single float32 rounding of 0.2 or 0.03 / 5, so it is within u32 of it, relatively.
    u32, sum_error = unit_roundoff(torch.float32), 2 * gamma(5, torch.float32)
    torch.testing.assert_close(start, torch.full((5,), 0.2), rtol=0, atol=sum_error)
    assert float(end.sum()) == pytest.approx(1.0, rel=0, abs=sum_error)
    assert float(start.sum()) == pytest.approx(1.0, rel=0, abs=sum_error)
    assert float(end[-1]) == pytest.approx(1 - 4 * 0.03 / 5, rel=0, abs=sum_error)
    assert end[:-1].tolist() == pytest.approx([0.03 / 5] * 4, rel=u32, abs=0)
