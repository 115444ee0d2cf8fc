"""Runs page (AppTest): the history with filters and selection in the URL, opening a run (a link, a button or
?run=), names/tags/notes, comparing (overlays, settings, groups, parallel coordinates), re-running, exporting,
deleting."""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from urllib.parse import parse_qs, urlparse

import pytest

from core.data.images import ImageSpec
from core.data.uploads import episode_from_uploads
from core.runs import RunFailed, run_rules
from tests.app.builders import TINY_IMAGE, save_tiny_checkpoint, shape_png, upload_classes, upload_queries
from tests.app.test_adapt_page import assert_clean, texts
from tests.core.store.builders import adaptation, run_input

RUNS = "screens/runs.py"
FILTER_KEYS = ("dates", "search", "tags", "min_accuracy", "sources", "datasets", "statuses", "ways", "shots",
               "checkpoints", "rules")


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


def run_with_pictures(**settings):
    """``run_input(**settings)`` whose images are real PNGs (the run view shows them)."""
    run = run_input(**settings)
    for index, item in enumerate(run.items):
        item.image.data = shape_png(index, index)
    return run


@pytest.fixture
def known(dashboard) -> dict[str, int]:
    """Runs built without a model, with known accuracies (oldest first: a, b, c)."""
    store = dashboard.store()
    return {
        "a": store.save_run(run_with_pictures(n_way=2, k_shot=1, checkpoint_name="ck-a"),
                            [adaptation("sgd", accuracy=0.5), adaptation("alfa", accuracy=0.75)], total_seconds=1.0),
        "b": store.save_run(run_with_pictures(n_way=2, k_shot=1, checkpoint_name="ck-a"),
                            [adaptation("sgd", accuracy=0.25), adaptation("alfa", accuracy=1.0)], total_seconds=2.0),
        "c": store.save_run(run_with_pictures(n_way=5, k_shot=5, checkpoint_name="ck-b"),
                            [adaptation("alfa", accuracy=0.6)], total_seconds=3.0),
    }


def table(at):
    return at.dataframe[0]


def table_ids(at) -> list[int]:
    return [int(parse_qs(urlparse(link).query)["run"][0]) for link in table(at).value["run"]]


def select(at, ids: list[int]):
    """Tick the rows of these runs in the history table, as a click on their checkboxes does."""
    listed = table_ids(at)
    at.session_state[table(at).key] = {"selection": {"rows": [listed.index(i) for i in ids], "columns": [], "cells": []}}
    return at.run()


def url_values(at, key: str) -> list[str]:
    value = at.query_params.get(key, [])
    return [value] if isinstance(value, str) else list(value)


def chart(at, key: str) -> dict:
    [found] = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    return json.loads(found.proto.spec)


def frame(at, column: str):
    """The one table with this column (read-only tables carry no key in AppTest)."""
    [found] = [d.value for d in at.dataframe if column in d.value.columns]
    return found


# ------------------------------------------------------------------------------------------- the list


def test_no_runs_yet_says_how_to_make_one(dashboard) -> None:
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    assert any("No runs yet" in i for i in texts(at.info))


def test_the_history_lists_runs_newest_first_and_filters_them(dashboard, seeded) -> None:
    first, second, failed = seeded
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    assert table_ids(at) == [failed, second, first]
    at.multiselect(key="statuses").set_value(["failed"]).run()
    assert table_ids(at) == [failed]
    at.multiselect(key="statuses").set_value([]).run()
    at.multiselect(key="rules").set_value(["alfa"]).run()
    assert table_ids(at) == [first]
    at.multiselect(key="rules").set_value([])
    at.multiselect(key="ways").set_value([2]).run()
    assert table_ids(at) == [failed, second]
    at.multiselect(key="ways").set_value([])
    at.multiselect(key="shots").set_value([2]).run()
    assert table_ids(at) == [first]
    at.multiselect(key="shots").set_value([])
    at.multiselect(key="checkpoints").set_value(["tiny-alfa"])
    at.multiselect(key="sources").set_value(["benchmark"]).run()
    assert any("No run matches" in i for i in texts(at.info))
    at.multiselect(key="sources").set_value(["upload"]).run()
    assert len(table_ids(at)) == 3
    stored = dashboard.store().get_run(first)
    best = max(a.accuracy for a in stored.adaptations)
    at.slider(key="min_accuracy").set_value(100).run()
    assert_clean(at)
    expected = [first] if best == 1.0 else []
    assert (table_ids(at) if at.dataframe else []) == expected
    at.slider(key="min_accuracy").set_value(0)
    today = dt.date.today()
    at.date_input(key="dates").set_value((today - dt.timedelta(days=1), today + dt.timedelta(days=1))).run()
    assert len(table_ids(at)) == 3
    at.date_input(key="dates").set_value((today - dt.timedelta(days=9), today - dt.timedelta(days=8))).run()
    assert_clean(at)
    assert any("No run matches" in i for i in texts(at.info))


def test_each_rule_has_a_numeric_sortable_accuracy_column(dashboard, known) -> None:
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    values = table(at).value
    assert table_ids(at) == [known["c"], known["b"], known["a"]]
    assert str(values["accuracy: ALFA"].dtype) == "float64" and str(values["accuracy: SGD (MAML)"].dtype) == "float64"
    assert list(values["accuracy: ALFA"]) == [60.0, 100.0, 75.0]
    sgd = list(values["accuracy: SGD (MAML)"])
    assert math.isnan(sgd[0]) and sgd[1:] == [25.0, 50.0]  # run c has no SGD adaptation
    columns = json.loads(table(at).proto.columns)
    for rule in ("ALFA", "SGD (MAML)"):
        assert columns[f"accuracy: {rule}"]["type_config"] == {"type": "number", "format": "%.1f%%"}
    assert columns["run"]["type_config"]["type"] == "link"
    assert "accuracy" not in values.columns  # no text column of all accuracies any more


def test_filters_and_selection_come_from_the_url(dashboard, known) -> None:
    at = dashboard.app(RUNS, ways="2", rules="ALFA", checkpoints="ck-a", select=[str(known["a"])]).run()
    assert_clean(at)
    assert not at.warning
    assert table_ids(at) == [known["b"], known["a"]]
    assert at.multiselect(key="ways").value == [2] and at.multiselect(key="rules").value == ["alfa"]
    assert "1 selected run(s)" in texts(at.subheader)
    assert json.loads(table(at).proto.selection_default)["selection"]["rows"] == [1]  # run a is ticked in the table
    # Every filter is bound to the URL parameter of its name, so the browser keeps the URL up to date.
    widgets = {w.key: w for kind in ("date_input", "text_input", "multiselect", "slider") for w in at.get(kind)}
    for key in FILTER_KEYS:
        assert widgets[key].proto.query_param_key == key, key

    reloaded = dashboard.app(RUNS, dates=[str(dt.date.today()), str(dt.date.today())], min_accuracy="80",
                             select=[str(known["b"]), str(known["c"])]).run()
    assert_clean(reloaded)
    assert table_ids(reloaded) == [known["b"]]  # 100 % ALFA; c (60 %) and a (75 %) are below 80 %
    assert "1 selected run(s)" in texts(reloaded.subheader)  # c is selected but not listed


def test_bad_url_values_are_a_warning_and_are_ignored(dashboard, known) -> None:
    at = dashboard.app(RUNS, ways=["2", "abc"], min_accuracy="300", dates="yesterday", select=["x", str(known["c"])],
                       rules="NOPE").run()
    assert_clean(at)
    [warning] = texts(at.warning)
    for part in ("ways=abc (no such choice)", "min_accuracy=300", "dates=yesterday (not a date", "select=x",
                 "rules=NOPE"):
        assert part in warning
    assert "ways=2" not in warning
    assert table_ids(at) == [known["b"], known["a"]]  # ways=2 still applies
    assert "0 selected" not in " ".join(texts(at.subheader))


def test_ticking_rows_selects_them_into_the_url_and_opens_one(dashboard, known) -> None:
    at = dashboard.app(RUNS).run()
    select(at, [known["b"]])
    assert_clean(at)
    assert url_values(at, "select") == [str(known["b"])]
    assert "1 selected run(s)" in texts(at.subheader)
    at.button(key="open_selected").click().run()
    assert_clean(at)
    assert url_values(at, "run") == [str(known["b"])] and f"Run #{known['b']}" in texts(at.subheader)
    at.button(key="back_to_runs").click().run()
    assert "run" not in at.query_params and "1 selected run(s)" in texts(at.subheader)  # the selection is kept
    select(at, [known["c"], known["a"]])
    assert url_values(at, "select") == [str(known["c"]), str(known["a"])]
    assert not [b for b in at.button if b.key == "open_selected"]  # opening is for one run
    select(at, [])
    assert "select" not in at.query_params and not at.subheader


def test_a_run_id_in_the_table_links_to_the_run_with_the_filters(dashboard, known) -> None:
    at = dashboard.app(RUNS, ways="2", select=str(known["a"])).run()
    links = list(table(at).value["run"])
    assert [parse_qs(urlparse(link).query) for link in links] == [
        {"ways": ["2"], "run": [str(known["b"])]}, {"ways": ["2"], "run": [str(known["a"])]}
    ]
    opened = dashboard.app(RUNS, **{k: v[0] for k, v in parse_qs(urlparse(links[0]).query).items()}).run()
    assert_clean(opened)
    assert f"Run #{known['b']}" in texts(opened.subheader)


# ---------------------------------------------------------------------------------- names, tags, notes


def test_name_tags_and_note_are_edited_from_the_list(dashboard, known) -> None:
    at = dashboard.app(RUNS).run()
    select(at, [known["a"], known["b"]])
    at.selectbox(key="edit_which").set_value(known["b"]).run()
    prefix = f"edit_list_{known['b']}"
    at.text_input(key=f"{prefix}_name").input("  baseline 2-way ")
    at.multiselect(key=f"{prefix}_tags").set_value(["v1", "ablation"])
    at.text_area(key=f"{prefix}_note").input("lr too high?")
    at.button(key=f"{prefix}_save").click().run()
    assert_clean(at)
    stored = dashboard.store().get_run(known["b"])
    assert (stored.name, stored.tags, stored.note) == ("baseline 2-way", ["v1", "ablation"], "lr too high?")
    assert any(f"Saved the name, tags and note of run #{known['b']}" in s for s in texts(at.success))
    values = table(at).value
    row = table_ids(at).index(known["b"])
    assert values["name"][row] == "baseline 2-way" and list(values["tags"][row]) == ["v1", "ablation"]
    # The tag and name filters find it.
    assert at.multiselect(key="tags").options == ["ablation", "v1"]
    at.multiselect(key="tags").set_value(["v1"]).run()
    assert table_ids(at) == [known["b"]]
    at.multiselect(key="tags").set_value([])
    at.text_input(key="search").input("BASELINE").run()
    assert table_ids(at) == [known["b"]]


def test_a_bad_tag_is_refused_with_a_message_and_nothing_is_stored(dashboard, known) -> None:
    at = dashboard.app(RUNS).run()
    select(at, [known["a"]])
    prefix = f"edit_list_{known['a']}"
    at.text_input(key=f"{prefix}_name").input("kept out")
    at.multiselect(key=f"{prefix}_tags").set_value(["two words"])
    at.button(key=f"{prefix}_save").click().run()
    assert_clean(at)
    assert any(e.startswith("Not saved: tag 'two words' may only contain") for e in texts(at.error))
    stored = dashboard.store().get_run(known["a"])
    assert (stored.name, stored.tags) == (None, [])


def test_name_tags_and_note_are_edited_on_the_run_view(dashboard, known) -> None:
    run_id = known["c"]
    dashboard.store().update_run(run_id, tags=["old"])
    at = dashboard.app(RUNS, run=str(run_id)).run()
    prefix = f"edit_one_{run_id}"
    assert at.multiselect(key=f"{prefix}_tags").value == ["old"]
    at.text_input(key=f"{prefix}_name").input("five-way")
    at.multiselect(key=f"{prefix}_tags").set_value(["old", "new"])
    at.text_area(key=f"{prefix}_note").input("  keep this  ")
    at.button(key=f"{prefix}_save").click().run()
    assert_clean(at)
    stored = dashboard.store().get_run(run_id)
    assert (stored.name, stored.tags, stored.note) == ("five-way", ["old", "new"], "keep this")
    assert f"Saved the name, tags and note of run #{run_id}." in texts(at.success)
    # The popover's label says what the run is called now (AppTest keeps a popover as a plain block).
    assert "Name, tags and note: five-way · old, new" in _block_labels(at)


# ------------------------------------------------------------------------------------------- comparing


def test_grouping_gives_n_mean_and_the_95_percent_interval(dashboard, known) -> None:
    at = dashboard.app(RUNS).run()
    select(at, [known["a"], known["b"]])
    assert_clean(at)
    groups = frame(at, "± 95% CI")
    assert list(groups.columns) == ["rule", "n", "mean accuracy", "± 95% CI"]
    assert list(groups["rule"]) == ["ALFA", "SGD (MAML)"] and list(groups["n"]) == [2, 2]
    assert list(groups["mean accuracy"]) == pytest.approx([87.5, 37.5])
    # 1.96 * population std / sqrt(n): std of (75, 100) is 12.5, of (50, 25) also 12.5.
    assert list(groups["± 95% CI"]) == pytest.approx([1.96 * 12.5 / math.sqrt(2)] * 2)

    at.toggle(key="group_all").set_value(True)
    at.multiselect(key="group_by").set_value(["way", "rule"]).run()
    groups = frame(at, "± 95% CI")
    assert [tuple(row) for row in groups[["way", "rule", "n"]].itertuples(index=False)] == [
        (2, "ALFA", 2), (2, "SGD (MAML)", 2), (5, "ALFA", 1)
    ]
    assert math.isnan(groups["± 95% CI"].iloc[2])  # one value: no interval
    at.multiselect(key="group_by").set_value([]).run()
    everything = frame(at, "± 95% CI")
    accuracies = [50, 75, 25, 100, 60]
    assert list(everything["n"]) == [5] and everything["mean accuracy"][0] == pytest.approx(statistics.mean(accuracies))
    assert everything["± 95% CI"][0] == pytest.approx(1.96 * statistics.pstdev(accuracies) / math.sqrt(5))


def test_parallel_coordinates_go_from_settings_to_accuracy(dashboard, known) -> None:
    at = dashboard.app(RUNS).run()
    select(at, [known["c"], known["a"]])
    assert_clean(at)
    [parcoords] = chart(at, "compare_parallel")["data"]
    assert parcoords["type"] == "parcoords"
    dimensions = {d["label"]: d for d in parcoords["dimensions"]}
    assert list(dimensions) == ["way", "shot", "steps", "checkpoint", "rule", "accuracy (%)"]
    # One line per (run, rule): c ALFA, a SGD, a ALFA.
    assert dimensions["way"]["values"] == [5, 2, 2]
    assert dimensions["accuracy (%)"]["values"] == [60.0, 50.0, 75.0]
    assert dimensions["checkpoint"]["ticktext"] == ["ck-a", "ck-b"] and dimensions["checkpoint"]["values"] == [1, 0, 0]
    assert dimensions["rule"]["ticktext"] == ["ALFA", "SGD (MAML)"] and dimensions["rule"]["values"] == [0, 1, 0]


def test_overlays_show_every_selected_run_and_rule(dashboard, known) -> None:
    at = dashboard.app(RUNS).run()
    select(at, [known["c"], known["a"]])
    names = [f"#{known['c']} ALFA (3 steps)", f"#{known['a']} SGD (3 steps)", f"#{known['a']} ALFA (3 steps)"]
    for key in ("compare_loss", "compare_accuracy", "compare_alpha", "compare_beta"):
        assert [trace["name"] for trace in chart(at, key)["data"]] == names, key
    stored = dashboard.store().get_run(known["a"]).adaptations[0]
    assert chart(at, "compare_loss")["data"][1]["y"] == stored.support_loss
    mean_alpha = [sum(v["alpha"] for v in step.values()) / len(step) for step in stored.traces]
    assert chart(at, "compare_alpha")["data"][1]["y"] == pytest.approx(mean_alpha)
    layer = next(iter(stored.traces[0]))
    at.selectbox(key="compare_layer").set_value(layer).run()
    assert chart(at, "compare_alpha")["data"][1]["y"] == [step[layer]["alpha"] for step in stored.traces]


def test_only_differences_leave_out_created_but_keep_accuracies(dashboard, known) -> None:
    store = dashboard.store()
    same = store.save_run(run_with_pictures(n_way=2, k_shot=1, checkpoint_name="ck-a"),
                          [adaptation("sgd", accuracy=0.5), adaptation("alfa", accuracy=0.75)], total_seconds=9.0)
    at = dashboard.app(RUNS).run()
    select(at, [same, known["a"]])  # the same settings and results, made at different times
    differences = frame(at, "setting")
    assert list(differences.columns) == ["setting", f"run #{same}", f"run #{known['a']}"]
    settings = list(differences["setting"])
    assert "created" not in settings and "total seconds" not in settings and "way" not in settings
    assert "accuracy: SGD (3 steps)" in settings and "accuracy: ALFA (3 steps)" in settings
    at.toggle(key="only_differences").set_value(False).run()
    everything = list(frame(at, "setting")["setting"])
    assert {"created", "total seconds", "way", "device"} <= set(everything)


def test_selected_runs_are_compared_and_exported(dashboard, seeded) -> None:
    first, second, _failed = seeded
    at = dashboard.app(RUNS).run()
    select(at, [second, first])
    assert_clean(at)
    assert "2 selected run(s)" in texts(at.subheader)
    differences = frame(at, "setting")
    assert list(differences.columns[1:]) == [f"run #{second}", f"run #{first}"]
    assert "way" in list(differences["setting"]) and "device" not in list(differences["setting"])
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Export runs (JSON)", "Export runs with traces (CSV)", "Export predictions (CSV)"]
    exported = json.loads(dashboard.store().export_runs([first, second], "json"))
    assert len(exported) == 2


def test_deleting_needs_a_confirmation(dashboard, seeded) -> None:
    first, second, failed = seeded
    at = dashboard.app(RUNS).run()
    select(at, [failed, second])
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
    assert table_ids(at) == [first] and "select" not in at.query_params and not at.subheader


def test_a_second_checkpoint_appears_in_the_filters(dashboard, seeded) -> None:
    other = save_tiny_checkpoint(dashboard.checkpoints / "other.safetensors", name="other-ckpt")
    spec = ImageSpec.from_dict(TINY_IMAGE)
    episode, items = episode_from_uploads(upload_classes(2), upload_queries(2), spec)
    run_rules(store=dashboard.store(), checkpoint_path=other, rules=["sgd"], episode=episode, items=items, steps=1,
              device="cpu", source="upload", dataset="upload", split=None, seed=None)
    at = dashboard.app(RUNS).run()
    assert at.multiselect(key="checkpoints").options == ["other-ckpt", "tiny-alfa"]
    at.multiselect(key="checkpoints").set_value(["other-ckpt"]).run()
    assert len(table_ids(at)) == 1


# --------------------------------------------------------------------------------------------- one run


def test_a_run_opens_from_the_query_parameter(dashboard, seeded) -> None:
    first, _second, failed = seeded
    at = dashboard.app(RUNS, run=str(first)).run()
    assert_clean(at)
    assert f"Run #{first}" in texts(at.subheader)
    assert [m.label for m in at.metric] == ["ALFA accuracy", "SGD (MAML) accuracy"]
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


def test_a_rerun_puts_the_user_on_the_new_run(dashboard, seeded) -> None:
    first = seeded[0]
    at = dashboard.app(RUNS, run=str(first)).run()
    at.button(key=f"rerun_{first}").click().run()
    assert_clean(at)
    new_id = max(s.id for s in dashboard.store().list_runs())
    assert new_id not in seeded
    assert url_values(at, "run") == [str(new_id)]
    assert f"Run #{new_id}" in texts(at.subheader)
    # The success line comes first on the page, above the run.
    assert texts(at.success)[0] == f"Re-run of run #{first}: this is the new run #{new_id}."
    rerun = dashboard.store().get_run(new_id)
    assert rerun.note == f"re-run of run #{first}" and [a.rule for a in rerun.adaptations] == ["alfa", "sgd"]
    # The progress was shown while it ran; the new page has no leftover status.
    assert not [e for e in at.get("expandable") if "Re-running" in str(getattr(e.proto, "label", ""))]


def test_a_failed_rerun_opens_the_failed_run_with_the_error_on_top(dashboard, seeded) -> None:
    failed = seeded[2]
    at = dashboard.app(RUNS, run=str(failed)).run()
    at.button(key=f"rerun_{failed}").click().run()
    assert_clean(at)
    new_id = max(s.id for s in dashboard.store().list_runs())
    assert url_values(at, "run") == [str(new_id)] and new_id != failed
    assert texts(at.error)[0].startswith(f"The re-run of run #{failed} failed and was stored as run #{new_id}: Meta-SGD")


@pytest.mark.slow
def test_a_thousand_runs_stay_usable(dashboard) -> None:
    store = dashboard.store()
    for i in range(1000):
        store.save_run(run_input(n_way=2 + i % 4), [adaptation("sgd", accuracy=(i % 10) / 10)], total_seconds=1.0)
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    assert len(table(at).value) == 1000
    at.session_state[table(at).key] = {"selection": {"rows": list(range(1000)), "columns": [], "cells": []}}
    at.run()
    assert_clean(at)
    assert "1000 selected run(s)" in texts(at.subheader)
    # Curves and settings are drawn for a readable number of runs; the groups count every selected run.
    assert len(chart(at, "compare_loss")["data"]) == 20
    assert any("first 20 selected runs; the groups use all 1000" in c for c in texts(at.caption))
    at.multiselect(key="group_by").set_value(["way"]).run()
    assert list(frame(at, "± 95% CI")["n"]) == [250] * 4


def _block_labels(at) -> list[str]:
    """Labels of every popover/expander block on the page."""
    found = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        fields = {f.name for f in proto.DESCRIPTOR.fields} if proto is not None else set()
        for kind in ("popover", "expandable"):
            if kind in fields and proto.HasField(kind) and proto.__getattribute__(kind).label:
                found.append(proto.__getattribute__(kind).label)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found
