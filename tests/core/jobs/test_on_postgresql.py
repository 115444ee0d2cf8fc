"""The job lifecycle of ``test_jobs.py`` with the run store on a real PostgreSQL server: the scaled set-up of the
README (PostgreSQL for the store, Redis for the queue, ``python -m core worker`` processes).

The bodies are ``test_jobs.py``'s, imported below, not copies; so are ``test_redis_queue.py``'s fixtures (the queue in
a throw-away Redis server, workers started by hand). Only the run store changes: ``job_database_url`` is a fresh
database on the session's PostgreSQL server. The queue is Redis, as in the README's scaled set-up (with another
database than a SQLite file, the embedded queue is a file under ``data/`` named by the store URL's hash,
``core.settings.job_queue_file``, which would put files in the checkout). Their SQLite runs are ``test_jobs.py`` and
``test_redis_queue.py``. A study in the run store's PostgreSQL database is ``tests/core/test_tune.py``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import fresh_database
from tests.core.jobs import test_jobs
from tests.core.jobs.test_redis_queue import job_env, redis_server, worker, worker_processes  # noqa: F401  # fixtures

test_an_evaluate_job_gives_the_command_line_s_result_and_stores_it = (
    test_jobs.test_an_evaluate_job_gives_the_command_line_s_result_and_stores_it
)
test_a_running_job_is_cancelled_and_stores_no_evaluation = (
    test_jobs.test_a_running_job_is_cancelled_and_stores_no_evaluation
)
test_a_queued_job_is_cancelled_before_any_worker_runs_it = (
    test_jobs.test_a_queued_job_is_cancelled_before_any_worker_runs_it
)
test_a_worker_killed_with_sigkill_leaves_its_job_failed_and_the_store_consistent = (
    test_jobs.test_a_worker_killed_with_sigkill_leaves_its_job_failed_and_the_store_consistent
)


@pytest.fixture
def job_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server for the run store of each test here."""
    with fresh_database("postgresql", request, tmp_path / "unused.sqlite3") as url:
        yield url
