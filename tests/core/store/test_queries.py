"""Listing with filters, distinct values, deleting and exporting runs."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from core.store import PREDICTION_CSV_COLUMNS, TRACE_CSV_COLUMNS, Store, run_detail_to_dict
from core.store.models import RunRow

from .builders import LAYERS, adaptation, run_input
from .helpers import row_counts

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def runs(store: Store) -> dict[str, int]:
    """Four runs a day apart, oldest first: different sources, datasets, ways, shots, checkpoints, rules."""
    ids = {
        "old": store.save_run(
            run_input(dataset="omniglot", n_way=2, k_shot=1, checkpoint_name="ck-a"),
            [adaptation("sgd", accuracy=0.25)], total_seconds=1.0,
        ),
        "alfa": store.save_run(
            run_input(dataset="mini", n_way=5, k_shot=5, checkpoint_name="ck-b"),
            [adaptation("sgd", accuracy=0.5), adaptation("alfa", accuracy=0.9)], total_seconds=2.0,
        ),
        "upload": store.save_run(
            run_input(source="upload", dataset=None, n_way=3, k_shot=2, checkpoint_name="ck-a"),
            [adaptation("alfa", accuracy=None)], total_seconds=3.0,
        ),
        "failed": store.save_failed_run(
            run_input(source="folder", dataset="pets", n_way=2, k_shot=1, checkpoint_name="ck-b"), "boom"
        ),
    }
    with store.engine.begin() as connection:
        for day, run_id in enumerate(ids.values()):
            connection.execute(update(RunRow).where(RunRow.id == run_id).values(created_at=T0 + timedelta(days=day)))
    return ids


def listed(store: Store, **filters) -> list[int]:
    return [summary.id for summary in store.list_runs(**filters)]


def test_runs_are_listed_newest_first(store: Store, runs: dict[str, int]) -> None:
    assert listed(store) == [runs["failed"], runs["upload"], runs["alfa"], runs["old"]]
    summary = store.list_runs(limit=1)[0]
    assert (summary.id, summary.status, summary.error, summary.rules) == (runs["failed"], "failed", "boom", [])
    assert summary.created_at == T0 + timedelta(days=3)
    second = store.list_runs()[2]
    assert (second.rules, second.accuracies, second.total_seconds) == (["sgd", "alfa"], {"sgd": 0.5, "alfa": 0.9}, 2.0)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"since": T0 + timedelta(days=1)}, ["failed", "upload", "alfa"]),
        ({"until": T0 + timedelta(days=1)}, ["alfa", "old"]),
        ({"since": (T0 + timedelta(days=1)).replace(tzinfo=None), "until": T0 + timedelta(days=2)}, ["upload", "alfa"]),
        ({"source": "upload"}, ["upload"]),
        ({"source": ["benchmark", "folder"]}, ["failed", "alfa", "old"]),
        ({"dataset": "mini"}, ["alfa"]),
        ({"n_way": 2}, ["failed", "old"]),
        ({"k_shot": 5}, ["alfa"]),
        ({"k_shot": [1, 2]}, ["failed", "upload", "old"]),
        ({"checkpoint_name": "ck-a"}, ["upload", "old"]),
        ({"rule": "alfa"}, ["upload", "alfa"]),
        ({"rule": "sgd"}, ["alfa", "old"]),
        ({"min_accuracy": 0.5}, ["alfa"]),
        ({"min_accuracy": 0.25}, ["alfa", "old"]),
        ({"rule": "sgd", "min_accuracy": 0.6}, []),  # the 0.9 belongs to alfa, not sgd
        ({"status": "failed"}, ["failed"]),
        ({"status": "succeeded", "checkpoint_name": "ck-b"}, ["alfa"]),
        ({"source": []}, []),
        ({"limit": 2}, ["failed", "upload"]),
    ],
)
def test_each_filter(store: Store, runs: dict[str, int], filters: dict, expected: list[str]) -> None:
    assert listed(store, **filters) == [runs[name] for name in expected]


def test_distinct_values_for_filter_widgets(store: Store, runs: dict[str, int]) -> None:
    assert store.distinct_values("dataset") == ["mini", "omniglot", "pets"]
    assert store.distinct_values("checkpoint_name") == ["ck-a", "ck-b"]
    assert store.distinct_values("rule") == ["alfa", "sgd"]
    assert store.distinct_values("source") == ["benchmark", "folder", "upload"]
    assert store.distinct_values("n_way") == [2, 3, 5]
    with pytest.raises(ValueError, match="unknown column 'bytes'"):
        store.distinct_values("bytes")


def test_delete_cascades_and_removes_only_orphan_images(store: Store) -> None:
    shared = store.save_run(run_input(images=("a", "b", "q1", "q2")), [adaptation()], total_seconds=None)
    kept = store.save_run(run_input(images=("a", "x", "y", "z")), [adaptation(), adaptation("alfa")], None)
    before = row_counts(store)
    shared_items = store.get_run(shared).items
    only_first = [item.image_sha256 for item in shared_items if item.source_name in ("b.png", "q1.png", "q2.png")]
    common = shared_items[0].image_sha256

    assert store.delete_runs([shared, 12345]) == 1

    after = row_counts(store)
    assert after["runs"] == 1 and after["episode_items"] == 5 and after["adaptations"] == 2
    assert after["step_traces"] == before["step_traces"] * 2 // 3
    assert after["predictions"] == before["predictions"] * 2 // 3
    assert after["images"] == before["images"] - 3
    for sha256 in only_first:
        with pytest.raises(KeyError):
            store.get_image(sha256)
    assert store.get_image(common)[0] == run_input().items[0].image.data  # still used by the other run
    assert store.get_run(kept).items[0].image_sha256 == common
    assert store.delete_runs([]) == 0


def test_json_export_round_trips(store: Store) -> None:
    adaptations = [adaptation("sgd"), adaptation("alfa", offset=0.5)]
    first = store.save_run(run_input(), adaptations, total_seconds=1.5)
    second = store.save_failed_run(run_input(), "out of memory")

    exported = json.loads(store.export_runs([second, first], "json"))

    assert exported == [run_detail_to_dict(store.get_run(second)), run_detail_to_dict(store.get_run(first))]
    assert [run["id"] for run in exported] == [second, first]
    assert [a["traces"] for a in exported[1]["adaptations"]] == [a.traces for a in adaptations]
    assert [a["probabilities"] for a in exported[1]["adaptations"]] == [a.probabilities for a in adaptations]
    item = exported[1]["items"][0]
    assert set(item) == {"role", "position", "label", "image_sha256", "source_name", "mime"}  # no image bytes
    assert item["source_name"] == "a.png" and len(item["image_sha256"]) == 64
    assert datetime.fromisoformat(exported[1]["created_at"]) == store.get_run(first).created_at
    with pytest.raises(KeyError, match="no run with id 999"):
        store.export_runs([first, 999], "json")
    with pytest.raises(ValueError, match="unknown export format"):
        store.export_runs([first], "xml")


def test_csv_export_has_one_row_per_run_rule_step_and_layer(store: Store) -> None:
    first = store.save_run(run_input(), [adaptation("sgd", steps=3), adaptation("alfa", steps=2)], None)
    failed = store.save_failed_run(run_input(), "boom")

    rows = list(csv.DictReader(io.StringIO(store.export_runs([first, failed], "csv").decode())))

    # Per adaptation: steps x layers alpha/beta rows plus steps + 1 step-level rows; the failed run: one row.
    assert len(rows) == (3 * len(LAYERS) + 4) + (2 * len(LAYERS) + 3) + 1
    assert list(rows[0]) == list(TRACE_CSV_COLUMNS)
    given = adaptation("sgd", steps=3)
    step_one = [row for row in rows if row["rule"] == "sgd" and row["step"] == "1"]
    assert [row["layer"] for row in step_one] == ["", *LAYERS]
    assert float(step_one[0]["support_loss"]) == given.support_loss[1]
    assert float(step_one[1]["alpha"]) == given.traces[1][LAYERS[0]]["alpha"]
    assert step_one[1]["support_loss"] == "" and step_one[0]["alpha"] == ""
    assert rows[-1]["run_id"] == str(failed) and rows[-1]["status"] == "failed" and rows[-1]["rule"] == ""


def test_predictions_csv_has_one_row_per_prediction(store: Store) -> None:
    run_id = store.save_run(run_input(), [adaptation("sgd"), adaptation("alfa")], None)

    rows = list(csv.DictReader(io.StringIO(store.export_predictions_csv([run_id]).decode())))

    assert list(rows[0]) == list(PREDICTION_CSV_COLUMNS)
    assert len(rows) == 2 * 3
    assert [(row["source_name"], row["predicted_class"], row["truth_class"], row["correct"]) for row in rows[:3]] == [
        ("q1.png", "cat", "cat", "1"), ("q2.png", "dog", "", ""), ("copy-of-first.png", "cat", "dog", "0"),
    ]
    assert json.loads(rows[0]["probabilities"]) == adaptation().probabilities[0]
