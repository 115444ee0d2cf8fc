"""Every shipped config parses; typos and bad values are errors that say what is wrong."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
import torch

from core.checkpoint import read_metadata
from core.config import ConfigError, config_from_dict, load_config
from core.meta.outer_step import choose_outer_step
from core.rules import rule_spec
from tests.core.checkpoint.test_metadata import LEGACY_SHIPPED

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.toml"))


def _rule_dict_before_the_registry(table: dict, inner_steps: int) -> dict:
    """What the one shared ``RuleConfig`` (before each rule had its own options) gave training for ``[rule]``."""
    shared = {"name": "sgd", "lr": 0.01, "steps": None, "weight_decay": 5e-4, "generator_init": "default", **table}
    rule = {"name": shared["name"], "lr": shared["lr"]}
    if shared["name"] in ("per_step", "alfa", "alfa_random"):
        rule["steps"] = shared["steps"] or inner_steps
    if shared["name"] in ("alfa", "alfa_random"):
        rule["weight_decay"] = shared["weight_decay"]
        rule["generator_init"] = shared["generator_init"]
        rule["learning_state"] = shared.get("learning_state", "means")  # added after: its default is the old tau
    return rule


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_shipped_configs_parse(path):
    config = load_config(path)
    assert config.name and config.meta.iterations > 0
    # Training builds exactly the rule it built before the rules had their own options.
    table = tomllib.loads(path.read_text()).get("rule", {})
    assert config.rule.as_rule_dict() == _rule_dict_before_the_registry(table, config.meta.inner_steps)
    # And a run's stored config (``to_dict``) reads back as the same config.
    assert config_from_dict(config.to_dict()) == config


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "assets" / "checkpoints").glob("*.safetensors"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_checkpoints_training_config_reads_back_as_its_rule(path):
    metadata = read_metadata(path)
    config = config_from_dict(dict(metadata.training.config))
    options = dataclasses.asdict(rule_spec(metadata.rule.name).options(**metadata.rule.options))
    assert config.rule.as_rule_dict() == {"name": metadata.rule.name, **options}
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("path", LEGACY_SHIPPED, ids=lambda p: p.stem)
def test_the_training_configs_stored_in_shipped_checkpoints_parse_to_their_rule(path):
    """They carry the old shared ``[rule]`` table (an sgd rule with weight_decay, generator_init and steps = None)."""
    metadata = read_metadata(path)
    stored = dict(metadata.training.config)
    config = config_from_dict(stored)
    # Options added since the file was written (ALFA's learning_state) take their defaults, the old behaviour.
    options = dataclasses.asdict(rule_spec(metadata.rule.name).options(**metadata.rule.options))
    assert config.rule.as_rule_dict() == {"name": metadata.rule.name, **options}
    assert set(stored["rule"]) == {"name", "lr", "steps", "weight_decay", "generator_init"}
    # They were trained with Adam, before meta.outer_step existed; read back, their config still says so.
    assert "outer_step" not in stored["meta"]
    assert choose_outer_step(config.meta.outer_step, config.meta.outer_step_options, config.meta.grad_clip).build(
        [torch.zeros(1)], lr=config.meta.outer_lr).optimizer.__class__ is torch.optim.Adam


def test_old_shared_rule_keys_are_accepted_only_at_their_old_default():
    old = {"name": "sgd", "lr": 0.1, "steps": None, "weight_decay": 5e-4, "generator_init": "default"}
    assert config_from_dict({"rule": old}).rule.as_rule_dict() == {"name": "sgd", "lr": 0.1}
    for key, value in [("weight_decay", 1e-3), ("generator_init", "identity"), ("steps", 3)]:
        with pytest.raises(ConfigError, match=rf"rule 'sgd' has no option {key} \(its options: lr\)"):
            config_from_dict({"rule": {**old, key: value}})
    # A key the old table never had is an error whatever its value, and lists the chosen rule's own options.
    with pytest.raises(ConfigError, match=r"no option momentum \(its options: steps, lr, weight_decay, generator_init, learning_state\)"):
        config_from_dict({"rule": {"name": "alfa", "momentum": 0.9}})


def test_steps_default_to_the_inner_steps_for_rules_that_have_them():
    for name in ("per_step", "alfa", "alfa_random"):
        assert config_from_dict({"rule": {"name": name}, "meta": {"inner_steps": 3}}).rule.options.steps == 3
        assert config_from_dict({"rule": {"name": name, "steps": 7}, "meta": {"inner_steps": 3}}).rule.options.steps == 7
    assert config_from_dict({"rule": {"name": "anil", "lr": 0.4}}).rule.as_rule_dict() == {"name": "anil", "lr": 0.4}


@pytest.mark.parametrize(
    "rule,message",
    [
        ({"name": "adam"}, r"unknown inner-loop rule 'adam'; choose one of sgd, .*anil"),
        ({"name": "sgd", "lr": "fast"}, "option lr must be a number, not 'fast'"),
        ({"name": "alfa", "steps": 2.5}, "option steps must be an integer"),
        ({"name": "alfa", "steps": 0}, "steps must be at least 1"),
        ({"name": "alfa", "generator_init": "zeros"}, "generator_init must be 'default' or 'identity'"),
    ],
)
def test_bad_rule_tables(rule, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"rule": rule})


def test_pretraining_is_refused_for_a_rule_that_reinitialises_the_backbone():
    config_from_dict({"rule": {"name": "alfa"}, "pretrain": {"epochs": 2}})
    with pytest.raises(ConfigError, match="alfa_random .*re-initialises the backbone"):
        config_from_dict({"rule": {"name": "alfa_random"}, "pretrain": {"epochs": 2}})


def test_there_are_configs_for_each_experiment():
    names = {p.stem for p in CONFIGS}
    assert {"conv4_maml", "conv4_alfa_maml", "conv4_alfa_maml_zero", "conv4_alfa_random", "maml_5shot", "alfa_maml_20shot"} <= names


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"meta": {"meta_bach": 2}}, "meta_bach"),
        ({"data": {"kind": "imagenet"}}, "data.kind"),
        ({"meta": {"algorithm": "third_order"}}, "meta.algorithm"),
        ({"meta": {"iterations": 0}}, "meta.iterations"),
        ({"task": {"n_way": 1}}, "n_way"),
        ({"colour": "blue"}, "colour"),
        ({"meta": {"iterations": "many"}}, "meta.iterations must be a whole number, not 'many'"),
        ({"meta": {"inner_steps": 2.5}}, "meta.inner_steps must be a whole number, not 2.5"),
        ({"meta": {"outer_lr": True}}, "meta.outer_lr must be a number, not True"),
        ({"meta": {"batched": 1}}, "meta.batched must be true or false, not 1"),
        ({"seed": "0"}, "seed must be a whole number, not '0'"),
    ],
)
def test_bad_configs(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[meta\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"model": {"backbone": {"name": "vgg"}}}, r"model.backbone.name must be one of conv1d, conv4, mlp, resnet12, not 'vgg'"),
        ({"model": {"backbone": {"name": "conv4", "filterz": 3}}}, r"unknown option\(s\) for backbone 'conv4': filterz"),
        ({"model": {"head_init": "proto"}}, "model.head_init must be one of learned, zero, prototype, not 'proto'"),
    ],
)
def test_the_model_is_checked_against_the_backbone_registry_and_the_head_choices(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)
