"""Runs page (AppTest): history with filters, opening a run (also by ?run=), comparing, exporting, deleting."""

from __future__ import annotations

import json

import pytest

from core.data.images import ImageSpec
from core.data.uploads import episode_from_uploads
from core.runs import RunFailed, run_rules
from tests.app.builders import TINY_IMAGE, save_tiny_checkpoint, upload_classes, upload_queries
from tests.app.test_adapt_page import assert_clean, texts

RUNS = "pages/runs.py"


def seed_runs(dashboard, checkpoint) -> list[int]:
    """Three runs: ALFA+SGD 3-way 2-shot, SGD 2-way 1-shot with 5 steps, and a failed one."""
    store = dashboard.store()
    spec = ImageSpec.from_dict(TINY_IMAGE)
    common = {
        "store": store, "checkpoint_path": checkpoint, "device": "cpu", "source": "upload", "dataset": "upload",
        "split": None, "seed": None,
    }
    episode, items = episode_from_uploads(upload_classes(3, shots=2), upload_queries(3), spec)
    first = run_rules(rules=["alfa", "sgd"], episode=episode, items=items, steps=3, **common)
    episode, items = episode_from_uploads(upload_classes(2, shots=1), upload_queries(2), spec)
    second = run_rules(rules=["sgd"], episode=episode, items=items, steps=5, **common)
    with pytest.raises(RunFailed) as failed:
        run_rules(rules=["sgd", "meta_sgd"], episode=episode, items=items, steps=1, **common)
    return [first, second, failed.value.run_id]


@pytest.fixture
def seeded(dashboard, with_checkpoint) -> list[int]:
    return seed_runs(dashboard, with_checkpoint)


def table_ids(at) -> list[int]:
    return [int(i) for i in at.dataframe[0].value["id"]]


def test_no_runs_yet_says_how_to_make_one(dashboard) -> None:
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    assert any("No runs yet" in i for i in texts(at.info))


def test_the_history_lists_runs_newest_first_and_filters_them(dashboard, seeded) -> None:
    first, second, failed = seeded
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    assert table_ids(at) == [failed, second, first]
    at.multiselect(key="f_status").set_value(["failed"]).run()
    assert table_ids(at) == [failed]
    at.multiselect(key="f_status").set_value([]).run()
    at.multiselect(key="f_rule").set_value(["alfa"]).run()
    assert table_ids(at) == [first]
    at.multiselect(key="f_rule").set_value([])
    at.multiselect(key="f_way").set_value([2]).run()
    assert table_ids(at) == [failed, second]
    at.multiselect(key="f_way").set_value([])
    at.multiselect(key="f_shot").set_value([2]).run()
    assert table_ids(at) == [first]
    at.multiselect(key="f_shot").set_value([])
    at.multiselect(key="f_checkpoint").set_value(["tiny-alfa"])
    at.multiselect(key="f_source").set_value(["benchmark"]).run()
    assert any("No run matches" in i for i in texts(at.info))
    at.multiselect(key="f_source").set_value(["upload"]).run()
    assert len(table_ids(at)) == 3
    stored = dashboard.store().get_run(first)
    best = max(a.accuracy for a in stored.adaptations)
    at.slider(key="f_accuracy").set_value(100).run()
    assert_clean(at)
    expected = [first] if best == 1.0 else []
    assert (table_ids(at) if at.dataframe else []) == [i for i in expected]
    at.slider(key="f_accuracy").set_value(0)
    import datetime as dt

    today = dt.date.today()
    at.date_input(key="f_dates").set_value((today - dt.timedelta(days=1), today + dt.timedelta(days=1))).run()
    assert len(table_ids(at)) == 3
    at.date_input(key="f_dates").set_value((today - dt.timedelta(days=9), today - dt.timedelta(days=8))).run()
    assert_clean(at)
    assert any("No run matches" in i for i in texts(at.info))


def test_a_run_opens_from_the_query_parameter(dashboard, seeded) -> None:
    first, _second, failed = seeded
    at = dashboard.app(RUNS, run=str(first)).run()
    assert_clean(at)
    assert f"Run #{first}" in texts(at.subheader)
    assert [m.label for m in at.metric] == ["ALFA accuracy", "SGD (MAML) accuracy"]
    assert len(at.get("plotly_chart")) == 3
    at = dashboard.app(RUNS, run=str(failed)).run()
    assert_clean(at)
    assert any(e.startswith("This run failed: Meta-SGD") for e in texts(at.error))
    at.button(key="back_to_runs").click().run()
    assert "run" not in at.query_params and at.dataframe


@pytest.mark.parametrize(("value", "message"), [("abc", "not a run id"), ("999", "There is no run #999")])
def test_a_bad_query_parameter_is_an_error_message(dashboard, seeded, value, message) -> None:
    at = dashboard.app(RUNS, run=value).run()
    assert_clean(at)
    assert any(message in e for e in texts(at.error))


def test_open_button_and_rerun(dashboard, seeded) -> None:
    first = seeded[0]
    at = dashboard.app(RUNS).run()
    at.selectbox(key="open_id").set_value(first)
    at.button(key="open_run").click().run()
    assert_clean(at)
    assert at.query_params["run"] == [str(first)] or at.query_params["run"] == str(first)
    assert f"Run #{first}" in texts(at.subheader)
    at.button(key=f"rerun_{first}").click().run()
    assert_clean(at)
    [message] = texts(at.success)
    new_id = int(message.removeprefix("Stored as run #").rstrip("."))
    rerun = dashboard.store().get_run(new_id)
    assert rerun.note == f"re-run of run #{first}" and [a.rule for a in rerun.adaptations] == ["alfa", "sgd"]


def test_selected_runs_are_compared_and_exported(dashboard, seeded) -> None:
    first, second, _failed = seeded
    at = dashboard.app(RUNS).run()
    at.multiselect(key="selected_runs").set_value([first, second]).run()
    assert_clean(at)
    assert "2 selected run(s)" in texts(at.subheader)
    assert len(at.get("plotly_chart")) == 1
    differences = at.dataframe[1].value
    assert "setting" in differences.columns and list(differences.columns[1:]) == [f"run #{first}", f"run #{second}"]
    assert "way" in list(differences["setting"]) and "device" not in list(differences["setting"])
    at.toggle(key="only_differences").set_value(False).run()
    everything = at.dataframe[1].value
    assert "device" in list(everything["setting"]) and len(everything) > len(differences)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Export runs (JSON)", "Export runs with traces (CSV)", "Export predictions (CSV)"]
    exported = json.loads(dashboard.store().export_runs([first, second], "json"))
    assert len(exported) == 2


def test_deleting_needs_a_confirmation(dashboard, seeded) -> None:
    first, second, failed = seeded
    at = dashboard.app(RUNS).run()
    at.multiselect(key="selected_runs").set_value([second, failed]).run()
    at.button(key="delete").click().run()
    assert_clean(at)
    assert any("cannot be undone" in w for w in texts(at.warning))
    at.button(key="delete_cancel").click().run()
    assert len(dashboard.store().list_runs()) == 3
    at.button(key="delete").click().run()
    at.button(key="delete_confirm").click().run()
    assert_clean(at)
    assert [s.id for s in dashboard.store().list_runs()] == [first]
    assert any("Deleted 2 run(s)" in s for s in texts(at.success))
    assert table_ids(at) == [first] and at.multiselect(key="selected_runs").value == []


def test_a_second_checkpoint_appears_in_the_filters(dashboard, seeded) -> None:
    other = save_tiny_checkpoint(dashboard.checkpoints / "other.safetensors", name="other-ckpt")
    spec = ImageSpec.from_dict(TINY_IMAGE)
    episode, items = episode_from_uploads(upload_classes(2), upload_queries(2), spec)
    run_rules(store=dashboard.store(), checkpoint_path=other, rules=["sgd"], episode=episode, items=items, steps=1,
              device="cpu", source="upload", dataset="upload", split=None, seed=None)
    at = dashboard.app(RUNS).run()
    assert at.multiselect(key="f_checkpoint").options == ["other-ckpt", "tiny-alfa"]
    at.multiselect(key="f_checkpoint").set_value(["other-ckpt"]).run()
    assert len(table_ids(at)) == 1
