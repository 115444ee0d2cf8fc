"""The checkpoint facts the Adapt and Checkpoints pages show (``app.checkpoint_view.checkpoint_rows``)."""

from __future__ import annotations

import dataclasses

from app.checkpoint_view import checkpoint_rows
from core.checkpoint import TrainingRecord, TuningRecord, read_metadata
from tests.app.builders import save_sine_checkpoint


def _training(config: dict | None, estimator: str | None, tuning: TuningRecord | None = None) -> TrainingRecord:
    return TrainingRecord(
        command="python -m core train --config x.toml", config=config, data=None, iterations=12, tasks_seen=48,
        wall_seconds=3.5, device="cpu", estimator=estimator, skipped_nonfinite_steps=0, pretraining=None,
        tuning=tuning,
    )


def test_a_proximal_checkpoint_says_which_inner_problem_adapting_solves_and_how_it_was_trained(tmp_path) -> None:
    plain = read_metadata(save_sine_checkpoint(tmp_path / "sine.safetensors"))
    tuning = TuningRecord(study="demo", trial=3, params={"meta.outer_lr": 0.0025, "meta.inner_steps": 2})
    metadata = dataclasses.replace(plain, training=_training({"meta": {"proximal_lambda": 0.5}}, "imaml", tuning))
    rows = {row["field"]: row["value"] for row in checkpoint_rows(metadata)}
    assert rows["Inner problem"] == "support loss + 0.5/2 ‖y − x‖² (proximal, x the initialisation)"
    assert rows["Training"] == "12 iterations, 48 tasks, 3.5 s on cpu, meta-gradient imaml"
    assert rows["Tuning trial"] == "trial 3 of study demo: meta.outer_lr = 0.0025, meta.inner_steps = 2"


def test_a_plain_checkpoint_shows_no_inner_problem_row(tmp_path) -> None:
    plain = read_metadata(save_sine_checkpoint(tmp_path / "sine.safetensors"))
    metadata = dataclasses.replace(plain, training=_training({"meta": {}}, "maml"))
    rows = {row["field"]: row["value"] for row in checkpoint_rows(metadata)}
    assert "Inner problem" not in rows and "Tuning trial" not in rows
    assert rows["Training"].endswith("on cpu, meta-gradient maml")
