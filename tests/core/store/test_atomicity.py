"""A run is saved whole or not at all; a failed run can always be recorded afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.store import Store

from .builders import adaptation, run_input
from .helpers import row_counts


def test_a_database_error_half_way_writes_nothing(store: Store) -> None:
    broken = adaptation("alfa")
    broken.seconds = None  # violates NOT NULL only when the adaptation row reaches the database
    with pytest.raises(IntegrityError):
        store.save_run(run_input(), [adaptation("sgd"), broken], total_seconds=1.0)
    assert set(row_counts(store).values()) == {0}


def test_an_error_after_the_adaptations_were_added_writes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Store._add_adaptations

    def add_then_fail(self, session, run_row, adaptations, query_positions):
        original(self, session, run_row, adaptations, query_positions)
        session.flush()  # the rows really are in the database's transaction now
        assert session.execute(text("SELECT COUNT(*) FROM step_traces")).scalar_one() > 0
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Store, "_add_adaptations", add_then_fail)
    run, done = run_input(), adaptation("sgd")
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.save_run(run, [done, adaptation("alfa")], total_seconds=2.0)
    assert set(row_counts(store).values()) == {0}
    monkeypatch.undo()

    run_id = store.save_failed_run(run, "RuntimeError: disk on fire", adaptations_done=[done])

    detail = store.get_run(run_id)
    assert detail.status == "failed" and detail.error == "RuntimeError: disk on fire"
    assert len(detail.items) == len(run.items)
    assert store.get_image(detail.items[1].image_sha256)[0] == run.items[1].image.data
    assert [a.rule for a in detail.adaptations] == ["sgd"]
    assert detail.adaptations[0].traces == done.traces
    assert detail.total_seconds is None
    assert [summary.id for summary in store.list_runs(status="failed")] == [run_id]


def test_a_failed_run_needs_no_adaptation(store: Store) -> None:
    run_id = store.save_failed_run(run_input(), "checkpoint does not load", total_seconds=0.25)
    detail = store.get_run(run_id)
    assert (detail.status, detail.error, detail.adaptations, detail.rules) == (
        "failed", "checkpoint does not load", [], []
    )
    assert detail.total_seconds == 0.25
    assert row_counts(store)["episode_items"] == 5
