"""The load test of ``bench/store_load.py``, small: writer processes save runs while readers browse, then every run is
checked. On SQLite (WAL) and on a real PostgreSQL server (``database_url``)."""

from __future__ import annotations

import pytest

from bench import store_load

WRITERS, READERS, SECONDS = 4, 2, 3.0


@pytest.mark.slow
def test_concurrent_writers_store_exactly_the_runs_they_committed_while_readers_browse(database_url: str) -> None:
    figures = store_load.run_load(database_url, writers=WRITERS, readers=READERS, seconds=SECONDS)
    # Exactly the committed runs are stored, once each, under the ids their saves returned, each equal to its input,
    # and no page view failed.
    assert figures["problems"] == []
    assert figures["runs_stored"] == figures["runs_committed"] == sum(figures["runs_per_writer"]) >= 1
    assert (figures["read_errors"], figures["read_error_examples"]) == (0, [])
    assert figures["page_views_per_s"] > 0
    if database_url.startswith("postgresql"):
        # Writers only wait for each other on the same rows: none fails, none is starved.
        assert (figures["write_errors"], figures["write_error_examples"]) == (0, [])
        assert min(figures["runs_per_writer"]) >= 1
    else:
        # SQLite has one writer at a time; a writer that waits longer than the busy timeout (5 s) gets "database is
        # locked" (bench/results/store_load.json has how often, with 8 writers). Nothing else.
        locked = "OperationalError: (sqlite3.OperationalError) database is locked"
        assert set(figures["write_error_kinds"]) <= {locked}
        assert sum(figures["write_error_kinds"].values()) == figures["write_errors"]


def test_the_check_finds_a_lost_run_an_extra_run_and_a_changed_one(tmp_path) -> None:
    """The verification is not vacuous: it reports what the load test exists to catch."""
    url = f"sqlite:///{tmp_path / 'check.sqlite3'}"
    from core.store import Store

    with Store(url) as store:
        committed = {}
        for number in range(3):
            run, adaptations = store_load.build_run(0, number)
            committed[run.name] = store.save_run(run, adaptations, total_seconds=1.0)
        extra, adaptations = store_load.build_run(1, 0)
        store.save_run(extra, adaptations, total_seconds=1.0)  # stored, but no writer reported it
        changed, adaptations = store_load.build_run(0, 5)
        adaptations[0].traces[2]["block0.bias"]["alpha"] += 1.0
        committed[changed.name] = store.save_run(changed, adaptations, total_seconds=1.0)
    committed[store_load.run_name(0, 9)] = 999  # reported committed, never stored
    verification = store_load.verify(url, committed)
    assert (verification.runs_stored, verification.runs_committed) == (5, 5)
    assert verification.problems == [
        "1 committed runs missing, e.g. ['load-w0-r9']",
        "1 runs stored that no writer saw commit, e.g. ['load-w1-r0']",
        "load-w0-r5: adaptation sgd reads back different from what was saved",
    ]
