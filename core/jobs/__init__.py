"""Background jobs (evaluate, train, tune) run by worker processes through Huey; their state in the run store.

Pages call :func:`submit_job` (arguments checked before any row exists), :func:`cancel_job`, :func:`list_jobs`,
:func:`ensure_worker` (the embedded worker, started if none is alive) and :func:`recover_orphaned_jobs`. A job
runs the command line's own functions (``core.cli``, ``core.train.Trainer.run``, ``core.tune.run_tune``), so a job
and ``python -m core <command>`` given the same arguments do the same work. ``python -m core worker`` starts a
worker explicitly (on another machine, against a Redis queue). See ``core.jobs.queue`` for why Huey.
"""

from core.jobs.arguments import (
    ARGUMENT_TYPES,
    EvaluateJobArguments,
    JobArguments,
    TrainJobArguments,
    TuneJobArguments,
    arguments_from_payload,
    command_defaults,
)
from core.jobs.queue import JobQueueUnreachable, embedded_worker_pid, ensure_worker
from core.jobs.runner import JobCancelled, run_job
from core.jobs.service import (
    STALE_HEARTBEAT_S,
    cancel_job,
    get_job,
    job_evaluation,
    list_evaluations,
    list_jobs,
    recover_orphaned_jobs,
    submit_job,
)
from core.store.jobs import JobRecord, StoredEvaluation

__all__ = [
    "ARGUMENT_TYPES",
    "STALE_HEARTBEAT_S",
    "EvaluateJobArguments",
    "JobArguments",
    "JobCancelled",
    "JobQueueUnreachable",
    "JobRecord",
    "StoredEvaluation",
    "TrainJobArguments",
    "TuneJobArguments",
    "arguments_from_payload",
    "cancel_job",
    "command_defaults",
    "embedded_worker_pid",
    "ensure_worker",
    "get_job",
    "job_evaluation",
    "list_evaluations",
    "list_jobs",
    "recover_orphaned_jobs",
    "run_job",
    "submit_job",
]
