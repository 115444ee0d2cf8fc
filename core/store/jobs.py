"""Background jobs in the run store (table ``jobs``, revisions 0002 and 0005) and the evaluations they store
(table ``evaluations``, revision 0005). Reached as ``Store(...).jobs``.

The store keeps a job's whole life, so that it is visible after a reload, in another browser and after a restart:
``queued`` (created, handed to the queue) -> ``running`` (claimed by one worker, heartbeat moving) -> ``succeeded``
/ ``failed`` / ``cancelled``. Every transition that can race (a cancel against a worker claiming the job, a
heartbeat against the recovery of a dead worker's job) is one conditional ``UPDATE ... WHERE status = ...``, so
exactly one side wins. Running jobs live in ``core.jobs``; like the rest of ``core.store`` this module imports
neither torch nor numpy.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.store.models import EvaluationRow, JobRow, utcnow
from core.store.records import FINISHED_JOB_STATUSES, JOB_STATUSES

MAX_STARTED_BY_LENGTH = 100
LOG_TAIL_LINES = 40  # lines of a job's log kept in the row (the page shows them; the rest is not needed later)


@dataclass(frozen=True)
class JobRecord:
    """A stored job. Times are timezone-aware UTC; ``eta_seconds`` is the worker's last estimate."""

    id: int
    kind: str
    status: str
    progress: float
    message: str | None
    payload: dict[str, Any]
    result: Any
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_by: str
    worker: str | None
    queue_task_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    log_tail: str | None
    eta_seconds: float | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES

    def elapsed_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds from start to finish (or to ``now`` while running); None for a job never started."""
        if self.started_at is None:
            return None
        end = self.finished_at or now or utcnow()
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True)
class EvaluationInput:
    """An evaluation to store: the fields of ``core.evaluate.EvaluationResult`` plus the checkpoint and device."""

    checkpoint: str
    device: str
    metric: str
    mean: float
    ci95: float
    episodes: int
    n_way: int | None
    k_shot: int
    n_query: int
    steps: int
    rule: str
    head_init: str | None
    seed: int
    protocol: str | None
    seconds: float
    values: list[float]


@dataclass(frozen=True)
class StoredEvaluation(EvaluationInput):
    """A stored evaluation; ``mean``/``ci95`` read back NaN when they were NaN (SQLite keeps NULL)."""

    id: int = 0
    job_id: int | None = None
    created_at: datetime | None = None


_JOB_FIELDS = tuple(field.name for field in fields(JobRecord))
_EVALUATION_INPUT_FIELDS = tuple(field.name for field in fields(EvaluationInput))


def _record(job: JobRow) -> JobRecord:
    return JobRecord(**{name: getattr(job, name) for name in _JOB_FIELDS})


def _stored_evaluation(row: EvaluationRow) -> StoredEvaluation:
    values = {name: getattr(row, name) for name in _EVALUATION_INPUT_FIELDS if name != "values"}
    values["mean"] = math.nan if row.mean is None else row.mean
    values["ci95"] = math.nan if row.ci95 is None else row.ci95
    return StoredEvaluation(
        **values,
        values=[math.nan if value is None else value for value in row.episode_values],
        id=row.id,
        job_id=row.job_id,
        created_at=row.created_at,
    )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def tail_lines(text: str | None, line: str, keep: int = LOG_TAIL_LINES) -> str:
    """``text`` with ``line`` appended, cut to its last ``keep`` lines."""
    lines = (text.splitlines() if text else []) + line.splitlines()
    return "\n".join(lines[-keep:])


class JobTable:
    """Creates, updates and reads job rows; every method runs in its own session and transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # ----- creating and plain updates ----------------------------------------------------------------------

    def create(self, kind: str, payload: dict[str, Any] | None = None, started_by: str = "") -> int:
        """A new job in status ``queued`` with progress 0; returns its id."""
        if len(started_by) > MAX_STARTED_BY_LENGTH:
            raise ValueError(f"started_by has at most {MAX_STARTED_BY_LENGTH} characters, not {len(started_by)}")
        with self._sessions.begin() as session:
            job = JobRow(
                kind=kind,
                status="queued",
                progress=0.0,
                payload=payload or {},
                result=None,
                started_by=started_by,
                cancel_requested=False,
            )
            session.add(job)
            session.flush()
            return job.id

    def update(
        self,
        job_id: int,
        *,
        status: str | None = None,
        progress: float | None = None,
        message: str | None = None,
        result: Any = None,
        error: str | None = None,
        queue_task_id: str | None = None,
    ) -> None:
        """Change the given fields of a job (None leaves a field as it is); ``updated_at`` moves on."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}; choose from {', '.join(JOB_STATUSES)}")
        _check_progress(progress)
        with self._sessions.begin() as session:
            job = _job(session, job_id)
            changes = {
                "status": status,
                "progress": progress,
                "message": message,
                "result": result,
                "error": error,
                "queue_task_id": queue_task_id,
            }
            for name, value in changes.items():
                if value is not None:
                    setattr(job, name, value)
            # Set explicitly: onupdate only fires when some column changed, and a heartbeat counts too.
            job.updated_at = utcnow()

    def get(self, job_id: int) -> dict[str, Any]:
        """The job's columns as a dict (``KeyError`` if absent)."""
        with self._sessions() as session:
            job = _job(session, job_id)
            return {column.key: getattr(job, column.key) for column in JobRow.__mapper__.column_attrs}

    def record(self, job_id: int) -> JobRecord:
        """The job as a :class:`JobRecord` (``KeyError`` if absent)."""
        with self._sessions() as session:
            return _record(_job(session, job_id))

    def list(
        self,
        limit: int | None = 100,
        kinds: Collection[str] | None = None,
        statuses: Collection[str] | None = None,
    ) -> list[JobRecord]:
        """Jobs newest first, optionally only of some kinds or statuses."""
        query = select(JobRow).order_by(JobRow.id.desc())
        if kinds is not None:
            query = query.where(JobRow.kind.in_(list(kinds)))
        if statuses is not None:
            query = query.where(JobRow.status.in_(list(statuses)))
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as session:
            return [_record(job) for job in session.scalars(query)]

    # ----- the worker's side -------------------------------------------------------------------------------

    def claim(self, job_id: int, worker: str) -> bool:
        """``queued`` -> ``running`` for ``worker``; False when the job is no longer queued (cancelled first)."""
        now = utcnow()
        with self._sessions.begin() as session:
            claimed = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "queued")
                .values(status="running", worker=worker, started_at=now, heartbeat_at=now, updated_at=now)
            ).rowcount
        return claimed == 1

    def report(
        self,
        job_id: int,
        *,
        progress: float | None = None,
        eta_seconds: float | None = None,
        message: str | None = None,
        log_line: str | None = None,
    ) -> bool:
        """Progress, ETA, a message and a log line of a running job, and a heartbeat; returns whether a cancel
        was requested (the worker checks it here, in the same round trip)."""
        _check_progress(progress)
        with self._sessions.begin() as session:
            job = _job(session, job_id)
            if job.status != "running":
                return job.cancel_requested
            now = utcnow()
            if progress is not None:
                job.progress = progress
            if eta_seconds is not None:
                job.eta_seconds = _finite_or_none(max(0.0, eta_seconds))
            if message is not None:
                job.message = message
            if log_line is not None:
                job.log_tail = tail_lines(job.log_tail, log_line)
            job.heartbeat_at = now
            job.updated_at = now
            return job.cancel_requested

    def heartbeat(self, job_id: int) -> None:
        """The worker is alive: only a running job's ``heartbeat_at`` moves."""
        now = utcnow()
        with self._sessions.begin() as session:
            session.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.status == "running").values(heartbeat_at=now)
            )

    def finish(
        self,
        job_id: int,
        status: str,
        *,
        result: Any = None,
        error: str | None = None,
        message: str | None = None,
        log_line: str | None = None,
        evaluation: EvaluationInput | None = None,
    ) -> bool:
        """A running job ends in ``status`` (succeeded, failed or cancelled), with its evaluation if any, in one
        transaction: the evaluation row exists exactly when the job says succeeded. False (and nothing written)
        when the job was not running any more (recovery already marked it failed)."""
        if status not in FINISHED_JOB_STATUSES:
            raise ValueError(f"a job finishes as {', '.join(FINISHED_JOB_STATUSES)}, not {status!r}")
        with self._sessions.begin() as session:
            job = _job(session, job_id)
            if job.status != "running":
                return False
            now = utcnow()
            if evaluation is not None:
                row = _evaluation_row(evaluation, job_id)
                session.add(row)
                session.flush()
                result = {**(result or {}), "evaluation_id": row.id}
            job.status = status
            job.finished_at = now
            job.updated_at = now
            job.eta_seconds = 0.0 if status == "succeeded" else None
            if status == "succeeded":
                job.progress = 1.0
            if result is not None:
                job.result = result
            if error is not None:
                job.error = error
            if message is not None:
                job.message = message
            if log_line is not None:
                job.log_tail = tail_lines(job.log_tail, log_line)
            return True

    # ----- cancelling and recovery -------------------------------------------------------------------------

    def cancel_queued(self, job_id: int) -> bool:
        """``queued`` -> ``cancelled``; False when the job is not queued (a worker claimed it, or it finished)."""
        now = utcnow()
        with self._sessions.begin() as session:
            _job(session, job_id)
            cancelled = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "queued")
                .values(
                    status="cancelled",
                    cancel_requested=True,
                    finished_at=now,
                    updated_at=now,
                    message="cancelled before it started",
                )
            ).rowcount
        return cancelled == 1

    def request_cancel(self, job_id: int) -> bool:
        """Ask the worker of a running job to stop; False when the job is not running."""
        with self._sessions.begin() as session:
            _job(session, job_id)
            asked = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "running")
                .values(cancel_requested=True, updated_at=utcnow())
            ).rowcount
        return asked == 1

    def fail_if_running(self, job_id: int, reason: str, worker: str | None) -> bool:
        """Mark a running job of ``worker`` failed with ``reason`` (recovery of a dead worker's job); False when
        it was no longer running on that worker."""
        now = utcnow()
        with self._sessions.begin() as session:
            failed = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "running", JobRow.worker == worker)
                .values(status="failed", error=reason, finished_at=now, updated_at=now, eta_seconds=None)
            ).rowcount
        return failed == 1

    # ----- evaluations -------------------------------------------------------------------------------------

    def evaluation(self, evaluation_id: int) -> StoredEvaluation:
        with self._sessions() as session:
            row = session.get(EvaluationRow, evaluation_id)
            if row is None:
                raise KeyError(f"no evaluation with id {evaluation_id} in the store")
            return _stored_evaluation(row)

    def evaluation_of_job(self, job_id: int) -> StoredEvaluation | None:
        with self._sessions() as session:
            row = session.scalars(select(EvaluationRow).where(EvaluationRow.job_id == job_id)).first()
            return None if row is None else _stored_evaluation(row)

    def evaluations(self, limit: int | None = 100) -> list[StoredEvaluation]:
        """Stored evaluations, newest first."""
        query = select(EvaluationRow).order_by(EvaluationRow.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as session:
            return [_stored_evaluation(row) for row in session.scalars(query)]


def _check_progress(progress: float | None) -> None:
    if progress is not None and not 0.0 <= progress <= 1.0:
        raise ValueError(f"job progress must be between 0 and 1, got {progress}")


def _job(session: Session, job_id: int) -> JobRow:
    job = session.get(JobRow, job_id)
    if job is None:
        raise KeyError(f"no job with id {job_id} in the store")
    return job


def _evaluation_row(evaluation: EvaluationInput, job_id: int) -> EvaluationRow:
    columns = {name: getattr(evaluation, name) for name in _EVALUATION_INPUT_FIELDS if name != "values"}
    columns["mean"] = _finite_or_none(evaluation.mean)
    columns["ci95"] = _finite_or_none(evaluation.ci95)
    return EvaluationRow(**columns, job_id=job_id, episode_values=[float(value) for value in evaluation.values])
