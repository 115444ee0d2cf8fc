"""Learned per-layer, per-step learning rates (Antoniou et al. 2019, MAML++ "LSLR")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.rules.base import InnerRule, Params, StepTrace, param_key
from core.rules.registry import Capabilities, register_rule


@dataclass(frozen=True)
class PerStepOptions:
    steps: int = 5  # the number of learned rates per layer; a training config defaults it to meta.inner_steps
    lr: float = 0.01  # every rate's initial value

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")


@register_rule(
    "per_step", label="Learned per-step rates", options=PerStepOptions,
    capabilities=Capabilities(meta_learned=True), colour="#2ca02c", order=10,
)
class PerStepRule(InnerRule):
    """``theta_l <- theta_l - a[l, j] * grad_l`` with a learned rate per layer ``l`` and step ``j``."""

    options: PerStepOptions

    def __init__(self, layer_names: list[str], shapes: dict[str, torch.Size], options: PerStepOptions) -> None:
        super().__init__(layer_names, shapes, options)
        self.steps = int(options.steps)
        self.rates = nn.ParameterDict(
            {param_key(n): nn.Parameter(torch.full((self.steps,), float(options.lr))) for n in self.layer_names}
        )

    def step(self, params: Params, grads: Params, step_index: int, state: dict[str, Any]):
        j = min(step_index, self.steps - 1)
        trace = StepTrace()
        new = {}
        for name in self.layer_names:
            rate = self.rates[param_key(name)][j]
            new[name] = params[name] - rate * grads[name]
            trace.alpha[name] = rate.detach()
            trace.beta[name] = torch.ones_like(rate).detach()
        return new, trace
