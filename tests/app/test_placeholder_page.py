"""The dashboard entry page renders with and without checkpoints (AppTest, no browser)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def test_page_without_checkpoints_explains_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setattr("core.checkpoints.search_dirs", lambda: [tmp_path])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "Device:" in at.caption[0].value
    assert any("python -m core train" in w.value for w in at.warning)


def test_page_lists_a_checkpoint_and_a_broken_file(tmp_path, monkeypatch):
    from core.learner import Learner
    from core.model_io import save_learner

    learner = Learner({"name": "conv4", "filters": 4}, {"name": "sgd", "lr": 0.1})
    save_learner(tmp_path / "good.safetensors", learner, {"name": "good-one"})
    (tmp_path / "broken.safetensors").write_text("not a checkpoint")
    monkeypatch.setattr("core.checkpoints.search_dirs", lambda: [tmp_path])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    labels = [e.label for e in at.expander]
    assert any("good-one" in label for label in labels) and any("broken" in label for label in labels)
    assert any("not a safetensors checkpoint" in e.value for e in at.error)
