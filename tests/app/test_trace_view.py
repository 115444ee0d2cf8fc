"""The α/β view of a stored run (AppTest): rules chosen, lazy tabs, and the held-out spread on demand."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.data.images import ImageSpec
from core.data.uploads import episode_from_uploads
from core.runs import run_rules
from core.store import Store
from tests.app.builders import TINY_IMAGE, save_tiny_checkpoint, upload_classes, upload_queries
from tests.app.test_adapt_page import assert_clean, texts
from tests.core.test_rule_spread import EPISODE_DEPENDENT_ALFA, omniglot_tree

TIMEOUT = 180


def trace_view_script() -> None:
    import dataclasses
    import os

    from app.trace_view import render_traces
    from core.store import Store

    detail = Store(os.environ["FEWSHOT_DATABASE_URL"]).get_run(int(os.environ["TRACE_VIEW_RUN"]))
    if os.environ.get("TRACE_VIEW_FORGET_CHECKPOINT"):
        detail = dataclasses.replace(detail, checkpoint=None)
    render_traces(detail, "run")


@pytest.fixture
def stored_run(dashboard, monkeypatch) -> int:
    """A 3-way 2-shot upload run of an episode-dependent ALFA and of SGD, 3 steps."""
    checkpoint = save_tiny_checkpoint(dashboard.checkpoints / "alfa.safetensors", rule=EPISODE_DEPENDENT_ALFA)
    episode, items = episode_from_uploads(upload_classes(3, shots=2), upload_queries(3), ImageSpec.from_dict(TINY_IMAGE))
    run_id = run_rules(
        store=Store(dashboard.url), checkpoint_path=checkpoint, device="cpu", source="upload", dataset="upload",
        split=None, seed=None, rules=["alfa", "sgd"], episode=episode, items=items, steps=3,
    )
    monkeypatch.setenv("TRACE_VIEW_RUN", str(run_id))
    return run_id


def open_view() -> AppTest:
    return AppTest.from_function(trace_view_script, default_timeout=TIMEOUT).run()


def charts(at) -> list:
    return at.get("plotly_chart")


def test_opening_shows_the_heatmap_of_each_rule_and_sgd_in_one_line(stored_run) -> None:
    at = open_view()
    assert_clean(at)
    assert [tab.label for tab in at.tabs] == ["Heatmap", "Lines", "Rules compared", "Against held-out episodes"]
    assert at.multiselect(key="run_trace_rules").value == [0, 1]  # every rule by default
    assert len(charts(at)) == 1  # ALFA's heatmap; SGD has nothing to map, and hidden tabs draw nothing
    assert "SGD (MAML): α = 0.4 and β = 1 at every layer and step: nothing to map." in texts(at.caption)
    assert any("negative α moves the weights up the gradient" in c for c in texts(at.caption))
    at.session_state["run_trace_tab"] = "Lines"
    at.run()
    assert_clean(at)
    assert len(charts(at)) == 2
    at.session_state["run_trace_tab"] = "Rules compared"
    at.run()
    assert len(charts(at)) == 1
    at.multiselect(key="run_trace_rules").set_value([]).run()
    assert_clean(at)
    assert "Choose at least one rule to see its α and β." in texts(at.info) and not charts(at)


def test_the_held_out_spread_is_off_until_asked_for_and_says_when_data_is_missing(stored_run, monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_OMNIGLOT_ROOT", str(tmp_path / "no-omniglot-here"))
    at = open_view()
    at.session_state["run_trace_tab"] = "Against held-out episodes"
    at.run()
    assert_clean(at)
    assert at.toggle(key="run_spread_on").value is False and not charts(at)
    at.toggle(key="run_spread_on").set_value(True).run()
    assert_clean(at)
    missing = tmp_path / "no-omniglot-here"
    said = f"No held-out episodes to compare with: the held-out Omniglot alphabets (Tagalog) are not under {missing}"
    assert texts(at.info) == [f"{said} on this machine."]
    assert not charts(at)


def test_the_held_out_spread_against_this_episode(stored_run, monkeypatch, tmp_path) -> None:
    root = omniglot_tree(tmp_path / "omniglot", characters=4, drawings=8)
    monkeypatch.setenv("FEWSHOT_OMNIGLOT_ROOT", str(root))
    at = open_view()
    at.session_state["run_trace_tab"] = "Against held-out episodes"
    at.run()
    at.toggle(key="run_spread_on").set_value(True).run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    assert at.selectbox(key="run_spread_rule").value == 0  # ALFA first
    layer = at.selectbox(key="run_spread_layer")
    assert len(layer.options) == 10 and any(option.startswith("head weight — ") for option in layer.options)
    assert len(charts(at)) == 1
    caption = next(c for c in texts(at.caption) if c.startswith("Held-out episodes:"))
    assert "omniglot: Tagalog, 3-way 2-shot" in caption and "the episode explains" in caption
    at.selectbox(key="run_spread_rule").set_value(1).run()  # SGD: every episode the same
    assert_clean(at)
    caption = next(c for c in texts(at.caption) if c.startswith("Held-out episodes:"))
    assert "α is the same in every episode and step" in caption


def test_a_run_whose_checkpoint_row_is_gone_falls_back_to_raw_names(stored_run, monkeypatch) -> None:
    monkeypatch.setenv("TRACE_VIEW_FORGET_CHECKPOINT", "1")
    at = open_view()
    assert_clean(at)
    assert "Layers go by their tensor names: this run's checkpoint is no longer in the store." in texts(at.caption)
    at.session_state["run_trace_tab"] = "Against held-out episodes"
    at.run()
    assert any("no longer in the store" in i for i in texts(at.info))
