"""Meta-SGD (Li et al. 2017): a learned rate per element, shared by all steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.rules.base import InnerRule, Params, StepTrace, param_key
from core.rules.registry import Capabilities, register_rule


@dataclass(frozen=True)
class MetaSGDOptions:
    lr: float = 0.01  # every rate's initial value


@register_rule(
    "meta_sgd", label="Meta-SGD", options=MetaSGDOptions, capabilities=Capabilities(meta_learned=True),
    colour="#9467bd", order=20,
)
class MetaSGDRule(InnerRule):
    """``theta <- theta - a ⊙ grad`` (Meta-SGD eq. 3).

    The rates are shaped like the parameters, so the classifier head's rates only fit the class count the
    rule was trained with; for another class count the head's rates fall back to their mean (per output
    row), which is what ``_rate_for`` does.
    """

    options: MetaSGDOptions

    def __init__(self, layer_names: list[str], shapes: dict[str, torch.Size], options: MetaSGDOptions) -> None:
        super().__init__(layer_names, shapes, options)
        self.rates = nn.ParameterDict(
            {param_key(n): nn.Parameter(torch.full(tuple(self.shapes[n]), float(options.lr))) for n in self.layer_names}
        )

    def _rate_for(self, name: str, like: torch.Tensor) -> torch.Tensor:
        rate = self.rates[param_key(name)]
        if rate.shape == like.shape:
            return rate
        # Head of an episode with another class count: the per-class rows are exchangeable, so use their mean.
        return rate.mean(dim=0, keepdim=True).expand_as(like)

    def step(self, params: Params, grads: Params, step_index: int, state: dict[str, Any]):
        trace = StepTrace()
        new = {}
        for name in self.layer_names:
            rate = self._rate_for(name, params[name])
            new[name] = params[name] - rate * grads[name]
            trace.alpha[name] = rate.detach().mean()
            trace.beta[name] = torch.ones((), device=rate.device)
        return new, trace
