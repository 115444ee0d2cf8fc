"""The comparison logic of the Runs page: history rows, settings table, grouped accuracies, figures."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app import compare
from core.store import AdaptationDetail, RunDetail, RunSummary

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def summary(run_id: int, accuracies: dict[str, float | None], *, way: int = 5, shot: int = 1, steps: int = 3,
            checkpoint: str = "ck", name: str | None = None, tags: list[str] | None = None) -> RunSummary:
    return RunSummary(
        id=run_id, created_at=T0, source="benchmark", dataset="omniglot", split="test", n_way=way, k_shot=shot,
        n_query=1, checkpoint_name=checkpoint, status="succeeded", rules=list(accuracies), accuracies=accuracies,
        total_seconds=1.5, device="cpu", error=None, note=None, steps=steps, name=name, tags=tags or [],
    )


def adaptation(rule: str, accuracy: float | None, losses: list[float], traces: list[dict]) -> AdaptationDetail:
    return AdaptationDetail(
        rule=rule, rule_label=rule.upper(), steps=len(traces), head_init="zero", accuracy=accuracy, query_loss=None,
        seconds=0.1, predictions=[], probabilities=[], truths=None, confidences=[], support_loss=losses,
        support_accuracy=[0.5] * len(losses), traces=traces,
    )


def detail(run_id: int, adaptations: list[AdaptationDetail], **changes) -> RunDetail:
    base = summary(run_id, {a.rule: a.accuracy for a in adaptations})
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    run = RunDetail(**fields, seed=1, class_names=["a", "b"], config={"queries": 1}, checkpoint=None,
                    adaptations=adaptations)
    return replace(run, **changes)


# ------------------------------------------------------------------------------------------ grouping


def test_the_interval_of_known_accuracies() -> None:
    points = compare.accuracy_points([summary(i, {"alfa": a}) for i, a in enumerate([0.5, 0.7, 0.9])])
    [group] = compare.group_accuracies(points, [])
    # mean 0.7; population std sqrt(0.08 / 3) = 0.163299...; 1.96 * 0.163299 / sqrt(3) = 0.184790...
    assert (group.key, group.n) == ((), 3)
    assert group.mean == pytest.approx(0.7)
    assert group.ci95 == pytest.approx(0.18479, abs=1e-5)


def test_a_single_value_has_no_interval() -> None:
    [group] = compare.group_accuracies(compare.accuracy_points([summary(1, {"sgd": 0.4})]), ["rule"])
    assert (group.key, group.n, group.mean, group.ci95) == (("sgd",), 1, 0.4, None)


def test_grouping_known_runs_by_way_and_rule() -> None:
    runs = [
        summary(1, {"alfa": 1.0, "sgd": 0.5}, way=5),
        summary(2, {"alfa": 0.5, "sgd": None}, way=5),  # sgd had no labelled queries: left out
        summary(3, {"alfa": 0.25}, way=20),
    ]
    points = compare.accuracy_points(runs)
    assert [(p.run_id, p.rule, p.accuracy) for p in points] == [(1, "alfa", 1.0), (1, "sgd", 0.5), (2, "alfa", 0.5),
                                                                (3, "alfa", 0.25)]
    groups = compare.group_accuracies(points, ["way", "rule"])
    assert [(g.key, g.n, g.mean) for g in groups] == [((5, "alfa"), 2, 0.75), ((5, "sgd"), 1, 0.5),
                                                      ((20, "alfa"), 1, 0.25)]
    assert groups[0].ci95 == pytest.approx(1.96 * 0.25 / math.sqrt(2))
    table = compare.group_table(groups, ["way", "rule"])
    assert list(table.columns) == ["way", "rule", "n", "mean accuracy", "± 95% CI"]
    assert list(table["rule"]) == ["ALFA", "SGD (MAML)", "ALFA"]
    assert list(table["mean accuracy"]) == [75.0, 50.0, 25.0]
    assert math.isnan(table["± 95% CI"][1])


def test_grouping_by_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot group by seed; choose from checkpoint, way, shot, steps, rule"):
        compare.group_accuracies([], ["seed"])


def test_an_empty_group_table_keeps_its_columns() -> None:
    assert list(compare.group_table([], ["shot"]).columns) == ["shot", "n", "mean accuracy", "± 95% CI"]


# -------------------------------------------------------------------------------------- history table


def test_the_history_table_has_a_numeric_column_per_rule_and_a_link() -> None:
    runs = [summary(7, {"sgd": 0.5, "alfa": 0.25}, name="base", tags=["v1"]), summary(8, {"alfa": None})]
    table = compare.history_table(runs, lambda run_id: f"?run={run_id}")
    assert list(table["run"]) == ["?run=7", "?run=8"]
    assert [c for c in table.columns if c.startswith("accuracy")] == ["accuracy: ALFA", "accuracy: SGD (MAML)"]
    assert table["accuracy: SGD (MAML)"][0] == 50.0 and math.isnan(table["accuracy: SGD (MAML)"][1])
    assert table["accuracy: ALFA"][0] == 25.0 and math.isnan(table["accuracy: ALFA"][1])
    assert (table["name"][0], list(table["tags"][0]), table["steps"][0]) == ("base", ["v1"], 3)


def test_a_run_title_names_the_run() -> None:
    assert compare.run_title(summary(3, {}, name="baseline")).startswith("#3 · baseline · ")
    assert compare.run_title(summary(3, {})).startswith("#3 · 2026-03-01")  # local time; the date is safe at noon UTC


# -------------------------------------------------------------------------------------- settings table


def test_only_differences_hide_always_different_fields_and_keep_results() -> None:
    first = detail(1, [adaptation("sgd", 0.5, [1.0, 0.5], [{}])])
    second = detail(2, [adaptation("sgd", 0.5, [1.0, 0.5], [{}])], created_at=T0.replace(hour=13),
                    total_seconds=9.0, n_way=20)
    rows = compare.comparison_rows([first, second], only_differences=True)
    assert [row["setting"] for row in rows] == ["way", "accuracy: SGD", "final support loss: SGD"]
    assert rows[0] == {"setting": "way", "run #1": "5", "run #2": "20"}
    everything = [row["setting"] for row in compare.comparison_rows([first, second], only_differences=False)]
    assert {"created", "total seconds", "device", "name", "tags"} <= set(everything)


# --------------------------------------------------------------------------------------------- figures


def test_overlays_have_one_line_per_run_and_rule() -> None:
    traces = [{"a": {"alpha": 0.1, "beta": 1.0}, "b": {"alpha": 0.3, "beta": math.nan}},
              {"a": {"alpha": 0.2, "beta": 0.9}, "b": {"alpha": 0.4, "beta": 0.7}}]
    runs = [detail(1, [adaptation("sgd", 0.5, [1.0, 0.5, math.inf], traces)], name="base"),
            detail(2, [adaptation("alfa", 0.5, [2.0], [])])]
    loss = compare.curve_overlay(runs, "support_loss")
    assert [(t.name, list(t.y)) for t in loss.data] == [("#1 base · SGD", [1.0, 0.5, None]), ("#2 ALFA", [2.0])]
    assert compare.trace_layers(runs) == ["a", "b"]
    mean = compare.trace_overlay(runs, "alpha", compare.MEAN_OVER_LAYERS)
    assert [t.name for t in mean.data] == ["#1 base · SGD"]  # run 2 took no steps
    assert list(mean.data[0].y) == pytest.approx([0.2, 0.3])
    beta = compare.trace_overlay(runs, "beta", None)
    assert list(beta.data[0].y) == pytest.approx([1.0, 0.8])  # the NaN is left out of the mean
    assert list(compare.trace_overlay(runs, "beta", "b").data[0].y) == [None, 0.7]
    with pytest.raises(ValueError, match="which must be"):
        compare.trace_overlay(runs, "gamma", None)  # type: ignore[arg-type]


def test_parallel_coordinates_encode_categories_and_colour_by_accuracy() -> None:
    points = compare.accuracy_points([summary(1, {"sgd": 0.5, "alfa": 0.75}, checkpoint="b"),
                                      summary(2, {"alfa": 1.0}, way=20, checkpoint="a")])
    [lines] = compare.parallel_coordinates(points).data
    dimensions = {d.label: d for d in lines.dimensions}
    assert list(dimensions["way"].values) == [5, 5, 20]
    assert list(dimensions["checkpoint"].ticktext) == ["a", "b"] and list(dimensions["checkpoint"].values) == [1, 1, 0]
    assert list(dimensions["rule"].ticktext) == ["ALFA", "SGD (MAML)"] and list(dimensions["rule"].values) == [1, 0, 0]
    assert list(dimensions["accuracy (%)"].values) == [50.0, 75.0, 100.0] == list(lines.line.color)
