"""Read-only demo mode (AppTest, ``FEWSHOT_DEMO_MODE=1``): visitors adapt and browse; deleting and editing runs,
saving Lab studies, the Jobs and Tune pages are off (out of the navigation, and a message when reached by URL);
one session may add at most ``FEWSHOT_DEMO_UPLOAD_MB`` of images, and files past it are refused whole."""

from __future__ import annotations

import pytest
import streamlit as st

from core.settings import SettingError, demo_mode, demo_upload_bytes
from core.store import StudyTable
from tests.app.builders import shape_png
from tests.app.test_adapt_page import add_files, assert_clean, class_ids, run_button, texts, upload_episode
from tests.app.test_lab_page import run_small
from tests.app.test_runs_page import run_with_pictures, select
from tests.core.store.builders import adaptation

RUNS = "screens/runs.py"
JOBS = "screens/jobs.py"
TUNE = "screens/tune.py"
LAB = "screens/lab.py"
BANNER = "**Read-only demo.**"


@pytest.fixture
def demo(monkeypatch) -> None:
    monkeypatch.setenv("FEWSHOT_DEMO_MODE", "1")


def banner_shown(at) -> bool:
    return any(text.startswith(BANNER) for text in texts(at.info))


@pytest.fixture
def navigation(monkeypatch) -> list[dict[str, str]]:
    """The pages main.py gives ``st.navigation`` (title and visibility), recorded as it passes them on."""
    recorded: list[dict[str, str]] = []
    real = st.navigation

    def recording(pages, **kwargs):
        recorded[:] = [{"title": page.title, "visibility": page.visibility} for page in pages]
        return real(pages, **kwargs)

    monkeypatch.setattr(st, "navigation", recording)
    return recorded


# ------------------------------------------------------------------------------------------- settings


def test_the_demo_settings_parse_and_refuse_bad_values(monkeypatch) -> None:
    monkeypatch.delenv("FEWSHOT_DEMO_MODE", raising=False)
    monkeypatch.delenv("FEWSHOT_DEMO_UPLOAD_MB", raising=False)
    assert demo_mode() is False and demo_upload_bytes() == 20 * 1024 * 1024
    monkeypatch.setenv("FEWSHOT_DEMO_MODE", "yes")
    monkeypatch.setenv("FEWSHOT_DEMO_UPLOAD_MB", "0.5")
    assert demo_mode() is True and demo_upload_bytes() == 512 * 1024
    monkeypatch.setenv("FEWSHOT_DEMO_MODE", "maybe")
    with pytest.raises(SettingError, match="FEWSHOT_DEMO_MODE must be 1 or 0"):
        demo_mode()
    monkeypatch.setenv("FEWSHOT_DEMO_UPLOAD_MB", "-3")
    with pytest.raises(SettingError, match="FEWSHOT_DEMO_UPLOAD_MB must be a positive number of megabytes"):
        demo_upload_bytes()


# ------------------------------------------------------------------------------------ pages and banner


def test_out_of_demo_mode_every_page_is_listed_and_there_is_no_banner(dashboard, navigation) -> None:
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    assert {page["title"]: page["visibility"] for page in navigation} == {
        "Adapt": "visible",
        "Runs": "visible",
        "Checkpoints": "visible",
        "Lab": "visible",
        "Tune": "visible",
        "Jobs": "visible",
    }
    assert not banner_shown(at)


def test_demo_mode_hides_jobs_and_tune_and_says_it_is_a_demo(dashboard, demo, navigation) -> None:
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    assert {page["title"]: page["visibility"] for page in navigation} == {
        "Adapt": "visible",
        "Runs": "visible",
        "Checkpoints": "visible",
        "Lab": "visible",
        "Tune": "hidden",
        "Jobs": "hidden",
    }
    assert banner_shown(at)


@pytest.mark.parametrize(
    ("page", "message", "launch_buttons"),
    [
        (
            JOBS,
            "The Jobs page (evaluation and training jobs) is off in this read-only demo.",
            {"Start the evaluation", "Start training"},
        ),
        (TUNE, "The Tune page (tuning studies) is off in this read-only demo.", {"Launch trials as a job"}),
    ],
)
def test_jobs_and_tune_reached_by_url_are_refused_with_a_message(dashboard, demo, page, message, launch_buttons):
    at = dashboard.app(page).run()
    assert_clean(at)
    assert message in texts(at.warning)
    assert not {button.label for button in at.button} & launch_buttons
    assert dashboard.store().jobs.list() == []


# --------------------------------------------------------------------------------------------------- runs


def test_runs_are_browsed_but_not_deleted_or_edited(dashboard, demo) -> None:
    store = dashboard.store()
    ids = [store.save_run(run_with_pictures(), [adaptation()], total_seconds=1.0) for _ in range(2)]
    at = dashboard.app(RUNS).run()
    select(at, ids)
    assert_clean(at)
    assert at.subheader[0].value == "2 selected run(s)"  # browsing and comparing stay
    assert not [button for button in at.button if button.key in ("delete", "delete_confirm")]
    assert "Deleting runs is off in this read-only demo." in texts(at.caption)
    assert "Names, tags and notes cannot be edited in this read-only demo." in texts(at.caption)
    assert not [b for b in at.button if b.key and b.key.startswith("FormSubmitter:edit_")]  # no edit form
    assert [s.id for s in store.list_runs()] == sorted(ids, reverse=True)


def test_a_lab_study_runs_but_is_not_saved(dashboard, demo) -> None:
    at = run_small(dashboard)
    assert at.session_state["lab_study"][0] == "new study"  # computed and shown
    assert "Saving studies is off in this read-only demo; the stored ones below can be opened." in texts(at.caption)
    assert not [b for b in at.button if b.key == "FormSubmitter:lab_save_form-Save study"]
    assert StudyTable(dashboard.store()).list_studies() == []


# ------------------------------------------------------------------------------------------------ uploads


def test_a_visitor_adapts_an_uploaded_episode_in_demo_mode(dashboard, demo, with_checkpoint) -> None:
    at = dashboard.app().run()
    upload_episode(at, n_classes=2, query_labels=[0, 1])
    run_button(at).click().run()
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    assert summary.status == "succeeded" and summary.owner == "local"


def test_uploads_past_the_sessions_limit_are_refused_whole(dashboard, demo, with_checkpoint, monkeypatch) -> None:
    files = [(f"shape-{i}.png", shape_png(i % 3, i)) for i in range(5)]
    sizes = [len(data) for _name, data in files]
    # Room for exactly the first four files: the fourth fits after the first three, but not with the fifth.
    limit = sum(sizes[:3]) + sizes[3]
    monkeypatch.setenv("FEWSHOT_DEMO_UPLOAD_MB", repr(limit / (1024 * 1024)))
    at = dashboard.app().run()
    at.radio(key="source").set_value("upload").run()
    first, second = class_ids(at)
    add_files(at, first, files[:2])
    add_files(at, second, files[2:3])
    assert_clean(at)
    assert not at.error
    episode = at.session_state["own_episode"]
    assert episode.added_bytes == sum(sizes[:3])
    add_files(at, second, files[3:5])  # the fourth would fit alone; together they do not
    assert_clean(at)
    episode = at.session_state["own_episode"]
    assert [image.name for image in episode.classes[1].images] == ["shape-2.png"]  # nothing of the two was kept
    assert episode.added_bytes == sum(sizes[:3])
    [message] = texts(at.error)
    assert message.startswith("Not added: shape-3.png, shape-4.png (")
    assert message.endswith("None of these files was kept.")
    assert f"{limit / (1024 * 1024):.2f} MB of images" in message
    add_files(at, second, files[3:4])  # alone it fits
    episode = at.session_state["own_episode"]
    assert [image.name for image in episode.classes[1].images] == ["shape-2.png", "shape-3.png"]
    assert episode.added_bytes == limit
    assert not at.error
