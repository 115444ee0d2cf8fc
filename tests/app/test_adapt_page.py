"""Adapt page (AppTest): benchmark and own-image runs, the stored result view, and every bad input shown cleanly."""

from __future__ import annotations

import base64
import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageOps

from core.data.images import ImageSpec
from core.data.uploads import episode_from_uploads
from core.runs import run_rules, start_run
from tests.app.builders import (
    SHAPES,
    TINY_IMAGE,
    encode,
    every_mode_image_files,
    noise_png,
    save_tiny_checkpoint,
    shape_image,
    shape_png,
    upload_classes,
    upload_queries,
)

UPLOAD = "upload"


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def class_ids(at) -> list[int]:
    return [int(t.key.removeprefix("class_name_")) for t in at.text_input if t.key.startswith("class_name_")]


def add_files(at, target, files) -> None:
    """Upload ``files`` ([(name, bytes)]) to a class (its id) or to the queries ("query")."""
    key = next(f.key for f in at.file_uploader if f.key.startswith(f"files_{target}_"))
    at.file_uploader(key=key).set_value([(name, data, "image/png") for name, data in files]).run()


def query_label_keys(at) -> list[str]:
    return [s.key for s in at.selectbox if s.key.startswith("query_label_")]


def upload_episode(at, n_classes: int = 3, names=SHAPES, shots: int = 2, query_labels=None, extra_support=None):
    """Switch to uploads, fill ``n_classes`` classes and upload one query per class, labelled by class id."""
    at.radio(key="source").set_value(UPLOAD).run()
    while len(class_ids(at)) < n_classes:
        at.button(key="add_class").click().run()
    for c, class_id in enumerate(class_ids(at)):
        at.text_input(key=f"class_name_{class_id}").set_value(names[c]).run()
        files = [(f"{names[c]}-{i}.png", shape_png(c, i)) for i in range(shots)]
        if extra_support and c == 0:
            files.append(extra_support)
        add_files(at, class_id, files)
    add_files(at, "query", [(f"query-{c}.png", shape_png(c, 4)) for c in range(n_classes)])
    ids = class_ids(at)
    for key, label in zip(query_label_keys(at), query_labels or []):
        at.selectbox(key=key).set_value(-1 if label is None else ids[label]).run()
    return at


def run_button(at):
    return at.button(key="run")


def html_text(at) -> str:
    return "".join(str(h.proto.body) for h in at.get("html"))


# ----------------------------------------------------------------------------------------- checkpoints


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


# ------------------------------------------------------------------------------------------ own images


def test_an_uploaded_episode_runs_alfa_and_sgd_and_shows_the_stored_run(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    assert_clean(at)
    assert at.selectbox(key="checkpoint").value.startswith("tiny-alfa")
    assert at.multiselect(key=f"rules_{with_checkpoint}").value == ["alfa", "sgd"]
    assert at.slider(key="steps").value == 3
    upload_episode(at, query_labels=[0, None, 2])
    assert_clean(at)
    assert not run_button(at).disabled
    run_button(at).click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    [summary] = dashboard.store().list_runs()
    detail = dashboard.store().get_run(summary.id)
    assert detail.status == "succeeded" and detail.source == "upload" and detail.class_names == list(SHAPES)
    assert [a.rule for a in detail.adaptations] == ["alfa", "sgd"]
    assert [i.label for i in detail.items if i.role == "query"] == [0, None, 2]
    # The view renders the stored run: accuracy per rule, one gallery of every query, charts.
    assert f"Run #{summary.id}" in texts(at.subheader)
    assert [m.label for m in at.metric] == ["ALFA accuracy", "SGD (MAML) accuracy"]
    assert at.metric[0].value == f"{100 * detail.adaptations[0].accuracy:.1f}%"
    gallery = html_text(at)
    assert gallery.count('class="fs-main"') == 3 and "truth: <i>unlabelled</i>" in gallery
    assert gallery.count("ALFA: <span") == 3 and gallery.count("SGD (MAML): <span") == 3
    # The first tab draws no chart; each other view is built when its tab is opened.
    assert [t.label for t in at.tabs][:5] == ["Queries", "Support set", "Loss per step", "α and β", "Confusion matrix"]
    assert not at.get("plotly_chart")
    for tab, charts in (("Loss per step", 1), ("Confusion matrix", 1)):
        at.session_state["adapt_result_tab"] = tab
        at.run()
        assert_clean(at)
        assert len(at.get("plotly_chart")) == charts, tab
    at.session_state["adapt_result_tab"] = "Queries"
    at.run()
    # The result stays after other interactions (it is read back from the store on every rerun).
    at.toggle(key="adapt_result_mistakes").set_value(True).run()
    assert_clean(at)
    assert f"Run #{summary.id}" in texts(at.subheader)


def test_a_bad_upload_is_named_once_and_the_good_files_are_kept(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, extra_support=("holiday.png", noise_png()[:300]))
    assert_clean(at)
    errors = [e for e in texts(at.error) if "holiday.png" in e]
    assert len(errors) == 1 and errors[0].startswith("holiday.png: image data is truncated or corrupt")
    assert not any("holiday.png" in i for i in texts(at.info))  # not repeated in another box
    assert html_text(at).count("circle-") >= 2  # the class's good files are there
    run_button(at).click().run()  # the episode is complete without the refused file
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    assert dashboard.store().get_run(summary.id).config["shots_per_class"] == [2, 2, 2]


def test_duplicate_class_names_stop_the_run_with_the_reason(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, n_classes=2, names=("cat", " Cat "))
    assert_clean(at)
    assert run_button(at).disabled
    assert any("both called 'Cat'" in c for c in texts(at.caption))
    assert dashboard.store().list_runs() == []


def test_missing_classes_or_queries_are_explained(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    at.radio(key="source").set_value(UPLOAD).run()
    assert run_button(at).disabled
    assert "Not ready to run: These classes have no support images: 'class 1', 'class 2'." in texts(at.caption)
    at.button(key="add_class").click().run()
    assert class_ids(at) == [0, 1, 2]
    at.button(key="remove_class_1").click().run()
    assert class_ids(at) == [0, 2]
    assert at.button(key="remove_class_0").disabled  # two classes is the least an episode has
    for class_id in class_ids(at):
        add_files(at, class_id, [("a.png", shape_png(class_id % 3, class_id))])
    assert "Not ready to run: No query images: upload at least one image to classify." in texts(at.caption)
    assert dashboard.store().list_runs() == []


def test_no_rule_chosen_is_refused(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)
    at.multiselect(key=f"rules_{with_checkpoint}").set_value([]).run()
    assert run_button(at).disabled
    assert "Not ready to run: Choose at least one inner-loop rule." in texts(at.caption)


def test_a_failing_rule_is_stored_as_a_failed_run_and_shown(dashboard) -> None:
    save_tiny_checkpoint(dashboard.checkpoints / "poisoned.safetensors", name="poisoned", nan=True)
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)
    run_button(at).click().run()
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    assert summary.status == "failed" and "support loss became nan" in summary.error
    assert f"Run #{summary.id}" in texts(at.subheader)
    assert any(e.startswith("This run failed: ALFA: the support loss became nan") for e in texts(at.error))
    assert any("No rule finished" in i for i in texts(at.info))


def test_query_labels_survive_renaming_and_adding_and_a_removal_is_announced(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, n_classes=3, query_labels=[0, 1, 2])
    first, second, third = class_ids(at)
    keys = query_label_keys(at)
    at.text_input(key=f"class_name_{second}").set_value("box").run()
    at.button(key="add_class").click().run()
    assert [at.selectbox(key=k).value for k in keys] == [first, second, third]
    assert at.selectbox(key=keys[1]).options == ["unlabelled", "circle", "box", "cross", "class 4"]
    at.button(key=f"remove_class_{third}").click().run()
    assert_clean(at)
    assert [at.selectbox(key=k).value for k in keys] == [first, second, -1]  # -1: "unlabelled"
    assert "1 query was labelled 'cross', which you removed; now unlabelled: query-2.png." in texts(at.info)
    at.slider(key="steps").set_value(2).run()  # said once, not on every rerun
    assert not any("which you removed" in i for i in texts(at.info))


def test_a_label_choice_whose_callback_did_not_run_is_kept(dashboard, with_checkpoint) -> None:
    """The label widget's value wins over the episode's record: writing the record back alone lost a user's choice
    (the first of two quick choices came back "unlabelled" in a browser test under load)."""
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)
    first, second = class_ids(at)
    keys = query_label_keys(at)
    at.session_state[keys[0]] = second  # the widget's new value, without its on_change
    at.run()
    at.selectbox(key=keys[1]).set_value(first).run()
    assert [at.selectbox(key=k).value for k in keys] == [second, first]
    run_button(at).click().run()
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    detail = dashboard.store().get_run(summary.id)
    assert [i.label for i in detail.items if i.role == "query"] == [1, 0]  # labels are class positions


def test_tiny_images_duplicates_and_unequal_shots_are_said(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    at.radio(key="source").set_value(UPLOAD).run()
    first, second = class_ids(at)
    add_files(at, first, [(f"c{i}.png", shape_png(0, i)) for i in range(3)] + [("dot.png", encode(Image.new("L", (5, 5), 0)))])
    add_files(at, second, [("s0.png", shape_png(1, 0))])
    add_files(at, "query", [("again.png", shape_png(0, 1))])
    assert_clean(at)
    [warning] = texts(at.warning)
    assert "dot.png is only 5×5 pixels; the model enlarges it to 28×28" in warning
    assert "Query again.png is the same file as support image c1.png of 'class 1'" in warning
    run_button(at).click().run()  # warnings inform, they do not block
    assert_clean(at)
    caption = next(c for c in texts(at.caption) if c.startswith("20") and "queries" in c)
    assert "2-way 4/1-shot" in caption


def test_a_reversed_drawing_gets_a_domain_warning(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    at.radio(key="source").set_value(UPLOAD).run()
    add_files(at, class_ids(at)[0], [("night.png", encode(ImageOps.invert(shape_image(0, 0, 60))))])
    assert any("night.png looks like light strokes on a dark background" in w for w in texts(at.warning))


def test_model_input_toggle_shows_what_the_model_sees(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)
    plain = html_text(at)
    at.toggle(key="input_model_view").set_value(True).run()
    assert_clean(at)
    seen = html_text(at)
    sizes = {Image.open(io.BytesIO(base64.b64decode(m))).size
             for m in re.findall(r'src="data:image/png;base64,([^"]+)"', seen)}
    assert sizes == {(28, 28)} and plain != seen and "pixelated" in seen


def test_changing_a_setting_while_a_run_is_going_keeps_the_run(dashboard, with_checkpoint, monkeypatch) -> None:
    """A run started in a session goes on through a rerun caused by another widget, is stored and then shown."""
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)
    release = threading.Event()
    import core.runs

    real_adapt = core.runs.adapt

    def slow_adapt(*args, **kwargs):
        release.wait(30)
        return real_adapt(*args, **kwargs)

    monkeypatch.setattr(core.runs, "adapt", slow_adapt)
    episode, items = episode_from_uploads(upload_classes(2), upload_queries(2), ImageSpec.from_dict(TINY_IMAGE))
    with ThreadPoolExecutor(1) as executor:
        ticket = start_run(executor, store=dashboard.store(), checkpoint_path=with_checkpoint, rules=["sgd"],
                           episode=episode, items=items, steps=1, device="cpu", source="upload", dataset="upload",
                           split=None, seed=None)
        at.session_state["adapt_ticket"] = ticket
        threading.Timer(1.0, release.set).start()
        at.slider(key="steps").set_value(1).run()  # a setting changes while the run is in flight
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    assert summary.status == "succeeded" and summary.rules == ["sgd"]
    assert f"Run #{summary.id}" in texts(at.subheader)


def test_head_choices_that_cannot_work_are_not_offered(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)  # the checkpoint was trained 5-way
    assert at.selectbox(key="head_init").options == ["Automatic", "Class prototypes", "Zero head"]


def test_switching_checkpoint_or_source_clears_the_last_result_and_errors(dashboard, with_checkpoint) -> None:
    save_tiny_checkpoint(dashboard.checkpoints / "other.safetensors", name="other")
    at = dashboard.app().run()
    upload_episode(at, n_classes=2)
    run_button(at).click().run()
    assert any(s.startswith("Run #") for s in texts(at.subheader))
    current = at.selectbox(key="checkpoint").value
    at.selectbox(key="checkpoint").set_value(next(o for o in at.selectbox(key="checkpoint").options
                                                  if o != current)).run()
    assert_clean(at)
    assert not any(s.startswith("Run #") for s in texts(at.subheader))
    run_button(at).click().run()
    assert any(s.startswith("Run #") for s in texts(at.subheader))
    at.radio(key="source").set_value("drawing").run()
    assert_clean(at)
    assert not any(s.startswith("Run #") for s in texts(at.subheader))


def test_every_accepted_image_mode_renders_in_a_stored_run_here_and_on_the_runs_page(dashboard, with_checkpoint) -> None:
    files = every_mode_image_files()
    support = [("modes", files[: len(files) // 2]), ("more modes", files[len(files) // 2 :])]
    queries = [(name, data, None) for name, data in files]
    episode, items = episode_from_uploads(support, queries, ImageSpec.from_dict(TINY_IMAGE))
    run_id = run_rules(store=dashboard.store(), checkpoint_path=with_checkpoint, rules=["alfa", "sgd"],
                       episode=episode, items=items, steps=1, device="cpu", source="upload", dataset="upload",
                       split=None, seed=None)
    at = dashboard.app("screens/runs.py", run=str(run_id)).run()
    assert_clean(at)
    assert html_text(at).count('class="fs-main"') == len(files)
    at.toggle(key=next(t.key for t in at.toggle if t.key.endswith("_model_view"))).set_value(True).run()
    assert_clean(at)


# ------------------------------------------------------------------------------------------- benchmark


def test_a_benchmark_episode_of_real_omniglot(dashboard, with_checkpoint, real_omniglot) -> None:
    at = dashboard.app().run()
    assert_clean(at)
    assert at.radio(key="source").value == "benchmark"
    assert at.multiselect(key="alphabets").value == ["Tagalog"]  # the checkpoint's held-out alphabet
    at.number_input(key="n_way").set_value(3)
    at.number_input(key="n_query").set_value(2)
    at.number_input(key="seed").set_value(7).run()
    assert_clean(at)
    assert any(e.label == "Preview: 3 classes, 9 images" for e in at.expander)
    assert at.selectbox(key="head_init").options == ["Automatic", "Class prototypes", "Zero head"]
    run_button(at).click().run()
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    detail = dashboard.store().get_run(summary.id)
    assert (detail.source, detail.dataset, detail.n_way, detail.k_shot, detail.n_query, detail.seed) == (
        "benchmark", "omniglot", 3, 1, 2, 7,
    )
    assert detail.config["alphabets"] == ["Tagalog"] and len(detail.items) == 9
    assert [m.label for m in at.metric] == ["ALFA accuracy", "SGD (MAML) accuracy"]
    at.number_input(key="n_way").set_value(5).run()
    assert at.selectbox(key="head_init").options == ["Automatic", "Meta-learned head", "Class prototypes", "Zero head"]


def test_without_omniglot_the_page_opens_on_uploads_and_a_failed_download_is_one_line(
    dashboard, with_checkpoint, monkeypatch
) -> None:
    empty = dashboard.tmp / "no-omniglot"
    monkeypatch.setenv("FEWSHOT_OMNIGLOT_ROOT", str(empty))
    at = dashboard.app().run()
    assert_clean(at)
    assert at.radio(key="source").value == UPLOAD
    at.radio(key="source").set_value("benchmark").run()
    assert any(f"Omniglot is not on this machine (looked in `{empty}`)" in i for i in texts(at.info))

    def offline(root, download):
        try:
            raise OSError("[Errno -3] Temporary failure in name resolution")
        except OSError as cause:
            raise FileNotFoundError(f"Omniglot was not found under {root}. Put the unzipped ... (long help)") from cause

    monkeypatch.setattr("app.sources.benchmark.ensure_omniglot", offline)
    at.button(key="download_omniglot").click().run()
    assert_clean(at)
    assert texts(at.error) == [("Omniglot could not be downloaded ([Errno -3] Temporary failure in name resolution). "
                               "Upload images instead.")]
    at.radio(key="source").set_value(UPLOAD).run()
    assert not at.error  # not carried to another source


def test_a_folder_per_class_tree_lists_skipped_files(dashboard, with_checkpoint) -> None:
    at = dashboard.app().run()
    at.radio(key="source").set_value("benchmark").run()
    at.radio(key="dataset").set_value("folders").run()
    assert any("Enter a folder" in i for i in texts(at.info))
    at.text_input(key="folder_root").set_value(str(dashboard.tmp / "nowhere")).run()
    assert_clean(at)
    assert any("does not exist" in c for c in texts(at.caption))
    root = dashboard.tmp / "shapes"
    for c, name in enumerate(SHAPES):
        folder = root / "test" / name
        folder.mkdir(parents=True)
        for i in range(4):
            (folder / f"{i}.png").write_bytes(shape_png(c, i))
    (root / "test" / "cross" / "sketch.svg").write_text("<svg/>")
    at.text_input(key="folder_root").set_value(str(root))
    at.text_input(key="folder_split").set_value("test").run()
    assert_clean(at)
    assert "Skipped 1 file(s) that are not images by their extension: `cross/sketch.svg`." in texts(at.warning)
    at.number_input(key="n_way").set_value(3).run()
    run_button(at).click().run()
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    detail = dashboard.store().get_run(summary.id)
    assert (detail.source, detail.dataset, detail.split) == ("folder", "shapes/test", "test")
    assert sorted(detail.class_names) == sorted(SHAPES)


@pytest.mark.parametrize("device", ["tpu", "cuda:7"])
def test_an_unavailable_device_is_an_error_not_a_traceback(dashboard, with_checkpoint, monkeypatch, device) -> None:
    monkeypatch.setenv("FEWSHOT_DEVICE", device)
    at = dashboard.app().run()
    assert_clean(at)
    assert any("Cannot choose a device" in e for e in texts(at.error))
