"""SGD (MAML), learned per-layer per-step rates (MAML++ "LSLR") and Meta-SGD."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.rules.base import InnerRule, Params, StepTrace, param_key


class SGDRule(InnerRule):
    """MAML's inner loop (Finn et al. 2017, eq. 1): ``theta <- theta - lr * grad`` with a fixed rate."""

    name = "sgd"

    def __init__(self, layer_names: list[str], shapes: dict[str, torch.Size], lr: float = 0.01) -> None:
        super().__init__(layer_names, shapes)
        self.lr = float(lr)

    def step(self, params: Params, grads: Params, step_index: int, state: dict[str, Any]):
        trace = StepTrace()
        new = {}
        one = torch.ones((), device=next(iter(params.values())).device)
        for name in self.layer_names:
            new[name] = params[name] - self.lr * grads[name]
            trace.alpha[name] = one * self.lr
            trace.beta[name] = one
        return new, trace

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "lr": self.lr}


class PerStepRule(InnerRule):
    """Learned per-layer, per-step learning rates (Antoniou et al., MAML++): ``theta <- theta - a[l, j] * grad``."""

    name = "per_step"

    def __init__(
        self, layer_names: list[str], shapes: dict[str, torch.Size], steps: int = 5, lr: float = 0.01
    ) -> None:
        super().__init__(layer_names, shapes)
        self.steps = int(steps)
        self.init_lr = float(lr)
        self.rates = nn.ParameterDict(
            {param_key(n): nn.Parameter(torch.full((self.steps,), self.init_lr)) for n in self.layer_names}
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

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps, "lr": self.init_lr}


class MetaSGDRule(InnerRule):
    """Meta-SGD (Li et al. 2017): a learned rate per element, shared by all steps: ``theta <- theta - a ⊙ grad``.

    The rates are shaped like the parameters, so the classifier head's rates only fit the class count the
    rule was trained with; for another class count the head's rates fall back to their mean (per output
    row), which is what ``_rate_for`` does.
    """

    name = "meta_sgd"

    def __init__(self, layer_names: list[str], shapes: dict[str, torch.Size], lr: float = 0.01) -> None:
        super().__init__(layer_names, shapes)
        self.init_lr = float(lr)
        self.rates = nn.ParameterDict(
            {param_key(n): nn.Parameter(torch.full(tuple(self.shapes[n]), self.init_lr)) for n in self.layer_names}
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

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "lr": self.init_lr}

    def adapts_per_class_head(self) -> bool:
        return True
