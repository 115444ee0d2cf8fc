"""SGD: MAML's inner loop (Finn et al. 2017, eq. 1) with a fixed rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.rules.base import InnerRule, Params, StepTrace
from core.rules.registry import Capabilities, register_rule


@dataclass(frozen=True)
class SGDOptions:
    lr: float = 0.01


@register_rule(
    "sgd", label="SGD (MAML)", options=SGDOptions, capabilities=Capabilities(meta_learned=False),
    colour="#7f7f7f", order=0,  # grey: the baseline every chart compares against
)
class SGDRule(InnerRule):
    """``theta <- theta - lr * grad`` for every tensor in ``layer_names``."""

    options: SGDOptions

    def step(self, params: Params, grads: Params, step_index: int, state: dict[str, Any]):
        trace = StepTrace()
        new = {}
        lr = float(self.options.lr)
        one = torch.ones((), device=next(iter(params.values())).device)
        for name in self.layer_names:
            new[name] = params[name] - lr * grads[name]
            trace.alpha[name] = one * lr
            trace.beta[name] = one
        return new, trace
