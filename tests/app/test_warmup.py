"""python -m app warms the engine up before the server listens: the page's learner cache is filled, and a
failure is reported, never raised."""

from __future__ import annotations

import app.resources
from app.warmup import warm_up
from tests.app.builders import save_tiny_checkpoint


def test_warm_up_loads_the_default_checkpoint_into_the_pages_cache(dashboard, monkeypatch) -> None:
    checkpoint = save_tiny_checkpoint(dashboard.checkpoints / "tiny.safetensors")
    app.resources._learner.clear()
    report = warm_up()
    assert report.problems == []
    assert list(report.seconds) == ["imports", "run store", "default checkpoint", "figures"]
    assert report.summary().startswith("dashboard warmed up in ")

    def must_not_load(*args, **kwargs):
        raise AssertionError("the warm-up should have loaded this learner already")

    monkeypatch.setattr(app.resources, "load_learner", must_not_load)
    for rule in ("alfa", "sgd"):
        learner, metadata = app.resources.cached_loader(checkpoint, rule, "cpu")
        assert learner.rule.name == rule and metadata.name == "tiny-alfa"


def test_a_failing_step_is_reported_and_the_rest_still_runs(dashboard, monkeypatch) -> None:
    save_tiny_checkpoint(dashboard.checkpoints / "tiny.safetensors")
    app.resources._learner.clear()

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(app.resources, "load_learner", broken)
    report = warm_up()
    assert report.problems == ["default checkpoint: disk on fire"]
    assert "figures" in report.seconds and "not warmed: default checkpoint: disk on fire" in report.summary()
