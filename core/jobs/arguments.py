"""The typed arguments of each job kind and their checks, made before any job row exists.

A job runs the command line's own functions (``core.cli.evaluation_from_args``, ``core.cli.trainer_from_args``,
``core.tune.run_tune``), so each argument class turns itself into the command's argument list
(:meth:`cli_argv`) and the command's parser reads it: a job and ``python -m core <command>`` given the same
arguments do the same work. ``None`` means "the command's default".
"""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

# Bounds of the form's numbers; larger values are typing mistakes rather than experiments.
MAX_EPISODES = 100_000
MAX_ITERATIONS = 10_000_000


def _whole(name: str, value: int | None, low: int, high: int | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")  # noqa: TRY004  # bad input: ValueError
    if value < low or (high is not None and value > high):
        upper = f" and at most {high}" if high is not None else ""
        raise ValueError(f"{name} must be at least {low}{upper}, got {value}")


def _existing_file(what: str, value: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"choose a {what}")
    path = Path(value.strip()).expanduser()
    if not path.is_file():
        raise ValueError(f"{what} {value!r} does not exist (no such file)")
    return path


def parse_command(argv: list[str]) -> argparse.Namespace:
    """``python -m core`` 's parser applied to ``argv``; its complaint (argparse prints it and exits) becomes a
    ``ValueError``."""
    from core.cli import build_parser

    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            return build_parser().parse_args(argv)
    except SystemExit:
        lines = complaint.getvalue().strip().splitlines()
        raise ValueError(lines[-1] if lines else f"cannot read the arguments {argv}") from None


def command_defaults(command: str) -> argparse.Namespace:
    """The defaults of ``python -m core <command>`` (the dashboard's forms start from them)."""
    required = {"train": ["--config", "x"], "evaluate": []}[command]
    return parse_command([command, *required])


@dataclass(frozen=True)
class EvaluateJobArguments:
    """``python -m core evaluate``: the many-episode protocol on a checkpoint (mean and 95% CI)."""

    kind: ClassVar[str] = "evaluate"

    checkpoint: str
    rule: str | None = None
    steps: int | None = None
    head_init: str | None = None
    way: int | None = None
    shot: int | None = None
    query: int | None = None
    episodes: int | None = None
    seed: int | None = None
    split: str | None = None
    folder: str | None = None
    data_root: str | None = None
    within_alphabet: bool = False
    tta_copies: int | None = None
    tta_ranges: str | None = None
    device: str | None = None

    def cli_argv(self) -> list[str]:
        # --json: no progress bar on the worker's stderr (the job reports progress to the store instead).
        return ["evaluate", *_options(self, flags=("within_alphabet",)), "--json"]

    def validate(self) -> None:
        """Every check that can be made without evaluating; ``ValueError`` saying what is wrong."""
        from core.checkpoint import CheckpointError, read_metadata, supported_rules
        from core.objectives import HEAD_INITS

        path = _existing_file("checkpoint", self.checkpoint)
        try:
            metadata = read_metadata(path)
        except (CheckpointError, OSError, ValueError) as error:
            raise ValueError(f"checkpoint {self.checkpoint!r} cannot be read: {error}") from None
        rules = supported_rules(metadata)
        if self.rule is not None and self.rule not in rules:
            raise ValueError(
                f"checkpoint {path.name} cannot adapt with rule {self.rule!r}; it supports {', '.join(rules)}"
            )
        if self.head_init is not None and self.head_init not in HEAD_INITS:
            raise ValueError(f"unknown head set-up {self.head_init!r}; choose from {', '.join(HEAD_INITS)}")
        _whole("steps", self.steps, 0, 10_000)
        _whole("way", self.way, 2, 10_000)
        _whole("shot", self.shot, 1, 10_000)
        _whole("query", self.query, 1, 10_000)
        _whole("episodes", self.episodes, 1, MAX_EPISODES)
        _whole("seed", self.seed, 0)
        _whole("test-time augmentation copies", self.tta_copies, 0, 1000)
        if self.folder is not None and not Path(self.folder).expanduser().is_dir():
            raise ValueError(f"folder {self.folder!r} does not exist")
        if metadata.image is None:  # a regression checkpoint (sine)
            if self.within_alphabet:
                raise ValueError("within-alphabet groups image classes; a sine regression checkpoint has none")
            if self.shot is None and (metadata.training is None or metadata.training.config is None):
                raise ValueError("this checkpoint does not record its training config; give the shot")
        else:
            if self.folder is None and (metadata.training is None or metadata.training.config is None):
                raise ValueError(
                    "this checkpoint does not record its training config (so neither its dataset); "
                    "give a folder of class folders to evaluate on"
                )
            if self.way is None and metadata.trained_way is None:
                raise ValueError("this checkpoint does not record its class count; give the way")
        parse_command(self.cli_argv())


@dataclass(frozen=True)
class TrainJobArguments:
    """``python -m core train``: meta-train from a TOML config (resumable)."""

    kind: ClassVar[str] = "train"

    config: str
    iterations: int | None = None
    resume: bool = False
    output_dir: str | None = None
    device: str | None = None

    def cli_argv(self) -> list[str]:
        return ["train", *_options(self, flags=("resume",)), "--no-progress"]

    def validate(self) -> None:
        from core.config import ConfigError, load_config

        path = _existing_file("config", self.config)
        _whole("iterations", self.iterations, 1, MAX_ITERATIONS)
        try:
            config = load_config(path)
        except (ConfigError, OSError, ValueError, TypeError) as error:  # TypeError: a value of the wrong type
            raise ValueError(f"config {self.config!r} cannot be used: {error}") from None
        if self.output_dir:
            config.output_dir = self.output_dir
        output = config.output_path()
        if not self.resume and (output / "state.safetensors").exists():
            raise ValueError(
                f"{output} already holds a training run; tick resume to continue it or choose another output folder"
            )
        parse_command(self.cli_argv())


@dataclass(frozen=True)
class TuneJobArguments:
    """``python -m core tune``: an Optuna study of the config's ``[tune]`` search space (``core.tune``); the
    study lives in the run store's database (``TuneRequest.storage_url`` None)."""

    kind: ClassVar[str] = "tune"

    config_path: str
    trials: int
    study_name: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    timeout_s: float | None = None

    def validate(self) -> None:
        """``core.tune.validate_request``: the config and its ``[tune]`` section, counts, sampler and pruner."""
        from core.tune import validate_request

        _existing_file("config", self.config_path)
        try:
            validate_request(self.request())
        except (TypeError, KeyError) as error:  # a value of the wrong type in the config
            raise ValueError(f"config {self.config_path!r} cannot be used: {error}") from None

    def request(self) -> Any:
        """The ``core.tune.TuneRequest`` of these arguments, on the run store's database."""
        from core.tune import TuneRequest

        return TuneRequest(
            config_path=self.config_path,
            trials=self.trials,
            study_name=self.study_name,
            storage_url=None,
            sampler=self.sampler,
            pruner=self.pruner,
            timeout_s=self.timeout_s,
        )


JobArguments = EvaluateJobArguments | TrainJobArguments | TuneJobArguments
ARGUMENT_TYPES: dict[str, type[JobArguments]] = {
    cls.kind: cls for cls in (EvaluateJobArguments, TrainJobArguments, TuneJobArguments)
}


def arguments_from_payload(kind: str, payload: dict[str, Any]) -> JobArguments:
    """The typed arguments a job row's payload holds (``dataclasses.asdict`` of them)."""
    if kind not in ARGUMENT_TYPES:
        raise ValueError(f"unknown job kind {kind!r}; choose from {', '.join(ARGUMENT_TYPES)}")
    return ARGUMENT_TYPES[kind](**payload)


def _options(arguments: Any, flags: tuple[str, ...]) -> list[str]:
    """``--name value`` for each field that is set (``--flag`` alone for the boolean ``flags``)."""
    argv: list[str] = []
    for field in fields(arguments):
        value = getattr(arguments, field.name)
        option = "--" + field.name.replace("_", "-")
        if field.name in flags:
            if value:
                argv.append(option)
        elif value is not None:
            argv += [option, str(value)]
    return argv
