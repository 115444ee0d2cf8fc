"""What pages and the command line do with jobs: submit, cancel, list, and recover the jobs of dead workers."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path

from core.jobs.arguments import ARGUMENT_TYPES, JobArguments
from core.jobs.queue import enqueue, revoke
from core.jobs.runner import open_store
from core.settings import database_url
from core.store.database import is_sqlite_memory
from core.store.jobs import MAX_STARTED_BY_LENGTH, JobRecord, StoredEvaluation
from core.store.models import utcnow
from core.store.permissions import LOCAL, Actor, check_may_change

# A worker beats every 5 s (core.jobs.runner.HEARTBEAT_INTERVAL_S); a minute without one means it is gone (or so
# stuck that its job is lost anyway). Only used for workers on other hosts: on this host the pid is checked.
STALE_HEARTBEAT_S = 60.0


def submit_job(kind: str, arguments: JobArguments, started_by: str) -> int:
    """Check ``arguments`` fully, then store a queued job and put it on the queue; returns the job's id.

    Any problem with the arguments raises ``ValueError`` with a clear message before a row exists.
    """
    if kind not in ARGUMENT_TYPES:
        raise ValueError(f"unknown job kind {kind!r}; choose from {', '.join(ARGUMENT_TYPES)}")
    expected = ARGUMENT_TYPES[kind]
    if not isinstance(arguments, expected):
        raise ValueError(f"a {kind} job takes {expected.__name__}, not {type(arguments).__name__}")  # noqa: TRY004
    if not isinstance(started_by, str) or not started_by.strip():
        raise ValueError("say who starts the job (started_by)")
    if len(started_by.strip()) > MAX_STARTED_BY_LENGTH:
        raise ValueError(f"started_by has at most {MAX_STARTED_BY_LENGTH} characters")
    if is_sqlite_memory(database_url()):
        raise ValueError(
            "background jobs need a run store that a worker process can open too (a SQLite file or a "
            "database server), not an in-memory database"
        )
    arguments.validate()
    jobs = open_store().jobs
    job_id = jobs.create(kind, dataclasses.asdict(arguments), started_by=started_by.strip())
    try:
        task_id = enqueue(job_id)
    except Exception as error:  # the queue is unreachable (Redis down): the job cannot run, and says why
        jobs.claim(job_id, "queue")
        jobs.finish(job_id, "failed", error=f"could not put the job on the queue: {error}")
        raise
    jobs.update(job_id, queue_task_id=task_id)
    return job_id


def cancel_job(job_id: int, by: Actor = LOCAL) -> None:
    """Cancel a job: a queued one at once (and revoked from the queue), a running one by its flag, which the
    worker reads at its next progress report. ``ValueError`` for a job that has already finished.

    Only the one who started it (``started_by``) or an admin may (``core.store.permissions``): otherwise
    ``NotPermitted`` and the job goes on. ``by`` defaults to :data:`LOCAL`, the single-user dashboard and the
    command line (``python -m core jobs cancel``), whose user can reach the database anyway."""
    jobs = open_store().jobs
    check_may_change(by, "job", {job_id: jobs.record(job_id).started_by})
    if jobs.cancel_queued(job_id):
        task_id = jobs.record(job_id).queue_task_id
        if task_id is not None:
            revoke(task_id)
        return
    if jobs.request_cancel(job_id):
        return
    raise ValueError(f"job {job_id} has already finished ({jobs.record(job_id).status})")


def list_jobs(
    limit: int | None = 100, kinds: Collection[str] | None = None, statuses: Collection[str] | None = None
) -> list[JobRecord]:
    """Jobs newest first (see :meth:`core.store.jobs.JobTable.list`)."""
    return open_store().jobs.list(limit=limit, kinds=kinds, statuses=statuses)


def get_job(job_id: int) -> JobRecord:
    return open_store().jobs.record(job_id)


def job_evaluation(job_id: int) -> StoredEvaluation | None:
    """The evaluation an evaluate job stored (None until it succeeded)."""
    return open_store().jobs.evaluation_of_job(job_id)


def list_evaluations(limit: int | None = 100) -> list[StoredEvaluation]:
    return open_store().jobs.evaluations(limit=limit)


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (a killed child nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return True
    return "zombie" not in state and "dead" not in state


def dead_worker_reason(
    job: JobRecord, now: datetime | None = None, stale_after: float = STALE_HEARTBEAT_S
) -> str | None:
    """Why the worker of running job ``job`` is known to be gone, or None while it may be alive."""
    now = now or utcnow()
    host, _, pid_text = (job.worker or "").rpartition(":")
    if host == socket.gethostname() and pid_text.isdigit() and not process_exists(int(pid_text)):
        return (
            f"worker {job.worker} is gone (process {pid_text} no longer exists): it was killed or crashed "
            "while the job ran"
        )
    beat = job.heartbeat_at or job.started_at
    if beat is not None and now - beat > timedelta(seconds=stale_after):
        return f"no heartbeat from worker {job.worker} for {(now - beat).total_seconds():.0f} s: it is gone"
    return None


def recover_orphaned_jobs(stale_after: float = STALE_HEARTBEAT_S) -> list[int]:
    """Mark failed, with the reason, every running job whose worker is gone; returns their ids. Workers run it
    when they start, the dashboard on every look at the job list. Nothing else is touched: an evaluation's row
    is only written when its job succeeds, so a dead worker leaves none behind."""
    jobs = open_store().jobs
    recovered = []
    now = utcnow()
    for job in jobs.list(limit=None, statuses=("running",)):
        reason = dead_worker_reason(job, now, stale_after)
        if reason is not None and jobs.fail_if_running(job.id, reason, job.worker):
            recovered.append(job.id)
    return recovered


def fail_jobs_of_this_worker(worker: str, reason: str) -> list[int]:
    """A stopping worker marks the jobs it still runs failed (it will not finish them)."""
    jobs = open_store().jobs
    return [
        job.id
        for job in jobs.list(limit=None, statuses=("running",))
        if job.worker == worker and jobs.fail_if_running(job.id, reason, worker)
    ]
