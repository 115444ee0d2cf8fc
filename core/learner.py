"""The meta-learned object: a backbone's initial weights plus an inner-loop rule, as one ``nn.Module``.

``Learner.parameters()`` are exactly the meta-parameters the outer loop optimises (the backbone is frozen
when the rule re-initialises it, as ALFA's random-initialisation variant does), so the optimiser and
checkpoint code need nothing special.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
from torch import nn

from core.objectives import HEAD_INITS, objective_for
from core.rules import Capabilities, InnerRule, build_rule, rule_spec, supported_rules
from models.backbones import build_backbone, head_names, inner_parameter_names, xavier_reinitialise

# ``torch.func.functional_call`` swaps fast weights into the module's attributes for the duration of a call.
# Two threads sharing one cached learner (two dashboard sessions) must therefore not run a functional forward
# pass, or read the module's own parameters, while another thread's call is in flight.
MODULE_LOCK = threading.RLock()


class Learner(nn.Module):
    def __init__(
        self,
        backbone_config: dict[str, Any],
        rule_config: dict[str, Any],
        head_init: str = "learned",
        task_kind: str = "classification",
        seed: int | None = None,
        proximal_lambda: float = 0.0,
    ) -> None:
        super().__init__()
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, not {head_init!r}")
        objective_for(task_kind)  # an unknown kind is refused here, with the known ones listed
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if generator is not None:
            # Seed the default generator too: nn.Module constructors draw from it.
            torch.manual_seed(seed)
        capabilities = rule_spec(rule_config.get("name")).capabilities
        self.backbone = build_backbone(backbone_config)
        # The rule decides which of the tensors the backbone lets the inner loop update it adapts.
        self.inner_names = capabilities.adapted_tensors(inner_parameter_names(self.backbone), head_names(self.backbone))
        shapes = {name: p.shape for name, p in self.backbone.named_parameters()}
        self.rule: InnerRule = build_rule(rule_config, self.inner_names, shapes)
        self.head_init = head_init
        self.task_kind = task_kind
        # The inner problem (``meta.proximal_lambda``): support loss + proximal_lambda/2 ||y - x||^2, x the weights
        # an adaptation starts from. 0: the plain support loss (MAML eq. 1). Part of what the learner *is*: a
        # checkpoint adapts with the value it was trained with (``core.checkpoint.learner_io``).
        proximal_lambda = float(proximal_lambda)
        if not math.isfinite(proximal_lambda) or proximal_lambda < 0:
            raise ValueError(f"proximal_lambda must be a finite number >= 0, not {proximal_lambda!r}")
        self.proximal_lambda = proximal_lambda
        self.frozen_backbone = capabilities.reinitialises_backbone
        if self.frozen_backbone:
            xavier_reinitialise(self.backbone, generator)
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    @property
    def capabilities(self) -> Capabilities:
        return self.rule.spec.capabilities

    @property
    def backbone_config(self) -> dict[str, Any]:
        return dict(self.backbone.config)

    @property
    def trained_n_classes(self) -> int:
        return int(self.backbone.config["n_classes"])

    def initial_params(self) -> dict[str, torch.Tensor]:
        with MODULE_LOCK:
            return dict(self.backbone.named_parameters())

    def with_rule(self, rule_name: str) -> Learner:
        """A learner with this one's backbone weights and another rule of ``supported_rules`` (this learner itself
        for its own rule).

        The other rule has no meta-learned parameters; it starts from this rule's base rate (``lr``): asking
        for ``sgd`` on an ALFA learner is the "MAML-style" baseline of the same initialisation. The new
        learner is on this one's device and dtype, in the same train/eval mode, with the same
        ``requires_grad`` flags on its backbone.
        """
        if rule_name == self.rule.name:
            return self
        supported = supported_rules(self.rule.name)
        if rule_name not in supported:
            rule_spec(rule_name)  # an unknown name lists the registered rules
            raise ValueError(
                f"a learner meta-trained with rule {self.rule.name!r} supports {', '.join(supported)}, "
                f"not {rule_name!r} (its meta-learned parameters come only from training with it)"
            )
        options = {}
        if "lr" in rule_spec(rule_name).option_names() and hasattr(self.rule.options, "lr"):
            options["lr"] = float(self.rule.options.lr)
        other = Learner(
            self.backbone_config, {"name": rule_name, **options}, self.head_init, self.task_kind,
            proximal_lambda=self.proximal_lambda,
        )
        reference = next(self.backbone.parameters())
        other = other.to(device=reference.device, dtype=reference.dtype)
        other.backbone.load_state_dict(self.backbone.state_dict())
        trainable = {name: p.requires_grad for name, p in self.backbone.named_parameters()}
        for name, parameter in other.backbone.named_parameters():
            parameter.requires_grad_(trainable[name])
        return other.train(self.training)

    def describe(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone_config,
            "rule": self.rule.config(),
            "head_init": self.head_init,
            "task_kind": self.task_kind,
            "frozen_backbone": self.frozen_backbone,
            "inner_tensors": list(self.inner_names),
        }
