"""Resumable state files: one optimizer-state serialisation for meta-training and pre-training, exact round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError, PretrainingRecord
from core.checkpoint.format import PRETRAINING_STATE, TRAINING_STATE, read_header, read_tensors, write_file
from core.checkpoint.training_state import (
    PretrainingProgress,
    TrainingProgress,
    launch_command,
    optimizer_tensors,
    read_state,
    restore_optimizer,
    write_state,
)


def _stepped(optimizer_class, **options) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    optimizer = optimizer_class(model.parameters(), **options)
    for step in range(3):
        loss = model(torch.randn(5, 3, generator=torch.Generator().manual_seed(step))).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def _next_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    loss = model(torch.randn(5, 3, generator=torch.Generator().manual_seed(99))).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("optimizer_class,options", [
    (torch.optim.Adam, {"lr": 1e-2}),
    (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
])
def test_optimizer_state_round_trips_so_the_next_step_is_identical(optimizer_class, options, tmp_path) -> None:
    model, optimizer = _stepped(optimizer_class, **options)
    tensors = optimizer_tensors(optimizer)
    assert tensors and all(name.startswith("optim.") for name in tensors)
    # Through a file, as a resumed run reads it (the live tensors would alias the running optimizer's state).
    path = write_file(tmp_path / "state.safetensors", tensors, {"param_groups": optimizer.state_dict()["param_groups"]})
    # A fresh process: other initial weights and no optimizer state until both are loaded.
    torch.manual_seed(1)
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    twin.load_state_dict(model.state_dict())
    fresh = optimizer_class(twin.parameters(), **options)
    restore_optimizer(fresh, read_tensors(path), read_header(path)["param_groups"])
    expected, resumed = _next_step(model, optimizer), _next_step(twin, fresh)
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0, msg=name)


def test_training_state_file_round_trips_progress_modules_and_optimizer(tmp_path: Path) -> None:
    model, optimizer = _stepped(torch.optim.Adam, lr=1e-2)
    pretraining = PretrainingRecord(file="p.safetensors", sha256="a" * 64, command="python -m core pretrain", epochs=2,
                                    classes=52, images=1040, train=("Latin",), rotations=(0, 90), wall_seconds=1.5,
                                    final_train_accuracy=0.5, recipe={"epochs": 2, "lr": 0.05})
    progress = TrainingProgress(iteration=7, best_score=0.5, skipped_steps=1, wall_seconds=2.5,
                                history=[{"iteration": 5}], pretraining=pretraining, config={"name": "x"})
    path = write_state(tmp_path / "state.safetensors", {"learner": model.state_dict()}, optimizer, progress)
    state = read_state(path, TRAINING_STATE)
    assert state.progress == progress
    assert state.module("learner").keys() == model.state_dict().keys()
    with pytest.raises(CheckpointError, match="is not a pretraining_state file"):
        read_state(path, PRETRAINING_STATE)


def test_older_state_files_fall_back_as_they_were_written(tmp_path: Path) -> None:
    """Training states from before skipped steps were counted and pre-training existed; pre-training states
    from before their optimizer's param groups were saved."""
    old = write_file(tmp_path / "state.safetensors", {}, {
        "kind": "training_state", "iteration": 3, "best_score": None, "wall_seconds": 1.0, "history": [],
        "config": {}, "param_groups": [],
    })
    progress = read_state(old, TRAINING_STATE).progress
    assert (progress.skipped_steps, progress.pretraining) == (0, None)
    pre = write_file(tmp_path / "p.safetensors", {}, {
        "kind": "pretraining_state", "epoch": 1, "wall_seconds": 1.0, "history": [], "recipe": {},
    })
    state = read_state(pre, PRETRAINING_STATE)
    assert state.progress == PretrainingProgress(epoch=1, wall_seconds=1.0, history=[], recipe={})
    assert state.param_groups is None  # restore_optimizer keeps the optimizer's own
    broken = write_file(tmp_path / "b.safetensors", {}, {"kind": "training_state", "iteration": 3})
    with pytest.raises(CheckpointError, match="training state is incomplete"):
        read_state(broken, TRAINING_STATE)


def test_launch_command_is_what_a_user_retypes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["/abs/core/__main__.py", "train", "--config", "a b.toml"])
    assert launch_command() == "python -m core train --config 'a b.toml'"
    monkeypatch.setattr("sys.argv", ["bench/x.py", "--fast"])
    assert launch_command() == "bench/x.py --fast"
