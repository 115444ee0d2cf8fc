"""The job lifecycle of ``test_jobs.py`` on a Redis queue (``RedisHuey``, ``$FEWSHOT_JOBS_REDIS_URL``), and what a
worker and a submit do when Redis does not answer.

With Redis the dashboard starts no worker (``core.jobs.ensure_worker`` does nothing): workers are started on their
machines with ``python -m core worker``. So here "the worker" of the shared test bodies is such a process, started
by :class:`WorkerProcesses`, which takes the place of the embedded worker's helpers that those bodies call
(``start_worker``, ``embedded_worker_pid``, ``stop_spawned_workers``). The bodies themselves are ``test_jobs.py``'s,
imported below, not copies: same submits, same comparisons with the command line, same cancel and kill -9.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import settings
from core.jobs import EvaluateJobArguments, get_job, list_jobs, submit_job
from core.jobs.queue import JobQueueUnreachable, check_queue_reachable
from tests.core.jobs import test_jobs
from tests.core.jobs.conftest import WAIT_S, wait_for, wait_until_finished
from tests.support.redis import RedisServer, running_redis, unavailable_reason

# The shared bodies, collected again here with this module's fixtures: the queue in Redis, workers started by hand.
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
test_two_jobs_at_once_do_not_interfere = test_jobs.test_two_jobs_at_once_do_not_interfere
test_a_train_job_trains_like_the_command_line = test_jobs.test_a_train_job_trains_like_the_command_line
test_a_tune_job_runs_the_study_in_the_run_store = test_jobs.test_a_tune_job_runs_the_study_in_the_run_store
test_a_cancelled_train_job_saves_its_state_and_a_resume_job_continues_it = (
    test_jobs.test_a_cancelled_train_job_saves_its_state_and_a_resume_job_continues_it
)

SERVING = "queue redis://"  # the worker's start line names its queue once it is about to serve it


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is: nothing listens there


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis queue tests: {reason}")
        pytest.skip(reason)
    with running_redis() as server:
        yield server


@pytest.fixture
def job_env(job_env: Path, redis_server: RedisServer, monkeypatch) -> Path:
    """The conftest's run store of its own, with the queue in this test's Redis server."""
    monkeypatch.setenv("FEWSHOT_JOBS_REDIS_URL", redis_server.url())
    return job_env


class WorkerProcesses:
    """``python -m core worker`` processes on the test's Redis queue, each logging to a file of its own."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._processes: list[subprocess.Popen[bytes]] = []
        self._started = 0

    def log(self, number: int) -> Path:
        """The output of the ``number``-th worker started (from 0)."""
        return self._folder / f"worker-{number}.log"

    def start(self) -> int:
        """Start one worker and return its pid once it serves the queue (its start line names the queue)."""
        log = self.log(self._started)
        self._started += 1
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "core", "worker"],
                cwd=settings.REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self._processes.append(process)
        deadline = time.monotonic() + WAIT_S
        while SERVING not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start ({process.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return process.pid  # `python -m core worker` hands over to `python -m core.jobs` in the same process

    def live_pid(self) -> int | None:
        """The pid of the newest worker while it runs (reaped once it died: its pid no longer exists)."""
        if self._processes and self._processes[-1].poll() is None:
            return self._processes[-1].pid
        return None

    def stop_all(self) -> None:
        """SIGTERM and reap every worker (a worker fails the jobs it still runs on its way out)."""
        while self._processes:
            process = self._processes.pop()
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(autouse=True)
def worker_processes(job_env: Path, monkeypatch) -> Iterator[WorkerProcesses]:
    """Workers started by hand, put where the shared test bodies start, find and stop the embedded one."""
    processes = WorkerProcesses(job_env)
    monkeypatch.setattr(test_jobs, "start_worker", processes.start)
    monkeypatch.setattr(test_jobs, "embedded_worker_pid", processes.live_pid)
    monkeypatch.setattr(test_jobs, "stop_spawned_workers", processes.stop_all)
    yield processes
    processes.stop_all()


@pytest.fixture
def worker(worker_processes: WorkerProcesses) -> int:
    return worker_processes.start()


def test_a_submitted_job_waits_in_redis_until_a_worker_takes_it(sine_checkpoint, job_env, redis_server):
    """The shared bodies above really run on Redis: with no worker yet, the job's task is in the server's list."""
    from core.jobs.queue import job_queue

    huey, _ = job_queue()
    queue_key = huey.storage.queue_key
    job_id = submit_job("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5), started_by="tester")
    assert redis_server.cli("LLEN", queue_key) == "1"
    assert huey.pending_count() == 1 and get_job(job_id).status == "queued"


@pytest.mark.slow
def test_a_worker_says_so_and_stops_when_redis_does_not_answer(job_env, monkeypatch):
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    monkeypatch.setenv("FEWSHOT_JOBS_REDIS_URL", url)
    with pytest.raises(JobQueueUnreachable, match=f"the job queue's Redis at {url} cannot be reached"):
        check_queue_reachable()
    worker = subprocess.run(
        [sys.executable, "-m", "core", "worker"], cwd=settings.REPO_ROOT, capture_output=True, text=True, timeout=WAIT_S
    )
    assert worker.returncode == 2
    assert f"error: the job queue's Redis at {url} cannot be reached: " in worker.stderr
    assert "Connection refused" in worker.stderr


@pytest.mark.slow
def test_a_running_worker_says_when_redis_goes_away_and_serves_again_when_it_is_back(
    sine_checkpoint, job_env, worker_processes, monkeypatch
):
    port = _closed_port()
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("FEWSHOT_JOBS_REDIS_URL", url)
    with running_redis(port=port):
        worker = worker_processes.start()
    log = worker_processes.log(0)
    unreachable = f"the job queue's Redis at {url} cannot be reached: Error 111 connecting to 127.0.0.1:{port}"
    wait_for(lambda: log.read_text().count(unreachable) >= 2, "the worker to say that Redis is gone, once a second")
    assert "Traceback" not in log.read_text()  # one line each time, not Huey's traceback
    assert worker_processes.live_pid() == worker  # it keeps retrying
    with running_redis(port=port):
        job_id = submit_job(
            "evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=5, device="cpu"), started_by="t"
        )
        job = wait_until_finished(job_id)
    assert (job.status, job.worker) == ("succeeded", f"{os.uname().nodename}:{worker}")


def test_a_job_submitted_while_redis_is_down_is_failed_with_the_reason(sine_checkpoint, job_env, monkeypatch):
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    monkeypatch.setenv("FEWSHOT_JOBS_REDIS_URL", url)
    with pytest.raises(JobQueueUnreachable, match=f"Redis at {url} cannot be reached"):
        submit_job("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5), started_by="tester")
    [job] = list_jobs()
    assert (job.status, job.worker) == ("failed", "queue")
    assert job.error.startswith(f"could not put the job on the queue: the job queue's Redis at {url} cannot be")
    assert get_job(job.id).finished_at is not None


def test_redis_urls_that_name_no_server_are_refused(job_env, monkeypatch):
    monkeypatch.setenv("FEWSHOT_JOBS_REDIS_URL", "http://127.0.0.1:6379")
    with pytest.raises(settings.SettingError, match="FEWSHOT_JOBS_REDIS_URL must be a redis://"):
        check_queue_reachable()
