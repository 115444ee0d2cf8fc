"""The rule registry: discovery, options, capabilities, supported rules, and switching a learner's rule."""

from __future__ import annotations

import dataclasses
import pkgutil

import pytest
import torch

import core.rules
from core.adapt import default_head_init
from core.learner import Learner
from core.rules import (
    AdaptedTensors,
    Capabilities,
    build_rule,
    default_selection,
    register_rule,
    registered_rule_names,
    rule_colour,
    rule_label,
    rule_spec,
    supported_rules,
)
from core.rules.registry import _RULES
from core.rules.sgd import SGDOptions, SGDRule
from models.backbones import head_names, inner_parameter_names

BACKBONE = {"name": "conv4", "in_channels": 1, "image_size": 8, "filters": 3, "n_blocks": 2, "n_classes": 3}
RULE_MODULES = [m.name for m in pkgutil.iter_modules(core.rules.__path__) if m.name not in ("base", "registry")]


def test_every_rule_module_of_the_package_is_discovered_and_registers_a_rule():
    modules = {spec.rule_class.__module__.rpartition(".")[2] for spec in map(rule_spec, registered_rule_names())}
    assert modules == set(RULE_MODULES)
    assert registered_rule_names() == ["sgd", "per_step", "meta_sgd", "alfa", "alfa_random", "anil"]  # by order


@pytest.mark.parametrize("name", registered_rule_names())
def test_each_rule_rebuilds_from_its_config_and_declares_its_meta_parameters(name):
    learner = Learner(BACKBONE, {"name": name}, head_init="zero", seed=0)
    config = learner.rule.config()
    assert config["name"] == name
    assert set(config) == {"name", *rule_spec(name).option_names()}
    assert build_rule(config, learner.inner_names, {n: p.shape for n, p in learner.backbone.named_parameters()}).config() == config
    # Declared, not guessed: a rule says it has meta-learned parameters exactly when it has some.
    assert rule_spec(name).capabilities.meta_learned == any(True for _ in learner.rule.parameters())
    assert rule_label(name) and rule_colour(name).startswith("#")


def test_capabilities_decide_the_adapted_tensors_the_frozen_backbone_and_the_default_head():
    backbone = Learner(BACKBONE, {"name": "sgd"}).backbone
    every, head = inner_parameter_names(backbone), head_names(backbone)
    for name in registered_rule_names():
        learner = Learner(BACKBONE, {"name": name}, seed=0)
        capabilities = rule_spec(name).capabilities
        expected = [head.weight, head.bias] if capabilities.adapts is AdaptedTensors.HEAD else every
        assert learner.inner_names == expected == learner.rule.layer_names
        assert learner.frozen_backbone == capabilities.reinitialises_backbone
        assert all(p.requires_grad != learner.frozen_backbone for p in learner.backbone.parameters())
        assert default_head_init(learner, 3) == "learned"
        assert default_head_init(learner, 5) == ("zero" if capabilities.reads_head_weights else "prototype")
    assert [n for n in registered_rule_names() if rule_spec(n).capabilities.adapts is AdaptedTensors.HEAD] == ["anil"]
    assert [n for n in registered_rule_names() if rule_spec(n).capabilities.reinitialises_backbone] == ["alfa_random"]


def test_supported_rules_are_the_trained_one_then_those_without_meta_parameters():
    assert supported_rules("sgd") == ["sgd", "anil"]
    assert supported_rules("alfa") == ["alfa", "sgd", "anil"]
    assert supported_rules("anil") == ["anil", "sgd"]
    assert default_selection(supported_rules("alfa")) == ["alfa", "sgd"]  # ANIL is offered, not preselected
    assert default_selection(supported_rules("sgd")) == ["sgd"]
    with pytest.raises(ValueError, match="unknown inner-loop rule 'adam'; choose one of sgd, per_step, .*, anil"):
        supported_rules("adam")


def test_build_rule_checks_the_rules_own_options():
    names, shapes = ["w"], {"w": torch.Size([2])}
    with pytest.raises(ValueError, match="unknown inner-loop rule"):
        build_rule({"name": "adam"}, names, shapes)
    with pytest.raises(ValueError, match=r"rule 'sgd' has no option steps \(its options: lr\)"):
        build_rule({"name": "sgd", "steps": 5}, names, shapes)
    with pytest.raises(ValueError, match="option lr must be a number"):
        build_rule({"name": "sgd", "lr": "0.1"}, names, shapes)


def test_a_rule_registered_from_one_file_is_usable_everywhere_without_other_edits():
    """What a new rule module does: register itself; the learner, supported rules and labels then know it."""

    @dataclasses.dataclass(frozen=True)
    class HalvingOptions:
        lr: float = 0.5

    @register_rule("halving_test", label="Halving (test)", options=HalvingOptions,
                   capabilities=Capabilities(meta_learned=False), colour="#123456", order=99)
    class HalvingRule(SGDRule):
        pass

    try:
        assert "halving_test" in registered_rule_names() and "halving_test" in supported_rules("alfa")
        assert rule_label("halving_test") == "Halving (test)" and rule_colour("halving_test") == "#123456"
        alfa = Learner(BACKBONE, {"name": "alfa", "lr": 0.3}, head_init="zero", seed=0)
        halving = alfa.with_rule("halving_test")
        assert isinstance(halving.rule, HalvingRule) and halving.rule.config() == {"name": "halving_test", "lr": 0.3}
    finally:
        del _RULES["halving_test"]
    assert "halving_test" not in registered_rule_names()


def test_registering_another_class_under_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_rule("sgd", label="x", options=SGDOptions, capabilities=Capabilities(meta_learned=False),
                      colour="#000000", order=0)(type("OtherSGD", (SGDRule,), {}))
    assert rule_spec("sgd").rule_class is SGDRule


def test_with_rule_keeps_the_backbone_and_the_base_rate():
    alfa = Learner(BACKBONE, {"name": "alfa", "steps": 2, "lr": 0.3}, head_init="zero", seed=0).double().eval()
    for name in ("sgd", "anil"):
        other = alfa.with_rule(name)
        assert other.rule.name == name and other.rule.config() == {"name": name, "lr": 0.3}
        assert (other.head_init, other.task_kind, other.training) == ("zero", "classification", False)
        mine, theirs = alfa.backbone.state_dict(), other.backbone.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        assert all(t.dtype == torch.float64 for t in theirs.values())
    assert alfa.with_rule("alfa") is alfa
    sgd = alfa.with_rule("sgd")
    with pytest.raises(ValueError, match=r"meta-trained with rule 'sgd' supports sgd, anil, not 'alfa'"):
        sgd.with_rule("alfa")
    with pytest.raises(ValueError, match="unknown inner-loop rule 'adam'; choose one of"):
        sgd.with_rule("adam")
    # A frozen (re-initialised) backbone stays frozen under another rule: it is still not meta-trained.
    frozen = Learner(BACKBONE, {"name": "alfa_random", "steps": 2}, head_init="zero", seed=0).with_rule("anil")
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
