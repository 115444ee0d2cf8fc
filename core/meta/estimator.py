"""Meta-gradient estimators: tasks in, the gradient of the mean query loss with respect to the meta-parameters out.

An estimator is one module of ``core.meta`` that registers itself with :func:`register_estimator`, declaring its
name (``meta.estimator`` in a training config), its options dataclass (the config's ``[meta.estimator_options]``
table is checked against it) and how it is built. This package finds such modules itself, so a new estimator is one
file plus its test.

What is estimated is the gradient of the outer objective of the bilevel problem (``shared/reference.md``, "The
bilevel view"): the query loss after the inner loop, averaged over the meta-batch. :class:`QueryObjective` says which
query losses count: the last step's (MAML eq. 1), or MAML++'s weighted sum over every step (Antoniou et al. 2019,
"multi-step loss optimisation").
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from core.data.task import Task
from core.learner import Learner

__all__ = [
    "EstimatorSpec",
    "MetaGradient",
    "MetaGradientEstimator",
    "QueryObjective",
    "build_estimator",
    "estimator_spec",
    "register_estimator",
    "registered_estimators",
]


@dataclass(frozen=True)
class QueryObjective:
    """Which query losses the meta-gradient is of.

    ``step_weights`` ``None``: the query loss after the last inner step only (MAML eq. 1). Otherwise one weight per
    inner step, the query loss after step ``k`` counting with weight ``step_weights[k - 1]`` (MAML++).
    """

    step_weights: torch.Tensor | None = None

    @classmethod
    def multi_step(cls, steps: int, progress: float, device: torch.device | str | None = None) -> QueryObjective:
        """MAML++ multi-step-loss weights: uniform at ``progress=0`` annealing to (almost) only the last step at 1.

        Non-final steps keep at least ``0.03 / steps`` as in the MAML++/ALFA code.
        """
        progress = min(max(progress, 0.0), 1.0)
        floor = 0.03 / steps
        weights = torch.full((steps,), 1.0 / steps)
        weights[:-1] = torch.clamp(weights[:-1] - progress / steps, min=floor)
        weights[-1] = 1.0 - weights[:-1].sum()
        return cls(weights if device is None else weights.to(device))

    @property
    def every_step(self) -> bool:
        return self.step_weights is not None

    def weight(self, step: int, steps: int) -> torch.Tensor | float:
        """The weight of the query loss after inner step ``step`` (1-based) of ``steps``."""
        if self.step_weights is None:
            return 1.0 if step == steps else 0.0
        return self.step_weights[step - 1]


LAST_STEP = QueryObjective()


@dataclass
class MetaGradient:
    """The estimate: ``grads`` maps each trainable meta-parameter name of the learner to its gradient.

    ``loss`` is the mean (weighted) query loss the gradient is of, ``metric`` the mean query metric (accuracy for
    classification, ``None`` for regression), ``diagnostics`` whatever else the estimator measured.
    """

    grads: dict[str, torch.Tensor]
    loss: float
    metric: float | None = None
    diagnostics: dict[str, float] = field(default_factory=dict)

    def summary(self, metric_name: str = "accuracy") -> dict[str, float]:
        """Loss, metric and diagnostics as one flat dict (progress bars, training history)."""
        values = {"loss": self.loss}
        if self.metric is not None:
            values[metric_name] = self.metric
        return {**values, **self.diagnostics}


class MetaGradientEstimator(Protocol):
    """What training needs of an estimator."""

    def meta_grad(self, tasks: Sequence[Task], objective: QueryObjective = LAST_STEP) -> MetaGradient: ...


@dataclass(frozen=True)
class EstimatorSpec:
    name: str
    label: str
    options: type  # a dataclass: the estimator's settings, with defaults
    build: Callable[..., MetaGradientEstimator]  # build(learner, inner_steps, head_init, options)
    # How the tasks of a meta-batch may be run: "loop" (one task's graph at a time), "vmap", "recompute".
    executions: tuple[str, ...] = ("loop",)
    # What the config is checked against (core.config): the estimator needs the proximal inner problem
    # (meta.proximal_lambda > 0); it gives the meta-learned parameters of a rule (Capabilities.meta_learned) a
    # gradient; it supports MAML++'s multi-step loss (meta.multi_step_loss, QueryObjective.every_step).
    needs_proximal: bool = False
    rule_meta_gradients: bool = True
    multi_step_loss: bool = True


_REGISTRY: dict[str, EstimatorSpec] = {}


def register_estimator(
    name: str, label: str, options: type, executions: tuple[str, ...] = ("loop",), *,
    needs_proximal: bool = False, rule_meta_gradients: bool = True, multi_step_loss: bool = True,
) -> Callable[[Callable[..., MetaGradientEstimator]], Callable[..., MetaGradientEstimator]]:
    """Class or function decorator: ``build(learner, inner_steps, head_init, options)`` makes the estimator.

    ``needs_proximal``: only defined on the proximal inner problem (``meta.proximal_lambda > 0``);
    ``rule_meta_gradients``: whether it gives a rule's meta-learned parameters a gradient (if not, such rules are
    refused); ``multi_step_loss``: whether it can weight the query loss after every inner step (MAML++).
    """
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"the options of estimator {name!r} must be a dataclass")

    def decorate(build: Callable[..., MetaGradientEstimator]) -> Callable[..., MetaGradientEstimator]:
        if name in _REGISTRY and _REGISTRY[name].build is not build:
            raise ValueError(f"meta-gradient estimator {name!r} is registered twice")
        _REGISTRY[name] = EstimatorSpec(
            name, label, options, build, tuple(executions), needs_proximal, rule_meta_gradients, multi_step_loss
        )
        return build

    return decorate


def _discover() -> None:
    """Import every module of ``core.meta`` once, so that each registers its estimators."""
    package = importlib.import_module("core.meta")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"core.meta.{module.name}")


def registered_estimators() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def estimator_spec(name: str) -> EstimatorSpec:
    _discover()
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown meta-gradient estimator {name!r}; choose one of {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def estimator_options(name: str, values: dict[str, Any] | None = None) -> Any:
    """The options dataclass of estimator ``name`` filled from ``values``; unknown keys list the known ones."""
    spec = estimator_spec(name)
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown option(s) for estimator {name!r}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    return spec.options(**values)


def build_estimator(
    name: str,
    learner: Learner,
    inner_steps: int,
    head_init: str | None = None,
    options: dict[str, Any] | None = None,
    execution: str = "loop",
) -> MetaGradientEstimator:
    """The registered estimator ``name`` for ``learner``, run with ``execution`` (one of its ``executions``)."""
    spec = estimator_spec(name)
    if execution not in spec.executions:
        raise ValueError(
            f"estimator {name!r} runs its tasks by {', '.join(spec.executions)}, not {execution!r}"
        )
    if spec.needs_proximal and not learner.proximal_lambda > 0:
        raise ValueError(
            f"estimator {name!r} needs the proximal inner problem: a learner with proximal_lambda > 0, "
            f"not {learner.proximal_lambda:g}"
        )
    if not spec.rule_meta_gradients and learner.capabilities.meta_learned:
        raise ValueError(
            f"estimator {name!r} gives no gradient to rule {learner.rule.name!r}'s meta-learned parameters"
        )
    return spec.build(
        learner, int(inner_steps), head_init or learner.head_init, estimator_options(name, options), execution
    )


def accumulate_task_gradients(
    learner: Learner,
    tasks: Sequence[Task],
    task_gradient: Callable[[Task, list[torch.Tensor], float], tuple[list[torch.Tensor | None], float, float | None]],
) -> MetaGradient:
    """Sum per-task gradients of ``loss / len(tasks)`` over the meta-batch, one task's graph alive at a time.

    ``task_gradient(task, meta_parameters, scale)`` returns ``(gradients or None per parameter, loss, metric)``.
    """
    trainable = {n: p for n, p in learner.named_parameters() if p.requires_grad}
    names, tensors = list(trainable), list(trainable.values())
    grads = [torch.zeros_like(t) for t in tensors]
    losses, metrics = [], []
    for task in tasks:
        found, loss, metric = task_gradient(task, tensors, 1.0 / len(tasks))
        for total, g in zip(grads, found):
            if g is not None:
                total.add_(g)
        losses.append(loss)
        if metric is not None:
            metrics.append(metric)
    return MetaGradient(
        dict(zip(names, grads)), sum(losses) / len(losses), sum(metrics) / len(metrics) if metrics else None
    )
