"""The parts of a job that need no worker: progress and ETA, recognising a dead worker, the command's arguments."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest

from core.jobs import EvaluateJobArguments, JobCancelled, TrainJobArguments, command_defaults
from core.jobs.runner import JobReporter, open_store
from core.jobs.service import dead_worker_reason, process_exists, recover_orphaned_jobs
from core.store.models import utcnow
from tests.conftest import DATABASE_KINDS

# The run store's job rows on SQLite and on a real PostgreSQL server (tests/core/jobs/conftest.py job_database_url).
ON_BOTH_DATABASES = pytest.mark.parametrize("job_database_url", DATABASE_KINDS, indirect=True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@ON_BOTH_DATABASES
def test_progress_is_throttled_and_the_eta_is_the_mean_time_per_unit(job_env):
    jobs = open_store().jobs
    job_id = jobs.create("evaluate", {})
    jobs.claim(job_id, "host:1")
    clock = FakeClock()
    reporter = JobReporter(jobs, job_id, clock=clock)
    clock.now = 103.0
    reporter.progress(1, 10)  # 3 s for the first unit, 9 left
    assert jobs.record(job_id).eta_seconds == 27.0
    clock.now = 104.0
    reporter.progress(2, 10)  # 2 s a unit so far, 8 units left
    job = jobs.record(job_id)
    assert (job.progress, job.eta_seconds, job.message) == (0.2, 16.0, "2 of 10")
    clock.now = 104.5
    reporter.progress(3, 10)  # within a second of the last write: not written
    assert jobs.record(job_id).progress == 0.2
    reporter.progress(10, 10)  # the last unit is always written
    assert (jobs.record(job_id).progress, jobs.record(job_id).eta_seconds) == (1.0, 0.0)
    jobs.request_cancel(job_id)
    clock.now = 200.0
    with pytest.raises(JobCancelled):
        reporter.progress(5, 10)
    # A resumed run (units 1 to 600 done before it) estimates from its own pace: 2 s for unit 601.
    train_id = jobs.create("train", {})
    jobs.claim(train_id, "host:1")
    resumed = JobReporter(jobs, train_id, clock=clock)
    clock.now = 202.0
    resumed.progress(601, 1000)
    assert jobs.record(train_id).eta_seconds == 2.0 * 399


def _running_job(worker: str, beat_age_s: float):
    jobs = open_store().jobs
    job_id = jobs.create("evaluate", {})
    jobs.claim(job_id, worker)
    return dataclasses.replace(jobs.record(job_id), heartbeat_at=utcnow() - timedelta(seconds=beat_age_s))


@ON_BOTH_DATABASES
def test_a_dead_worker_is_recognised_by_its_pid_here_and_by_its_heartbeat_elsewhere(job_env):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    here = socket.gethostname()
    assert process_exists(os.getpid()) and not process_exists(finished.pid)
    gone = _running_job(f"{here}:{finished.pid}", beat_age_s=1)
    assert f"process {finished.pid} no longer exists" in dead_worker_reason(gone)
    assert dead_worker_reason(_running_job(f"{here}:{os.getpid()}", beat_age_s=1)) is None
    assert dead_worker_reason(_running_job("elsewhere:1", beat_age_s=30), stale_after=60) is None
    assert "no heartbeat from worker elsewhere:1 for 90 s" in dead_worker_reason(
        _running_job("elsewhere:1", beat_age_s=90), stale_after=60
    )
    # Recovery at a start: the job of the gone process is failed; the live one (this process) is left running.
    assert recover_orphaned_jobs() == [gone.id]
    assert open_store().jobs.record(gone.id).status == "failed"


def test_a_job_s_arguments_are_the_command_s_arguments():
    arguments = EvaluateJobArguments("/c.safetensors", rule="sgd", shot=5, episodes=20, within_alphabet=True)
    assert arguments.cli_argv() == [
        "evaluate",
        "--checkpoint",
        "/c.safetensors",
        "--rule",
        "sgd",
        "--shot",
        "5",
        "--episodes",
        "20",
        "--within-alphabet",
        "--json",
    ]
    assert TrainJobArguments("t.toml", iterations=3, resume=True).cli_argv() == [
        "train",
        "--config",
        "t.toml",
        "--iterations",
        "3",
        "--resume",
        "--no-progress",
    ]
    defaults = command_defaults("evaluate")
    assert (defaults.episodes, defaults.query, defaults.seed) == (600, 15, 1)
