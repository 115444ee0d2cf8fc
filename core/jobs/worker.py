"""``python -m core worker``: a process serving the job queue (the dashboard's embedded one, or one per machine)."""

from __future__ import annotations

import sys

from core import settings
from core.jobs.queue import JobQueueUnreachable, check_queue_reachable, run_consumer, take_worker_lock
from core.jobs.runner import worker_identity
from core.jobs.service import fail_jobs_of_this_worker, recover_orphaned_jobs


def run_worker(workers: int | None = None, embedded: bool = False) -> int:
    """Serve the queue until stopped. ``embedded``: the dashboard's own worker, which exits at once when another
    live worker already holds the queue's lock (two dashboards starting one each at the same moment)."""
    workers = workers or settings.job_workers()
    try:
        check_queue_reachable()  # else Huey's consumer would log the same connection error every second, forever
    except JobQueueUnreachable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    lock = None if settings.jobs_redis_url() else take_worker_lock()
    if embedded and lock is None:
        print("another worker already serves this queue", file=sys.stderr)
        return 0
    recovered = recover_orphaned_jobs()
    if recovered:
        print(f"marked failed the jobs of dead workers: {recovered}", file=sys.stderr)
    queue = settings.jobs_redis_url() or settings.job_queue_file()
    print(
        f"worker {worker_identity()}: {workers} at once, queue {queue}, store {settings.database_url()}",
        file=sys.stderr,
        flush=True,
    )
    try:
        run_consumer(workers)
    finally:
        # SIGTERM ends the consumer without waiting for its jobs: they will not finish, so they say so now.
        fail_jobs_of_this_worker(worker_identity(), f"worker {worker_identity()} stopped while the job ran")
        if lock is not None:
            lock.close()
    return 0
