"""A run store and job queue of their own per test, a tiny sine checkpoint, and the embedded worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.jobs import JobRecord, embedded_worker_pid, ensure_worker, get_job
from core.jobs.queue import stop_spawned_workers
from tests.app.builders import save_sine_checkpoint
from tests.conftest import fresh_database

WAIT_S = 120  # the worker imports torch and the machine may be busy


@pytest.fixture
def job_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The run store of the job tests: a SQLite file, or with ``@pytest.mark.parametrize("job_database_url",
    ["postgresql"], indirect=True)`` (or overridden) a fresh database on the session's PostgreSQL server."""
    with fresh_database(getattr(request, "param", "sqlite"), request, tmp_path / "store.sqlite3") as url:
        yield url


@pytest.fixture
def job_env(tmp_path, monkeypatch, job_database_url: str) -> Path:
    monkeypatch.setenv("FEWSHOT_DATABASE_URL", job_database_url)
    monkeypatch.setenv("FEWSHOT_DEVICE", "cpu")
    monkeypatch.setenv("FEWSHOT_JOB_WORKERS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker inherits it
    monkeypatch.delenv("FEWSHOT_JOBS_REDIS_URL", raising=False)
    return tmp_path


@pytest.fixture
def sine_checkpoint(job_env) -> Path:
    return save_sine_checkpoint(job_env / "sine.safetensors")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def wait_until_finished(job_id: int, timeout: float = WAIT_S) -> JobRecord:
    wait_for(lambda: get_job(job_id).finished, f"job {job_id} to finish", timeout)
    return get_job(job_id)


def start_worker() -> int:
    """Start the embedded worker the way the dashboard does and return its pid once it holds the queue."""
    ensure_worker()
    wait_for(lambda: embedded_worker_pid() is not None, "the embedded worker to start")
    pid = embedded_worker_pid()
    assert pid is not None
    return pid


@pytest.fixture
def worker(job_env) -> Iterator[int]:
    yield start_worker()
    stop_spawned_workers()
