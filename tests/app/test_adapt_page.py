"""Adapt page (AppTest): benchmark and upload runs, the stored result view, and every bad input shown cleanly."""

from __future__ import annotations

import pytest

from tests.app.builders import SHAPES, noise_png, save_tiny_checkpoint, shape_png

UPLOAD = "Upload images"


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def upload_episode(at, n_classes: int = 3, names=SHAPES, shots: int = 2, query_labels=None, extra_support=None):
    """Switch to uploads, fill ``n_classes`` classes and upload one query per class."""
    at.radio(key="source").set_value(UPLOAD).run()
    while len([f for f in at.file_uploader if f.key.startswith("class_files_")]) < n_classes:
        at.button(key="add_class").click().run()
    class_keys = [f.key for f in at.file_uploader if f.key.startswith("class_files_")]
    for c, key in enumerate(class_keys):
        at.text_input(key=key.replace("class_files_", "class_name_")).set_value(names[c])
        files = [(f"{names[c]}-{i}.png", shape_png(c, i), "image/png") for i in range(shots)]
        if extra_support and c == 0:
            files.append(extra_support)
        at.file_uploader(key=key).set_value(files)
    at.file_uploader(key="query_files").set_value(
        [(f"query-{c}.png", shape_png(c, 4), "image/png") for c in range(n_classes)]
    )
    at.run()
    labels = [s for s in at.selectbox if s.label.startswith("Label of")]
    for selectbox, label in zip(labels, query_labels or []):
        selectbox.set_value(label)
    return at.run()


def test_without_checkpoints_the_page_gives_the_train_command(dashboard) -> None:
    at = dashboard.app().run()
    assert_clean(at)
    assert "Device: cpu" in texts(at.caption)
    assert any("No image-classification checkpoint" in w for w in texts(at.warning))
    assert any("python -m core train" in c for c in texts(at.code))


def test_unusable_files_are_not_offered_but_pointed_to(dashboard) -> None:
    (dashboard.checkpoints / "broken.safetensors").write_text("not a checkpoint")
    at = dashboard.app().run()
    assert_clean(at)
    assert any("No image-classification checkpoint" in w for w in texts(at.warning))
    assert not at.selectbox


def test_an_uploaded_episode_runs_alfa_and_sgd_and_shows_the_stored_run(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    assert_clean(at)
    assert at.selectbox(key="checkpoint").value.startswith("tiny-alfa")
    assert at.multiselect(key=f"rules_{with_checkpoint}").value == ["alfa", "sgd"]
    assert at.slider(key="steps").value == 3
    upload_episode(at, query_labels=["circle", "unlabelled", "cross"])
    assert_clean(at)
    at.button(key="run").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    run_id = at.session_state["adapt_run_id"]
    detail = dashboard.store().get_run(run_id)
    assert detail.status == "succeeded" and detail.source == "upload" and detail.class_names == list(SHAPES)
    assert [a.rule for a in detail.adaptations] == ["alfa", "sgd"]
    # The view renders the stored run: accuracy per rule, gallery, charts.
    assert f"Run #{run_id}" in texts(at.subheader)
    assert [m.label for m in at.metric] == ["ALFA accuracy", "SGD (MAML) accuracy"]
    assert at.metric[0].value == f"{100 * detail.adaptations[0].accuracy:.1f}%"
    gallery = [t for t in texts(at.markdown) if t.startswith("ALFA: **")]
    assert len(gallery) == 3 and "SGD (MAML): **" in gallery[0]
    assert "truth: _unlabelled_" in texts(at.markdown)
    assert len(at.get("plotly_chart")) == 3  # support curves, alpha, beta
    assert at.selectbox(key="adapt_result_trace_rule").options == ["ALFA", "SGD (MAML)"]
    at.selectbox(key="adapt_result_trace_rule").set_value("SGD (MAML)").run()
    assert_clean(at)
    # The result stays after other interactions (it is read back from the store on every rerun).
    at.toggle(key="adapt_result_mistakes").set_value(True).run()
    assert_clean(at)
    assert f"Run #{run_id}" in texts(at.subheader)


def test_a_bad_upload_is_named_and_nothing_is_stored(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, extra_support=("holiday.png", noise_png()[:300], "image/png"))
    assert_clean(at)
    assert any("holiday.png: image data is truncated or corrupt" in e for e in texts(at.error))
    at.button(key="run").click().run()
    assert_clean(at)
    assert any("holiday.png" in e for e in texts(at.error))
    assert dashboard.store().list_runs() == []


def test_duplicate_class_names_are_refused(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, n_classes=2, names=("cat", " Cat "))
    at.button(key="run").click().run()
    assert_clean(at)
    assert any("both called 'Cat'" in e for e in texts(at.error))
    assert dashboard.store().list_runs() == []


def test_missing_classes_or_queries_are_explained(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    at.radio(key="source").set_value(UPLOAD).run()
    assert any("no support images" in i for i in texts(at.info))
    at.button(key="run").click().run()
    assert_clean(at)
    assert any("no support images: 'class 1', 'class 2'" in e for e in texts(at.error))
    at.button(key="remove_class_1").click().run()
    at.button(key="run").click().run()
    assert any("at least 2 classes" in e for e in texts(at.error))
    at.button(key="add_class").click().run()
    assert [t.key for t in at.text_input] == ["class_name_0", "class_name_2"]
    assert dashboard.store().list_runs() == []


def test_no_rule_chosen_is_refused(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)
    at.multiselect(key=f"rules_{with_checkpoint}").set_value([]).run()
    at.button(key="run").click().run()
    assert_clean(at)
    assert "Choose at least one inner-loop rule." in texts(at.error)
    assert dashboard.store().list_runs() == []


def test_a_failing_rule_is_stored_as_a_failed_run_and_shown(dashboard) -> None:
    save_tiny_checkpoint(dashboard.checkpoints / "poisoned.safetensors", name="poisoned", nan=True)
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)
    at.button(key="run").click().run()
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    assert summary.status == "failed" and "support loss became nan" in summary.error
    assert at.session_state["adapt_run_id"] == summary.id
    assert any("ALFA: the support loss became nan" in e for e in texts(at.error))
    assert any(e.startswith("This run failed: ALFA") for e in texts(at.error))
    assert any("No rule finished" in i for i in texts(at.info))


def test_a_benchmark_episode_of_real_omniglot(dashboard, with_checkpoint, real_omniglot) -> None:
    at = dashboard.app().run()
    assert_clean(at)
    assert at.radio(key="source").value == "Benchmark episode"
    assert at.multiselect(key="alphabets").value == ["Tagalog"]  # the checkpoint's held-out alphabet
    at.number_input(key="n_way").set_value(3)
    at.number_input(key="n_query").set_value(2)
    at.number_input(key="seed").set_value(7).run()
    assert_clean(at)
    assert any(e.label == "Preview: 3 classes" for e in at.expander)
    at.button(key="run").click().run()
    assert_clean(at)
    detail = dashboard.store().get_run(at.session_state["adapt_run_id"])
    assert (detail.source, detail.dataset, detail.n_way, detail.k_shot, detail.n_query, detail.seed) == (
        "benchmark", "omniglot", 3, 1, 2, 7,
    )
    assert detail.config["alphabets"] == ["Tagalog"] and len(detail.items) == 9
    assert [m.label for m in at.metric] == ["ALFA accuracy", "SGD (MAML) accuracy"]


def test_missing_omniglot_says_where_to_put_it_and_offers_a_download(dashboard, with_checkpoint, monkeypatch) -> None:
    empty = dashboard.tmp / "no-omniglot"
    monkeypatch.setenv("FEWSHOT_OMNIGLOT_ROOT", str(empty))
    at = dashboard.app().run()
    assert_clean(at)
    assert any(f"Omniglot was not found under {empty}" in w for w in texts(at.warning))

    def offline(root, download):
        raise FileNotFoundError(f"Omniglot was not found under {root}. The download failed: no internet")

    monkeypatch.setattr("core.data.omniglot.ensure_omniglot", offline)
    at.button(key="download_omniglot").click().run()
    assert_clean(at)
    assert any("The download failed: no internet" in e for e in texts(at.error))


def test_a_folder_per_class_tree(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    at.radio(key="dataset").set_value("Folder-per-class tree").run()
    assert any("Enter a folder" in i for i in texts(at.info))
    at.text_input(key="folder_root").set_value(str(dashboard.tmp / "nowhere")).run()
    assert_clean(at)
    assert any("does not exist" in e for e in texts(at.error))
    root = dashboard.tmp / "shapes"
    for c, name in enumerate(SHAPES):
        folder = root / "test" / name
        folder.mkdir(parents=True)
        for i in range(4):
            (folder / f"{i}.png").write_bytes(shape_png(c, i))
    at.text_input(key="folder_root").set_value(str(root))
    at.text_input(key="folder_split").set_value("test").run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    at.number_input(key="n_way").set_value(3).run()
    at.button(key="run").click().run()
    assert_clean(at)
    detail = dashboard.store().get_run(at.session_state["adapt_run_id"])
    assert (detail.source, detail.dataset, detail.split) == ("folder", "shapes/test", "test")
    assert sorted(detail.class_names) == sorted(SHAPES)


@pytest.mark.parametrize("device", ["tpu", "cuda:7"])
def test_an_unavailable_device_is_an_error_not_a_traceback(dashboard, with_checkpoint, monkeypatch, device) -> None:
    monkeypatch.setenv("FEWSHOT_DEVICE", device)
    at = dashboard.app().run()
    assert_clean(at)
    assert any("Cannot choose a device" in e for e in texts(at.error))
