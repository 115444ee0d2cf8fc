"""The job queue (Huey) and its workers: the embedded one the dashboard starts, or ``python -m core worker``.

The queue carries only job ids: what to run, its progress and its result are in the run store, which stays the one
source of truth (a job is visible after a reload, in another browser, after a restart). Huey serves the queue:
``SqliteHuey`` on one SQLite file beside the run store's database (:func:`core.settings.job_queue_file`; no server
to install), or ``RedisHuey`` when ``$FEWSHOT_JOBS_REDIS_URL`` is set, for workers on several machines.

The embedded worker holds an exclusive ``flock`` on ``<queue file>.worker.lock`` for its lifetime: the operating
system releases it when the process dies, even by SIGKILL, so "is a worker alive" is one non-blocking lock
attempt, with no pid file that can go stale.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey, TaskWrapper
from redis import ConnectionPool
from redis.exceptions import RedisError

from core import settings

QUEUE_NAME = "fewshot-jobs"
TASK_NAME = "run_job"
IDLE_POLL_MAX_S = 1.0  # an idle consumer looks for new jobs at least this often (Huey's default is 10 s)
# A Redis host that does not answer (down, firewalled) fails a connection after this long, not after the kernel's
# TCP timeout of minutes. Only the connect: reads block for up to Huey's BRPOP timeout (1 s) by design.
REDIS_CONNECT_TIMEOUT_S = 5.0

_queues: dict[str, tuple[Huey, TaskWrapper]] = {}
_queues_lock = threading.Lock()
_spawned: list[subprocess.Popen[bytes]] = []


class JobQueueUnreachable(ConnectionError):
    """The configured Redis queue does not answer; the message names its URL and the reason."""


def _run_job_task(job_id: int) -> str:
    from core.jobs.runner import run_job

    return run_job(job_id)


def job_queue() -> tuple[Huey, TaskWrapper]:
    """The Huey instance of the configured queue and its one task (run a job by id), made once per queue."""
    redis_url = settings.jobs_redis_url()
    key = redis_url or str(settings.job_queue_file())
    with _queues_lock:
        if key not in _queues:
            if redis_url:
                pool = ConnectionPool.from_url(redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S)
                huey: Huey = RedisHuey(QUEUE_NAME, connection_pool=pool, results=False)
            else:
                path = settings.job_queue_file()
                path.parent.mkdir(parents=True, exist_ok=True)
                huey = SqliteHuey(QUEUE_NAME, filename=str(path), results=False)
            # No retries: a job that failed says why; running it again is the user's choice.
            task = huey.task(name=TASK_NAME, retries=0)(_run_job_task)
            _queues[key] = (huey, task)
        return _queues[key]


def _unreachable(error: RedisError) -> JobQueueUnreachable:
    return JobQueueUnreachable(f"the job queue's Redis at {settings.jobs_redis_url()} cannot be reached: {error}")


def check_queue_reachable() -> None:
    """Raise :class:`JobQueueUnreachable` when the configured Redis queue does not answer a PING (a SQLite queue
    is a local file: nothing to check)."""
    if not settings.jobs_redis_url():
        return
    huey, _ = job_queue()
    try:
        huey.storage.conn.ping()
    except RedisError as error:
        raise _unreachable(error) from error


def enqueue(job_id: int) -> str:
    """Put job ``job_id`` on the queue; returns Huey's task id (kept in the row to revoke it).
    :class:`JobQueueUnreachable` when the Redis queue does not answer."""
    huey, task = job_queue()
    message = task.s(job_id)
    try:
        huey.enqueue(message)
    except RedisError as error:
        raise _unreachable(error) from error
    return message.id


def revoke(task_id: str) -> None:
    huey, _ = job_queue()
    try:
        huey.revoke_by_id(task_id)
    except RedisError as error:
        raise _unreachable(error) from error


# ----- the embedded worker -----------------------------------------------------------------------------------


def worker_lock_file() -> Path:
    queue = settings.job_queue_file()
    return queue.with_name(queue.name + ".worker.lock")


def worker_log_file() -> Path:
    queue = settings.job_queue_file()
    return queue.with_name(queue.name + ".worker.log")


def take_worker_lock() -> IO[str] | None:
    """The embedded worker's lock, held (and this pid written in it) until the returned file is closed or the
    process ends; None when another live process holds it."""
    path = worker_lock_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115  # kept open for the worker's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def embedded_worker_pid() -> int | None:
    """The pid of the live embedded worker of the configured queue; None when none holds the lock."""
    path = worker_lock_file()
    if not path.exists():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def ensure_worker() -> None:
    """Start the embedded worker (``python -m core.jobs worker --embedded``) if none is alive, so that the dashboard
    alone runs jobs. Does nothing with a Redis queue: its workers are started on their machines."""
    if settings.jobs_redis_url() or embedded_worker_pid() is not None:
        return
    log = worker_log_file()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        # A session of its own: the worker outlives a dashboard restart and a Ctrl-C in its terminal.
        process = subprocess.Popen(
            [sys.executable, "-m", "core.jobs", "worker", "--embedded"],
            cwd=settings.REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _spawned.append(process)  # kept so that Python does not warn about a child still running


def stop_spawned_workers(timeout: float = 30.0) -> None:
    """Stop (SIGTERM) and reap the embedded workers this process started."""
    while _spawned:
        process = _spawned.pop()
        if process.poll() is None:
            process.terminate()
        process.wait(timeout)


class _QueueUnreachableLine(logging.Filter):
    """Huey's consumer logs a full traceback each time it cannot read the queue: every second for as long as Redis
    is down (it keeps retrying, and serves again once Redis is back). One line naming the queue says the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RedisError):
            record.msg, record.args = f"{_unreachable(error)}; retrying", ()
            record.exc_info, record.exc_text = None, None
        return True


def run_consumer(workers: int) -> None:
    """Serve the queue in this process with ``workers`` threads until SIGINT (finish running jobs first) or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("huey.consumer.Worker").addFilter(_QueueUnreachableLine())
    huey, _ = job_queue()
    consumer: Any = huey.create_consumer(
        workers=workers, worker_type="thread", periodic=False, max_delay=IDLE_POLL_MAX_S
    )
    consumer.run()
