"""A saved run reads back exactly as it was saved."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

import pytest

from core.store import AdaptationInput, EpisodeItem, RunInput, Store

from .builders import CLASS_NAMES, LAYERS, adaptation, run_input
from .helpers import row_counts


def expected_items(run: RunInput) -> list[EpisodeItem]:
    return [
        EpisodeItem(
            role=item.role,
            position=item.position,
            label=item.label,
            image_sha256=hashlib.sha256(item.image.data).hexdigest(),
            source_name=item.image.source_name,
            mime=item.image.mime,
        )
        for item in run.items
    ]


def assert_adaptation_equal(stored, given: AdaptationInput) -> None:
    for name in ("rule", "rule_label", "steps", "head_init", "accuracy", "query_loss", "seconds", "predictions",
                 "probabilities", "truths", "support_loss", "support_accuracy", "traces"):
        assert getattr(stored, name) == getattr(given, name), name
    assert [list(layers) for layers in stored.traces] == [list(LAYERS)] * given.steps  # layer order kept
    assert stored.confidences == [row[p] for row, p in zip(given.probabilities, given.predictions)]


def test_round_trip_is_exact(any_store: Store) -> None:
    run = run_input(note="first try")
    adaptations = [adaptation("sgd"), adaptation("alfa", offset=0.25, accuracy=1 / 3)]
    before = datetime.now(UTC)
    run_id = any_store.save_run(run, adaptations, total_seconds=1.0 / 7)

    detail = any_store.get_run(run_id)

    assert detail.id == run_id
    assert detail.created_at.tzinfo is not None and before - timedelta(seconds=1) <= detail.created_at
    assert detail.created_at <= datetime.now(UTC)
    for name in ("source", "dataset", "split", "n_way", "k_shot", "n_query", "seed", "checkpoint_name", "device",
                 "steps", "class_names", "config", "note"):
        assert getattr(detail, name) == getattr(run, name), name
    assert detail.status == "succeeded" and detail.error is None
    assert detail.total_seconds == 1.0 / 7
    assert detail.rules == ["sgd", "alfa"]
    assert detail.accuracies == {"sgd": 0.5, "alfa": 1 / 3}
    assert detail.items == expected_items(run)
    assert len(detail.adaptations) == 2
    for stored, given in zip(detail.adaptations, adaptations):
        assert_adaptation_equal(stored, given)
    assert detail.adaptations[0].truths == [0, None, 1]  # labelled and unlabelled queries
    checkpoint = detail.checkpoint
    assert checkpoint is not None
    for name in ("name", "path", "file_sha256", "backbone", "rule", "image_spec", "metadata"):
        assert getattr(checkpoint, name) == getattr(run.checkpoint, name), name


def test_an_image_used_twice_is_stored_once(store: Store) -> None:
    run = run_input()
    store.save_run(run, [adaptation()], total_seconds=None)
    assert row_counts(store)["images"] == 4  # five items, the last query reuses the first support image
    detail = store.get_run(store.save_run(run_input(), [], total_seconds=None))
    assert row_counts(store)["images"] == 4  # a second run with the same images adds none
    first, last = detail.items[0], detail.items[-1]
    assert first.image_sha256 == last.image_sha256
    assert (first.source_name, last.source_name) == ("a.png", "copy-of-first.png")
    assert store.get_image(first.image_sha256) == (run.items[0].image.data, "image/png")


def test_checkpoint_row_is_shared_and_refreshed(store: Store) -> None:
    first = run_input()
    store.save_run(first, [], total_seconds=None)
    second = run_input()
    second.checkpoint.path = "moved/elsewhere.safetensors"  # same file (same hash), new place
    run_id = store.save_run(second, [], total_seconds=None)
    assert row_counts(store)["checkpoints"] == 1
    assert store.get_run(run_id).checkpoint.path == "moved/elsewhere.safetensors"


def test_run_without_checkpoint_and_without_labels(store: Store) -> None:
    run = run_input(source="upload", dataset=None)
    run.checkpoint = None
    unlabelled = adaptation(accuracy=None)
    unlabelled.truths = None
    unlabelled.query_loss = None
    run.items = [item if item.role == "support" else type(item)("query", item.position, None, item.image)
                 for item in run.items]
    detail = store.get_run(store.save_run(run, [unlabelled], total_seconds=None))
    assert detail.checkpoint is None and detail.dataset is None and detail.split is None
    assert detail.adaptations[0].truths is None
    assert detail.adaptations[0].accuracy is None and detail.adaptations[0].query_loss is None
    assert [item.label for item in detail.items if item.role == "query"] == [None, None, None]


def test_zero_steps_keeps_the_single_support_loss(store: Store) -> None:
    zero = adaptation(steps=0)
    detail = store.get_run(store.save_run(run_input(), [zero], total_seconds=0.5))
    stored = detail.adaptations[0]
    assert stored.traces == [] and stored.support_loss == zero.support_loss and len(stored.support_loss) == 1


def test_a_diverged_adaptation_is_still_recorded(store: Store) -> None:
    # SQLite stores NaN as NULL: list values come back NaN, optional scalars come back None (on PostgreSQL too).
    diverged = adaptation()
    diverged.accuracy = math.nan
    diverged.query_loss = math.nan
    diverged.support_loss[-1] = math.nan
    diverged.traces[1]["layer1.bias"]["alpha"] = math.nan
    diverged.probabilities[0] = [math.nan, math.nan]
    stored = store.get_run(store.save_run(run_input(), [diverged], total_seconds=None)).adaptations[0]
    assert stored.query_loss is None and stored.accuracy is None
    assert store.list_runs(min_accuracy=0.0) == []  # a NaN kept as such would pass on PostgreSQL (NaN > any number)
    assert math.isnan(stored.support_loss[-1]) and stored.support_loss[:-1] == diverged.support_loss[:-1]
    assert math.isnan(stored.traces[1]["layer1.bias"]["alpha"])
    assert math.isnan(stored.confidences[0]) and all(math.isnan(p) for p in stored.probabilities[0])


def test_missing_run_and_image_raise_key_error(store: Store) -> None:
    with pytest.raises(KeyError, match="no run with id 42"):
        store.get_run(42)
    with pytest.raises(KeyError, match="no image with sha256"):
        store.get_image("0" * 64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda run, a: setattr(run, "source", "webcam"), "unknown run source"),
        (lambda run, a: setattr(run.items[0], "role", "train"), "unknown episode item role"),
        (lambda run, a: setattr(run.items[1], "position", 0), "two support items at position 0"),
        (lambda run, a: setattr(run.items[0], "label", None), "support item 0 has no label"),
        (lambda run, a: setattr(run.items[2], "label", len(CLASS_NAMES)), "has label 2"),
        (lambda run, a: a.predictions.pop(), "2 predictions for 3 query items"),
        (lambda run, a: a.predictions.__setitem__(0, 5), "predicts class 5 of 2"),
        (lambda run, a: a.support_accuracy.pop(), "support accuracies"),
        (lambda run, a: a.traces.pop(), "2 trace steps for 3 steps"),
        (lambda run, a: a.traces[0].__setitem__("", {"alpha": 1.0, "beta": 1.0}), "empty name"),
        (lambda run, a: a.traces[0]["layer1.bias"].pop("beta"), "exactly alpha and beta"),
    ],
)
def test_invalid_input_is_refused_before_writing(store: Store, change, message: str) -> None:
    run, bad = run_input(), adaptation()
    change(run, bad)
    with pytest.raises(ValueError, match=message):
        store.save_run(run, [bad], total_seconds=None)
    assert set(row_counts(store).values()) == {0}


def test_from_result_reads_an_adaptation_result_shape() -> None:
    class Result:  # the attributes of core.adapt.AdaptationResult, without importing torch
        rule, steps, head_init = "alfa", 1, "learned"
        predictions, probabilities, query_labels = [1], [[0.25, 0.75]], [1]
        accuracy, query_loss, seconds = 1.0, 0.3, 0.01
        support_loss, support_accuracy = [0.9, 0.4], [0.5, 1.0]
        traces = [{"head.weight": {"alpha": 0.1, "beta": 0.99}}]

    converted = AdaptationInput.from_result(Result(), rule_label="ALFA")
    assert converted.rule_label == "ALFA" and converted.truths == [1]
    assert converted.traces == Result.traces and converted.traces is not Result.traces
