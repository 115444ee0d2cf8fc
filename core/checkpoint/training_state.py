"""Files to resume from: meta-training's ``state.safetensors`` and pre-training's ``<output>.state.safetensors``.

Both hold a module's tensors, the optimizer's state and how far the run got; the optimizer state is serialised
here once for both (tensors ``optim.<param index>.<key>``, the param groups in the header). Also here:
:func:`launch_command`, the command line both record for a user to run again.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.checkpoint.format import (
    PRETRAINING_STATE,
    TRAINING_STATE,
    CheckpointError,
    read_header,
    read_tensors,
    split_prefix,
    write_file,
)
from core.checkpoint.metadata import PretrainingRecord, parse_pretraining, pretraining_dict

__all__ = [
    "PretrainingProgress",
    "StateFile",
    "TrainingProgress",
    "launch_command",
    "optimizer_tensors",
    "read_state",
    "restore_optimizer",
    "write_state",
]

_OPTIMIZER = "optim"


def launch_command() -> str:
    """The command line that started this process, as a user would retype it."""
    args = [shlex.quote(a) for a in sys.argv[1:]]
    if sys.argv and sys.argv[0].endswith(("core/__main__.py", "core\\__main__.py")):
        return " ".join(["python -m core", *args])
    return " ".join([shlex.quote(sys.argv[0]) if sys.argv else "python", *args])


# ----- optimizer state -------------------------------------------------------------------------------------------
def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as named tensors (``optim.<param index>.<key>``; scalars such as
    Adam's ``step`` become 0-d tensors)."""
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{_OPTIMIZER}.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], param_groups: list[dict] | None
) -> None:
    """Inverse of :func:`optimizer_tensors`. ``param_groups`` as saved; ``None`` keeps the optimizer's own
    (pre-training files written before they were saved: the recipe check makes them the same settings)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in split_prefix(dict(tensors), _OPTIMIZER).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"] if param_groups is None
                               else param_groups})


# ----- the files -------------------------------------------------------------------------------------------------
@dataclass
class TrainingProgress:
    """How far meta-training got (``core.train.Trainer``), beside the learner and Adam state."""

    iteration: int
    best_score: float | None
    skipped_steps: int
    wall_seconds: float
    history: list[dict[str, Any]]
    pretraining: PretrainingRecord | None
    config: dict[str, Any]  # TrainConfig.to_dict() of the run, to refuse resuming with another experiment

    def to_header(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration, "best_score": self.best_score, "skipped_steps": self.skipped_steps,
            "wall_seconds": self.wall_seconds, "history": self.history, "config": self.config,
            "pretraining": None if self.pretraining is None else pretraining_dict(self.pretraining),
        }

    @classmethod
    def from_header(cls, header: Mapping[str, Any], source: str) -> TrainingProgress:
        try:
            return cls(
                iteration=int(header["iteration"]),
                best_score=None if header["best_score"] is None else float(header["best_score"]),
                # State files from before non-finite steps were skipped and counted had none.
                skipped_steps=int(header["skipped_steps"]) if "skipped_steps" in header else 0,
                wall_seconds=float(header["wall_seconds"]),
                history=list(header["history"]),
                # ... and from before pre-training existed, no pre-training.
                pretraining=parse_pretraining(header["pretraining"], source) if "pretraining" in header else None,
                config=dict(header["config"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source}: training state is incomplete or malformed ({error!r})") from None


@dataclass
class PretrainingProgress:
    """How far pre-training got (``core.pretrain.Pretrainer``), beside the network and SGD state."""

    epoch: int
    wall_seconds: float
    history: list[dict[str, float]]
    recipe: dict[str, Any]  # what must agree for the file to be resumed

    def to_header(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "wall_seconds": self.wall_seconds, "history": self.history, "recipe": self.recipe}

    @classmethod
    def from_header(cls, header: Mapping[str, Any], source: str) -> PretrainingProgress:
        try:
            return cls(epoch=int(header["epoch"]), wall_seconds=float(header["wall_seconds"]),
                       history=list(header["history"]), recipe=dict(header["recipe"]))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source}: pre-training state is incomplete or malformed ({error!r})") from None


_PROGRESS = {TRAINING_STATE: TrainingProgress, PRETRAINING_STATE: PretrainingProgress}


def write_state(
    path: str | Path,
    modules: Mapping[str, Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    progress: TrainingProgress | PretrainingProgress,
) -> Path:
    """Write a resumable state: each module's tensors under its prefix (``{"learner": state_dict}``), the
    optimizer's state and ``progress`` (whose type says which kind of file this is)."""
    kind = next(kind for kind, cls in _PROGRESS.items() if isinstance(progress, cls))
    tensors = {f"{prefix}.{name}": value for prefix, state in modules.items() for name, value in state.items()}
    header = {"kind": kind, **progress.to_header(), "param_groups": optimizer.state_dict()["param_groups"]}
    return write_file(path, {**tensors, **optimizer_tensors(optimizer)}, header)


@dataclass
class StateFile:
    """A state file read back: check ``progress`` first, then load ``module(prefix)`` and the optimizer."""

    path: Path
    progress: Any  # TrainingProgress or PretrainingProgress, as the kind asked for
    tensors: dict[str, torch.Tensor]
    param_groups: list[dict] | None

    def module(self, prefix: str) -> dict[str, torch.Tensor]:
        return split_prefix(self.tensors, prefix)

    def restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        restore_optimizer(optimizer, self.tensors, self.param_groups)


def read_state(path: str | Path, kind: str, device: torch.device | str = "cpu") -> StateFile:
    """Read a state file of ``kind`` (``TRAINING_STATE`` or ``PRETRAINING_STATE``); ``CheckpointError`` for
    another kind of file or missing progress fields."""
    path = Path(path)
    header = read_header(path)
    if header.get("kind") != kind:
        raise CheckpointError(f"{path} is not a {kind} file (its kind is {header.get('kind')!r})")
    progress = _PROGRESS[kind].from_header(header, str(path))
    param_groups = header.get("param_groups")  # None in pre-training states written before they were saved
    return StateFile(path, progress, read_tensors(path, device=device), param_groups)
