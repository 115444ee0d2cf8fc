"""Every shipped config parses; typos and bad values are errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, config_from_dict, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_shipped_configs_parse(path):
    config = load_config(path)
    assert config.name and config.meta.iterations > 0
    rule = config.rule.as_rule_dict(config.meta.inner_steps)
    assert rule["name"] == config.rule.name


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
