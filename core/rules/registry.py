"""The rule registry: each rule module registers its class with ``@register_rule`` (name, page label, options
dataclass, capabilities, chart colour and order), and ``core.rules`` imports every module of the package, so a
new rule is one file plus its test.

Capabilities are what the engine asks of a rule instead of testing its name: whether it has meta-learned
parameters (then it only runs from a checkpoint trained with it), which tensors its inner loop updates, whether
it re-initialises and freezes the backbone, and whether its update reads the head weights' values.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from core.rules.base import InnerRule
    from models.backbones import HeadNames


class AdaptedTensors(enum.Enum):
    """Which of the backbone's inner-loop tensors (its conv / linear weights and biases) a rule updates."""

    ALL = "all"
    HEAD = "head"  # the classifier head only; the features stay at their meta-learned values (ANIL)


@dataclass(frozen=True)
class Capabilities:
    meta_learned: bool  # the rule has meta-learned parameters: it runs only from a checkpoint trained with it
    adapts: AdaptedTensors = AdaptedTensors.ALL
    # The backbone is re-initialised (Xavier) and frozen: only the rule is meta-learned, and supervised
    # pre-training of the backbone would be thrown away.
    reinitialises_backbone: bool = False
    # The update reads the values of the weights it adapts (ALFA's generator takes each layer's mean weight),
    # so a prototype head, far from the heads seen in training, is out of its distribution: use a zero head.
    reads_head_weights: bool = False
    # alpha/beta are generated per task from its learning state (ALFA): the rule records that state in each
    # StepTrace and can replay a fixed one instead (``freeze_learning_state``), the frozen-schedule ablation.
    task_conditioned: bool = False

    def adapted_tensors(self, inner_names: list[str], head: HeadNames) -> list[str]:
        """The tensors the inner loop updates, in the backbone's order, out of the ones it may update."""
        if self.adapts is AdaptedTensors.ALL:
            return list(inner_names)
        head_tensors = [name for name in inner_names if name in (head.weight, head.bias)]
        if len(head_tensors) != 2:
            raise ValueError(f"the head tensors {head.weight}, {head.bias} are not among the inner-loop tensors")
        return head_tensors


@dataclass(frozen=True)
class RuleSpec:
    name: str
    label: str  # shown on the dashboard's pages
    rule_class: type[InnerRule]
    options: type  # the rule's options dataclass: exactly the keys of its JSON config besides "name"
    capabilities: Capabilities
    colour: str  # the rule's colour in every chart
    order: int  # the rule's place in lists and charts (lower first)
    # Chosen when the dashboard first offers the rule beside a checkpoint's own; False for a rule that is offered
    # everywhere but only run when asked for, so the default comparison stays the trained rule against SGD.
    selected_by_default: bool = True

    def option_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.options)]

    def parse_options(self, values: dict[str, Any]) -> Any:
        """The options dataclass from a JSON/TOML table; unknown keys and wrongly typed values are errors."""
        unknown = sorted(set(values) - set(self.option_names()))
        if unknown:
            raise ValueError(
                f"rule {self.name!r} has no option {', '.join(unknown)} "
                f"(its options: {', '.join(self.option_names()) or 'none'})"
            )
        hints = typing.get_type_hints(self.options)
        return self.options(**{key: _typed(self.name, key, value, hints[key]) for key, value in values.items()})

    def build(self, options: Any, layer_names: list[str], shapes: dict[str, torch.Size]) -> InnerRule:
        return self.rule_class(layer_names, shapes, options)


def _typed(rule: str, key: str, value: Any, kind: Any) -> Any:
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in (int, str, bool) and type(value) is kind:
        return value
    wanted = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(kind, str(kind))
    raise ValueError(f"rule {rule!r}: option {key} must be {wanted}, not {value!r}")


_RULES: dict[str, RuleSpec] = {}


def register_rule(
    name: str, *, label: str, options: type, capabilities: Capabilities, colour: str, order: int,
    selected_by_default: bool = True,
) -> Callable[[type[InnerRule]], type[InnerRule]]:
    """Class decorator: register an ``InnerRule`` subclass under ``name``."""
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"rule {name!r}: options must be a dataclass, not {options!r}")

    def register(rule_class: type[InnerRule]) -> type[InnerRule]:
        earlier = _RULES.get(name)
        if earlier is not None and earlier.rule_class.__qualname__ != rule_class.__qualname__:
            raise ValueError(f"rule {name!r} is registered twice: {earlier.rule_class} and {rule_class}")
        spec = RuleSpec(name, label, rule_class, options, capabilities, colour, order, selected_by_default)
        rule_class.name = name
        rule_class.spec = spec
        _RULES[name] = spec
        return rule_class

    return register


def registered_rule_names() -> list[str]:
    return [spec.name for spec in sorted(_RULES.values(), key=lambda spec: (spec.order, spec.name))]


def rule_spec(name: Any) -> RuleSpec:
    spec = _RULES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown inner-loop rule {name!r}; choose one of {', '.join(registered_rule_names())}")
    return spec


def rule_label(name: str) -> str:
    """The rule's page label; a name no rule is registered under (an old stored run) is shown as it is."""
    spec = _RULES.get(name)
    return spec.label if spec is not None else name


def rule_colour(name: str) -> str | None:
    """The rule's chart colour, or None for a name no rule is registered under."""
    spec = _RULES.get(name)
    return spec.colour if spec is not None else None


def supported_rules(trained_rule: str) -> list[str]:
    """The rules a learner meta-trained with ``trained_rule`` can adapt with: that one first, then every
    registered rule without meta-learned parameters (those start from the trained backbone alone)."""
    rule_spec(trained_rule)
    return [trained_rule] + [
        name for name in registered_rule_names()
        if name != trained_rule and not _RULES[name].capabilities.meta_learned
    ]


def default_selection(rules: list[str]) -> list[str]:
    """Of ``supported_rules``' answer, the ones a page chooses before the user does: the trained rule (first)
    and the others registered as ``selected_by_default``."""
    return rules[:1] + [name for name in rules[1:] if name in _RULES and _RULES[name].selected_by_default]


def build_rule(config: dict[str, Any], layer_names: list[str], shapes: dict[str, torch.Size]) -> InnerRule:
    """Build a rule from its JSON config (``{"name": "alfa", "steps": 5, ...}``, as checkpoints store it)."""
    options = dict(config)
    spec = rule_spec(options.pop("name", None))
    return spec.build(spec.parse_options(options), layer_names, shapes)
