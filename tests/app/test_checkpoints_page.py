"""Checkpoints page (AppTest): metadata and measured accuracy of each checkpoint, broken files with their error."""

from __future__ import annotations

from tests.app.builders import save_sine_checkpoint, save_tiny_checkpoint
from tests.app.test_adapt_page import assert_clean, texts

PAGE = "pages/checkpoints.py"


def test_without_checkpoints_the_page_gives_the_train_command(dashboard) -> None:
    at = dashboard.app(PAGE).run()
    assert_clean(at)
    assert any("No checkpoints found yet" in w for w in texts(at.warning))
    assert any("python -m core train" in c for c in texts(at.code))


def test_checkpoints_with_their_metadata_and_broken_files_with_their_error(dashboard) -> None:
    save_tiny_checkpoint(dashboard.checkpoints / "tiny.safetensors")
    save_sine_checkpoint(dashboard.checkpoints / "sine" / "best.safetensors")
    (dashboard.checkpoints / "broken.safetensors").write_text("not a checkpoint")
    at = dashboard.app(PAGE).run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["name"]) == ["tiny-sine", "tiny-alfa"] or list(table["name"]) == ["tiny-alfa", "tiny-sine"]
    tiny = table[table["name"] == "tiny-alfa"].iloc[0]
    assert (tiny["backbone"], tiny["rule"], tiny["measured"]) == ("conv4", "alfa", "90.0% ± 2.0")
    labels = [e.label for e in at.expander]
    assert any(label.startswith("tiny-alfa — ") for label in labels)
    position = next(i for i, label in enumerate(labels) if label.startswith("tiny-alfa"))
    summary = at.table[position].value  # one summary table per expander
    rows = dict(zip(summary["field"], summary["value"]))
    assert rows["Backbone"].startswith("conv4 (") and rows["Inner-loop rule"].startswith("ALFA (")
    assert rows["Measured accuracy (validation)"] == "90.0% ± 2.0"
    assert rows["Trained on"].startswith("kind: omniglot") and "test: Tagalog" in rows["Trained on"]
    assert "python -m core train --config tiny.toml" in texts(at.code)
    assert "Adapts with: alfa, sgd" in texts(at.caption)
    assert any("Not an image classifier" in i for i in texts(at.info))
    assert any("broken.safetensors" in e and "not a safetensors checkpoint" in e for e in texts(at.error))
