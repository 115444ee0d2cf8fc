"""The ``[tune]`` section of a training config: what ``python -m core tune`` searches, and each trial's budget.

Example (``configs/sine/tune_tiny.toml``)::

    [tune]
    iterations = 40            # each trial's meta.iterations (its budget)
    validation_every = 10      # optional: a validation (a pruning point) every 10 iterations
    validation_episodes = 25   # optional: episodes per validation
    direction = "minimize"     # optional: it must agree with the objective (accuracy: maximize, MSE: minimize)

    [tune.space]
    meta.outer_lr = { low = 1e-4, high = 1e-2, log = true }
    rule.lr = { low = 1e-3, high = 0.5, log = true }
    meta.inner_steps = { choices = [1, 3, 5] }
    model.backbone.hidden = { choices = [[40, 40], [80, 80]] }

A parameter is named by its config key (``section.key``; ``rule.<option>`` for the rule's options, ``model.backbone.
<option>`` for the backbone's). A range of whole numbers is searched over whole numbers. Everything is checked when
the file is loaded: an empty range, a log range that reaches 0, an unknown key, an empty list of choices, and any
value the training config itself rejects (each bound and each choice is put into the config and validated).
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from core.config import (
    _SECTIONS,
    TUNE_SECTION,
    ConfigError,
    RuleConfig,
    TrainConfig,
    config_from_dict,
)

DIRECTIONS = ("maximize", "minimize")
_RANGE_KEYS = {"low", "high", "log", "step"}
_SETTING_KEYS = {"iterations", "validation_every", "validation_episodes", "direction", "space"}


class TuneConfigError(ConfigError):
    """A ``[tune]`` section that cannot be searched."""


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choices:
    """Values to pick from; a list value (``hidden = [40, 40]``) is offered to the sampler as its JSON text."""

    values: tuple[Any, ...]

    def encoded(self) -> tuple[Any, ...]:
        return tuple(json.dumps(v) if isinstance(v, list) else v for v in self.values)

    def decode(self, sampled: Any) -> Any:
        return self.values[self.encoded().index(sampled)]


Space = FloatRange | IntRange | Choices


@dataclass(frozen=True)
class TuneParameter:
    path: str  # the config key, "meta.outer_lr"
    space: Space

    @property
    def numeric(self) -> bool:
        return not isinstance(self.space, Choices)


@dataclass(frozen=True)
class TuneSettings:
    """The parsed ``[tune]`` section."""

    parameters: tuple[TuneParameter, ...]
    direction: str  # "maximize" | "minimize" (Optuna's words)
    iterations: int  # each trial's meta.iterations
    validation_every: int | None  # None: the config's [validation] every
    validation_episodes: int | None  # None: the config's [validation] episodes


@dataclass(frozen=True)
class TuneSetup:
    """A config file with a ``[tune]`` section: the experiment (``base``) and what to search."""

    path: Path
    raw: dict[str, Any]  # the TOML without [tune]
    base: TrainConfig
    settings: TuneSettings

    @property
    def metric(self) -> str:
        """What a trial's value is: the validation accuracy, or the validation MSE."""
        return "accuracy" if self.base.data.task_kind == "classification" else "mse"

    def trial_config(self, values: dict[str, Any], output_dir: str, name: str) -> TrainConfig:
        """The training config of one trial: ``values`` (decoded, by config key) put into the file's config, with
        the trial's budget, validation schedule and output folder. A combination the config rejects raises
        ``ConfigError``."""
        raw = copy.deepcopy(self.raw)
        for path, value in values.items():
            _put(raw, path, value)
        meta = raw.setdefault("meta", {})
        meta["iterations"] = self.settings.iterations
        validation = raw.setdefault("validation", {})
        if self.settings.validation_every is not None:
            validation["every"] = self.settings.validation_every
        if self.settings.validation_episodes is not None:
            validation["episodes"] = self.settings.validation_episodes
        raw["output_dir"] = output_dir
        raw["name"] = name
        return config_from_dict(raw)


def load_tune_setup(path: str | Path) -> TuneSetup:
    """Read a training config with a ``[tune]`` section; every mistake raises :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise TuneConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise TuneConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        return tune_setup_from_dict(raw, path)
    except ConfigError as error:
        raise type(error)(f"{path}: {error}") from None


def tune_setup_from_dict(raw: dict[str, Any], path: Path) -> TuneSetup:
    if TUNE_SECTION not in raw:
        raise TuneConfigError("has no [tune] section: add one with the search space (see core/tune_config.py)")
    table = raw[TUNE_SECTION]
    experiment = {k: v for k, v in raw.items() if k != TUNE_SECTION}
    base = config_from_dict(experiment)
    settings = _settings(table, base)
    for parameter in settings.parameters:
        _check_against_config(parameter, experiment)
    return TuneSetup(path=path, raw=experiment, base=base, settings=settings)


# ----- parsing ------------------------------------------------------------------------------------------------
def _settings(table: Any, base: TrainConfig) -> TuneSettings:
    if not isinstance(table, dict):
        raise TuneConfigError("[tune] must be a table")
    unknown = sorted(set(table) - _SETTING_KEYS)
    if unknown:
        raise TuneConfigError(
            f"unknown key(s) in [tune]: {', '.join(unknown)} (known: {', '.join(sorted(_SETTING_KEYS))})"
        )
    if "iterations" not in table:
        raise TuneConfigError("[tune] needs iterations: each trial's budget of outer iterations")
    iterations = _positive_int(table["iterations"], "tune.iterations")
    every = (
        None if "validation_every" not in table else _positive_int(table["validation_every"], "tune.validation_every")
    )
    episodes = (
        None
        if "validation_episodes" not in table
        else _positive_int(table["validation_episodes"], "tune.validation_episodes")
    )
    if (episodes if episodes is not None else base.validation.episodes) < 1:
        raise TuneConfigError("a trial is scored on validation episodes: set tune.validation_episodes to 1 or more")
    higher_is_better = base.data.task_kind == "classification"
    direction = "maximize" if higher_is_better else "minimize"
    if "direction" in table and table["direction"] != direction:
        metric = "validation accuracy" if higher_is_better else "validation MSE"
        raise TuneConfigError(
            f"tune.direction must be {direction!r} for this config (a trial's value is its {metric}), "
            f"not {table['direction']!r}"
        )
    space = table.get("space")
    if not isinstance(space, dict) or not space:
        raise TuneConfigError(
            "[tune.space] must name at least one parameter, e.g. meta.outer_lr = { low = 1e-4, high = 1e-2, log = true }"
        )
    parameters = tuple(_parameter(path, spec, base) for path, spec in _leaves(space, ""))
    return TuneSettings(parameters, direction, iterations, every, episodes)


def _leaves(table: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """(config key, search spec) pairs; ``meta.outer_lr = {...}`` in TOML nests ``meta`` > ``outer_lr``."""
    found: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and not (set(value) & (_RANGE_KEYS | {"choices"})):
            found.extend(_leaves(value, path))
        else:
            found.append((path, value))
    return found


def _parameter(path: str, spec: Any, base: TrainConfig) -> TuneParameter:
    _check_path(path, base)
    where = f"tune.space.{path}"
    if not isinstance(spec, dict):
        raise TuneConfigError(
            f"{where} must be a range {{ low = ..., high = ... }} or {{ choices = [...] }}, not {spec!r}"
        )
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise TuneConfigError(
                f"{where}: choices cannot be combined with {', '.join(sorted(set(spec) - {'choices'}))}"
            )
        values = spec["choices"]
        if not isinstance(values, list) or not values:
            raise TuneConfigError(f"{where}: choices must be a non-empty list, not {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise TuneConfigError(f"{where}: choices has duplicates: {values!r}")
        for value in values:
            if isinstance(value, dict):
                raise TuneConfigError(
                    f"{where}: a choice must be a number, a string, a boolean or a list, not {value!r}"
                )
        return TuneParameter(path, Choices(tuple(values)))
    unknown = sorted(set(spec) - _RANGE_KEYS)
    if unknown or not {"low", "high"} <= set(spec):
        raise TuneConfigError(
            f"{where} must be {{ low = ..., high = ... [, log = true] [, step = ...] }} or {{ choices = [...] }}, not {spec!r}"
        )
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TuneConfigError(f"{where}.{name} must be a finite number, not {value!r}")
    if not isinstance(log, bool):
        raise TuneConfigError(f"{where}.log must be true or false, not {log!r}")
    if not low < high:
        raise TuneConfigError(f"{where} is an empty range: low ({low!r}) must be below high ({high!r})")
    if log and low <= 0:
        raise TuneConfigError(f"{where}: a log range needs low > 0, not {low!r}")
    if isinstance(low, int) and isinstance(high, int):
        step = spec.get("step", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise TuneConfigError(f"{where}.step must be a whole number of at least 1, not {step!r}")
        if log and step != 1:
            raise TuneConfigError(f"{where}: a log range of whole numbers takes no step")
        return TuneParameter(path, IntRange(low, high, log, step))
    if "step" in spec:
        raise TuneConfigError(f"{where}.step is for whole-number ranges (write low and high without a decimal point)")
    return TuneParameter(path, FloatRange(float(low), float(high), log))


def _check_path(path: str, base: TrainConfig) -> None:
    parts = path.split(".")
    known = _known_paths(base)
    if path not in known:
        hint = [k for k in known if k.split(".")[0] == parts[0]] or sorted(known)
        raise TuneConfigError(f"tune.space: unknown parameter {path!r} (known here: {', '.join(sorted(hint))})")


def _known_paths(base: TrainConfig) -> set[str]:
    """Every config key a trial can set: the sections' scalar keys, the rule's options, the backbone's options."""
    from core.rules import rule_spec
    from models.backbones import backbone_parameters

    known: set[str] = set()
    for section, cls in _SECTIONS.items():
        if cls is RuleConfig:
            continue
        for item in fields(cls):
            if section == "model" and item.name == "backbone":
                continue
            known.add(f"{section}.{item.name}")
    known.add("rule.name")
    known |= {f"rule.{option}" for option in rule_spec(base.rule.name).option_names()}
    known |= {f"model.backbone.{option}" for option in backbone_parameters(base.model.backbone.get("name"))}
    return known - {"meta.iterations"}  # the budget: tune.iterations


def _put(raw: dict[str, Any], path: str, value: Any) -> None:
    *tables, key = path.split(".")
    target = raw
    for name in tables:
        target = target.setdefault(name, {})
    target[key] = value


def _check_against_config(parameter: TuneParameter, experiment: dict[str, Any]) -> None:
    """Each bound or choice, alone in the file's config, must make a valid config (else no trial could use it)."""
    space = parameter.space
    candidates = space.values if isinstance(space, Choices) else (space.low, space.high)
    for value in candidates:
        raw = copy.deepcopy(experiment)
        _put(raw, parameter.path, value)
        try:
            config_from_dict(raw)
        except (ConfigError, TypeError, ValueError) as error:
            raise TuneConfigError(
                f"tune.space.{parameter.path} = {value!r} is rejected by the config: {error}"
            ) from None


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TuneConfigError(f"{where} must be a whole number of at least 1, not {value!r}")
    return value
