"""Background jobs in the run store (table ``jobs``, revision 0002): kind, status, progress, payload, result.

Nothing runs jobs yet; the tuning-and-jobs issue gives them a worker. The table and this API are kept so that
databases migrated to revision 0002 stay valid. Reached as ``Store(...).jobs``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.store.models import JobRow, utcnow
from core.store.records import JOB_STATUSES


class JobTable:
    """Creates, updates and reads job rows; every method runs in its own session and transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, kind: str, payload: dict[str, Any] | None = None) -> int:
        """A new job in status ``queued`` with progress 0; returns its id."""
        with self._sessions.begin() as session:
            job = JobRow(kind=kind, status="queued", progress=0.0, payload=payload or {}, result=None)
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
    ) -> None:
        """Change the given fields of a job (None leaves a field as it is); ``updated_at`` moves on."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}; choose from {', '.join(JOB_STATUSES)}")
        if progress is not None and not 0.0 <= progress <= 1.0:
            raise ValueError(f"job progress must be between 0 and 1, got {progress}")
        with self._sessions.begin() as session:
            job = session.get(JobRow, job_id)
            if job is None:
                raise KeyError(f"no job with id {job_id} in the store")
            changes = {"status": status, "progress": progress, "message": message, "result": result, "error": error}
            for name, value in changes.items():
                if value is not None:
                    setattr(job, name, value)
            # Set explicitly: onupdate only fires when some column changed, and a heartbeat counts too.
            job.updated_at = utcnow()

    def get(self, job_id: int) -> dict[str, Any]:
        """The job's columns as a dict (``KeyError`` if absent)."""
        with self._sessions() as session:
            job = session.get(JobRow, job_id)
            if job is None:
                raise KeyError(f"no job with id {job_id} in the store")
            return {column.key: getattr(job, column.key) for column in JobRow.__mapper__.column_attrs}
