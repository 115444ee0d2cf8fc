"""Inner-loop update rules behind one interface (see ``core.rules.base``)."""

from __future__ import annotations

from typing import Any

import torch

from core.rules.alfa import ALFARule
from core.rules.base import InnerRule, Params, StepTrace, param_key
from core.rules.simple import MetaSGDRule, PerStepRule, SGDRule

RULE_NAMES = ("sgd", "per_step", "meta_sgd", "alfa", "alfa_random")

RULE_LABELS = {
    "sgd": "SGD (MAML)",
    "per_step": "Learned per-step rates",
    "meta_sgd": "Meta-SGD",
    "alfa": "ALFA",
    "alfa_random": "ALFA from random init",
}


def build_rule(config: dict[str, Any], layer_names: list[str], shapes: dict[str, torch.Size]) -> InnerRule:
    """Build a rule from its JSON config (``{"name": "alfa", "steps": 5, ...}``)."""
    options = dict(config)
    name = options.pop("name", None)
    if name == "sgd":
        return SGDRule(layer_names, shapes, **options)
    if name == "per_step":
        return PerStepRule(layer_names, shapes, **options)
    if name == "meta_sgd":
        return MetaSGDRule(layer_names, shapes, **options)
    if name in ("alfa", "alfa_random"):
        options.pop("random_init", None)
        return ALFARule(layer_names, shapes, random_init=(name == "alfa_random"), **options)
    raise ValueError(f"unknown inner-loop rule {name!r}; choose one of {', '.join(RULE_NAMES)}")


__all__ = [
    "RULE_LABELS",
    "RULE_NAMES",
    "ALFARule",
    "InnerRule",
    "MetaSGDRule",
    "Params",
    "PerStepRule",
    "SGDRule",
    "StepTrace",
    "build_rule",
    "param_key",
]
