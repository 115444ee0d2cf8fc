"""Checkpoints page (AppTest): metadata and measured accuracy of each checkpoint, its α/β across held-out episodes
(recorded, or measured on request), broken files with their error."""

from __future__ import annotations

import dataclasses
import json

from tests.app.builders import save_sine_checkpoint, save_tiny_checkpoint, synthetic_spread
from tests.app.test_adapt_page import assert_clean, texts
from tests.core.test_rule_spread import omniglot_tree

PAGE = "screens/checkpoints.py"


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
    # Rule names as everywhere else; "measured" says what it is: validation accuracy, read from the metadata.
    assert (tiny["backbone"], tiny["rule"], tiny["validation accuracy"]) == ("conv4", "ALFA", "90.0% ± 2.0")
    sine = table[table["name"] == "tiny-sine"].iloc[0]
    assert (sine["rule"], sine["validation accuracy"]) == ("SGD (MAML)", "—")
    assert "measured" not in table.columns and not table["default"].any()  # no manifest, no default
    assert any(c.startswith("Validation accuracy: mean accuracy ± 95% confidence interval over the validation "
                            "episodes run during training") for c in texts(at.caption))
    labels = [e.label for e in at.expander]
    assert any(label.startswith("tiny-alfa — ") for label in labels)
    position = next(i for i, label in enumerate(labels) if label.startswith("tiny-alfa"))
    summary = at.table[position].value  # one summary table per expander
    rows = dict(zip(summary["field"], summary["value"]))
    assert rows["Backbone"].startswith("conv4 (") and rows["Inner-loop rule"].startswith("ALFA (")
    assert rows["Validation accuracy"] == "90.0% ± 2.0 (on Greek, measured during training)"
    assert rows["Trained on"].startswith("kind: omniglot") and "test: Tagalog" in rows["Trained on"]
    assert "python -m core train --config tiny.toml" in texts(at.code)
    assert "Adapts with: ALFA, SGD (MAML), ANIL (head only)" in texts(at.caption)
    assert any("Not an image classifier" in i for i in texts(at.info))
    assert any("broken.safetensors" in e and "not a safetensors checkpoint" in e for e in texts(at.error))


def test_shipped_checkpoint_shows_heldout_accuracy_and_a_damaged_one_its_error(dashboard, tmp_path) -> None:
    from core.checkpoint import HeldOutResult
    from core.packaging import package

    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")
    results = [
        HeldOutResult(rule=rule, way=way, shot=shot, head_init="zero", episodes=600, n_query=15, seed=12345, steps=3,
                      accuracy=acc, ci95=0.004, seconds=1.0)
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
    assert summary["Held-out test accuracy, 5-way 1-shot"] == "ALFA 90.0% ± 0.4 · SGD (MAML) 80.0% ± 0.4"
    # The manifest's default is marked in the table, in its expander and nowhere else.
    table = at.dataframe[0].value
    assert dict(zip(table["name"], table["default"])) == {"shipped-alfa": True}  # the damaged file is listed as an error
    assert at.expander[0].label.startswith("shipped-alfa (default) — ")
    assert any(c.startswith("Default checkpoint: the checkpoint the Adapt page offers first") for c in texts(at.caption))
    assert any("damaged.safetensors" in e and "does not match the hash" in e for e in texts(at.error))


def test_validation_accuracy_says_how_it_was_measured(dashboard) -> None:
    from core.checkpoint import TrainingData, TrainingRecord, ValidationResult

    training = TrainingRecord(
        command="python -m core train --config tiny.toml",
        data=TrainingData(kind="omniglot", root=None, train=("Latin",), val=("Greek", "Korean"), test=("Tagalog",)),
        config={"validation": {"episodes": 100, "every": 200}, "task": {"n_way": 5, "k_shot": 1, "n_query": 5}},
        iterations=1, tasks_seen=4, wall_seconds=0.1, device="cpu", estimator="maml", skipped_nonfinite_steps=0,
        pretraining=None,
    )
    save_tiny_checkpoint(dashboard.checkpoints / "tiny.safetensors", training=training,
                         validation=ValidationResult(metric="accuracy", mean=0.934, ci95=0.0162, score=0.934))
    at = dashboard.app(PAGE).run()
    assert_clean(at)
    assert at.dataframe[0].value["validation accuracy"][0] == "93.4% ± 1.6"
    rows = dict(zip(at.table[0].value["field"], at.table[0].value["value"]))
    assert rows["Validation accuracy"] == "93.4% ± 1.6 (100 episodes, 5-way 1-shot, on Greek, Korean, measured during training)"


def test_checkpoint_view_reads_metrics_from_metadata_not_from_labels(tmp_path) -> None:
    import dataclasses

    from app.checkpoint_view import MeasuredMetric, measured_metrics, validation_accuracy
    from core.checkpoint import ValidationResult, read_metadata

    metadata = read_metadata(save_tiny_checkpoint(tmp_path / "tiny.safetensors"))
    assert measured_metrics(metadata) == [MeasuredMetric("validation", "accuracy", 0.9, 0.02)]
    assert validation_accuracy(metadata) == MeasuredMetric("validation", "accuracy", 0.9, 0.02)
    regression = dataclasses.replace(metadata, validation=ValidationResult("mse", 0.5, 0.02, -0.5))
    assert [(m.label, m.value) for m in measured_metrics(regression)] == [("Validation MSE", "0.5 ± 0.02")]
    assert validation_accuracy(regression) is None  # an MSE is not an accuracy
    unmeasured = dataclasses.replace(metadata, validation=None)
    assert measured_metrics(unmeasured) == [] and validation_accuracy(unmeasured) is None
    no_interval = dataclasses.replace(metadata, validation=ValidationResult("accuracy", 0.75, None, 0.75))
    assert [m.value for m in measured_metrics(no_interval)] == ["75.0%"]


def test_the_shipped_checkpoints_mark_their_default(dashboard, monkeypatch) -> None:
    from core.settings import SHIPPED_CHECKPOINT_DIR

    monkeypatch.setenv("FEWSHOT_DEFAULT_CHECKPOINT_DIRS", str(SHIPPED_CHECKPOINT_DIR))
    at = dashboard.app(PAGE).run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table.loc[table["default"], "name"]) == ["resnet12_alfa_maml_augmented"]
    assert set(table["rule"]) == {"ALFA", "ALFA from random init", "SGD (MAML)"}
    assert all(value.endswith(("%", "—")) or " ± " in value for value in table["validation accuracy"])
    assert at.expander[0].label.startswith("resnet12_alfa_maml_augmented (default) — ")
    # The held-out rows: every rule a shipped file was measured with (ANIL too, on the augmented default).
    assert set(at.dataframe[1].value["rule"]) == {"ALFA", "ALFA from random init", "SGD (MAML)", "ANIL (head only)"}


def adaptivity_charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("_adaptivity")]


def save_trained(path, n_way: int | None, name: str = "tiny-alfa"):
    """The tiny ALFA checkpoint with Tagalog held out; trained ``n_way``-way 1-shot (``None``: no config recorded)."""
    from core.checkpoint import read_metadata

    training = read_metadata(save_tiny_checkpoint(path)).training
    config = None if n_way is None else {"task": {"n_way": n_way, "k_shot": 1, "n_query": 2}}
    return save_tiny_checkpoint(path, name=name, training=dataclasses.replace(training, config=config))


def test_recorded_adaptivity_is_drawn_per_layer_and_step_with_a_caption_in_words(dashboard) -> None:
    from core.checkpoint import read_metadata

    path = save_tiny_checkpoint(dashboard.checkpoints / "tiny.safetensors")
    save_tiny_checkpoint(path, adaptivity=synthetic_spread(read_metadata(path).inner_tensors))
    save_sine_checkpoint(dashboard.checkpoints / "sine" / "best.safetensors")  # SGD: nothing to show
    at = dashboard.app(PAGE).run()
    assert_clean(at)
    [figure] = adaptivity_charts(at)
    assert figure["layout"]["title"]["text"].startswith("ALFA: α and β per layer over 4 held-out episodes")
    assert [trace["name"] for trace in figure["data"]] == ["step 0", "step 1", "step 2"] * 2
    assert figure["layout"]["xaxis"]["ticktext"][0] == "block 1 conv weight"
    [caption] = [c for c in texts(at.caption) if c.startswith("Largest spread of α")]
    assert "std/|mean| 0 " in caption and "the generated rates are the same for every episode: a fixed per-step " \
        "schedule" in caption and "recorded when the checkpoint was packaged" in caption
    assert not at.button


def test_without_recorded_figures_a_button_measures_them_and_errors_are_said(dashboard, monkeypatch, tmp_path) -> None:
    from core.checkpoint import file_sha256

    monkeypatch.setenv("FEWSHOT_OMNIGLOT_ROOT", str(omniglot_tree(tmp_path / "omniglot", drawings=6)))
    three_way = save_trained(dashboard.checkpoints / "a.safetensors", 3, name="three-way")
    twenty_way = save_trained(dashboard.checkpoints / "b.safetensors", 20, name="twenty-way")
    save_trained(dashboard.checkpoints / "c.safetensors", None, name="no-config")
    sha256 = file_sha256(three_way)
    at = dashboard.app(PAGE).run()
    assert_clean(at)
    assert not adaptivity_charts(at)
    button = at.button(key=f"checkpoint_{three_way}_measure_adaptivity")
    assert button.label == "Measure them now (20 held-out 3-way 1-shot episodes, 3 inner steps)"
    assert any("not measurable here: it does not record its training config" in c for c in texts(at.caption))
    button.click().run()
    assert_clean(at)
    [figure] = adaptivity_charts(at)
    assert "over 20 held-out episodes (3-way 1-shot)" in figure["layout"]["title"]["text"]
    assert any("measured now, not stored in the file" in c for c in texts(at.caption))
    at.run()  # still shown on the next rerun (from the cache), and the file is as it was
    assert len(adaptivity_charts(at)) == 1 and file_sha256(three_way) == sha256
    at.button(key=f"checkpoint_{twenty_way}_measure_adaptivity").click().run()
    assert_clean(at)
    assert any(e.startswith("The α/β figures could not be measured: ") and "20-way" in e for e in texts(at.error))
