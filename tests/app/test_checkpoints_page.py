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


def test_shipped_checkpoint_shows_heldout_accuracy_and_a_damaged_one_its_error(dashboard, tmp_path) -> None:
    from core.shipping import package

    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")
    results = [
        {"rule": rule, "way": way, "shot": shot, "head_init": "zero", "episodes": 600, "accuracy": acc, "ci95": 0.004}
        for rule, acc in (("alfa", 0.9), ("sgd", 0.8)) for way, shot in ((5, 1), (20, 1))
    ]
    package(source, dashboard.checkpoints, "shipped-alfa", "Shipped", results, default=True)
    damaged = package(source, dashboard.checkpoints, "damaged", "Damaged", results)
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    at = dashboard.app(PAGE).run()
    assert_clean(at)
    heldout = at.dataframe[1].value
    assert list(heldout["rule"]) == ["ALFA", "SGD (MAML)"]
    assert list(heldout["5-way 1-shot"]) == ["90.00 ± 0.40 (zero head)", "80.00 ± 0.40 (zero head)"]
    assert list(heldout["20-way 1-shot"]) == ["90.00 ± 0.40 (zero head)", "80.00 ± 0.40 (zero head)"]
    summary = dict(zip(at.table[0].value["field"], at.table[0].value["value"]))
    assert summary["Measured on held-out classes, 5-way 1-shot"] == "ALFA 90.0% ± 0.4 · SGD (MAML) 80.0% ± 0.4"
    assert any("damaged.safetensors" in e and "does not match the hash" in e for e in texts(at.error))
