"""Inner-loop update rules behind one interface (``core.rules.base``), found in a registry (``core.rules.registry``).

Every module of this package is imported here, and each rule module registers its rule with
``@register_rule``: adding a rule is adding its file (and its test), with no edit anywhere else.
"""

from __future__ import annotations

import importlib
import pkgutil

from core.rules.base import InnerRule, Params, StepTrace, param_key
from core.rules.registry import (
    AdaptedTensors,
    Capabilities,
    RuleSpec,
    build_rule,
    default_selection,
    register_rule,
    registered_rule_names,
    rule_colour,
    rule_label,
    rule_spec,
    supported_rules,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AdaptedTensors",
    "Capabilities",
    "InnerRule",
    "Params",
    "RuleSpec",
    "StepTrace",
    "build_rule",
    "default_selection",
    "param_key",
    "register_rule",
    "registered_rule_names",
    "rule_colour",
    "rule_label",
    "rule_spec",
    "supported_rules",
]
