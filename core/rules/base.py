"""The inner-loop rule interface.

A rule turns the current fast weights and their support-loss gradients into the next fast weights
(``step``) and says which effective learning rate ``alpha`` and decay factor ``beta`` it applied to each
tensor, so that ``theta <- beta * theta - alpha * grad`` describes every rule here (ALFA eq. 4).
Its meta-parameters are ordinary ``nn.Parameter``s of the module, so the outer optimiser and the
checkpoint code need nothing special. Each rule module registers its class with ``core.rules.registry``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from core.rules.registry import RuleSpec

Params = dict[str, torch.Tensor]


@dataclass
class StepTrace:
    """Per-tensor effective ``alpha`` (learning rate) and ``beta`` (multiplier of theta) of one inner step.

    Values are detached 0-d tensors (element means for per-element rules); converting them to floats is left
    to the caller so that training does not synchronise with the device every step.
    """

    alpha: dict[str, torch.Tensor] = field(default_factory=dict)
    beta: dict[str, torch.Tensor] = field(default_factory=dict)
    # What a task-conditioned rule (``Capabilities.task_conditioned``) generated alpha and beta from at this
    # step (ALFA's tau, detached); None for rules whose values do not depend on the task.
    learning_state: torch.Tensor | None = None

    def as_floats(self) -> dict[str, dict[str, float]]:
        return {
            name: {"alpha": float(self.alpha[name]), "beta": float(self.beta[name])} for name in self.alpha
        }


def param_key(name: str) -> str:
    """``nn.ParameterDict`` keys cannot contain dots; tensor names do."""
    return name.replace(".", "-")


class InnerRule(nn.Module):
    """Base class: ``init_state(params) -> state``; ``step(params, grads, step_index, state) -> (params, trace)``.

    ``layer_names`` fixes the order of the updated tensors (it is the order of ALFA's generator inputs).
    ``step_index`` past the number of steps the rule was meta-trained for reuses the last step's values.
    ``options`` is the rule's own options dataclass (``spec.options``); ``spec`` (name, label, capabilities)
    is set on the class by ``core.rules.registry.register_rule``.
    """

    spec: ClassVar[RuleSpec]
    name: ClassVar[str] = "base"

    def __init__(self, layer_names: list[str], shapes: dict[str, torch.Size], options: Any) -> None:
        super().__init__()
        self.layer_names = list(layer_names)
        self.shapes = {name: torch.Size(shapes[name]) for name in self.layer_names}
        self.options = options

    def init_state(self, params: Params) -> dict[str, Any]:
        return {}

    def step(
        self, params: Params, grads: Params, step_index: int, state: dict[str, Any]
    ) -> tuple[Params, StepTrace]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON config from which ``build_rule`` rebuilds this rule (without its trained values)."""
        return {"name": self.name, **asdict(self.options)}
