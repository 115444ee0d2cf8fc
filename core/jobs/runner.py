"""Running one job inside a worker: claim it, run the command's own function, report progress, finish it.

A job is reported to the store only from here: progress, ETA and the log tail (throttled to one write a second),
a heartbeat every few seconds from a thread of its own (so that a long step without progress still shows the
worker alive), and the end, in one transaction with the evaluation's row (:meth:`core.store.jobs.JobTable.finish`).
Cancellation is a flag in the job's row: the progress callbacks read it with each report and raise
:class:`JobCancelled`, which the command's function lets through (the trainer saves its resumable state first).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from core.jobs.arguments import (
    EvaluateJobArguments,
    JobArguments,
    TrainJobArguments,
    TuneJobArguments,
    arguments_from_payload,
    parse_command,
)
from core.settings import database_url
from core.store import Store
from core.store.jobs import EvaluationInput, JobTable

REPORT_INTERVAL_S = 1.0  # at most one progress write a second: the store is shared with the dashboard
HEARTBEAT_INTERVAL_S = 5.0
OPEN_ATTEMPTS = 3

_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


class JobCancelled(Exception):
    """Raised from a job's progress callback when the job's cancel flag is set."""


def open_store() -> Store:
    """The run store at ``$FEWSHOT_DATABASE_URL``, opened (and migrated) once per URL in this process.

    A new database may be migrated by the dashboard and its worker at the same moment: the loser's migration
    fails on a table the winner just made (and rolls back), and opening again finds the schema up to date. SQLite
    says so with an ``OperationalError``; PostgreSQL with a ``ProgrammingError`` (duplicate table) or an
    ``IntegrityError`` (a type or index of the same name, e.g. ``pg_type_typname_nsp_index``).
    """
    url = database_url()
    with _stores_lock:
        if url not in _stores:
            for attempt in range(OPEN_ATTEMPTS):
                try:
                    _stores[url] = Store(url)
                    break
                except (OperationalError, ProgrammingError, IntegrityError):
                    if attempt == OPEN_ATTEMPTS - 1:
                        raise
                    time.sleep(1.0)
        return _stores[url]


def worker_identity() -> str:
    """``host:pid`` of this process: recovery finds out from it whether a running job's worker still exists."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobReporter:
    """A running job's link to its row: progress with ETA, log lines, and the cancel check."""

    def __init__(self, jobs: JobTable, job_id: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._clock = clock
        self._started = clock()
        self._last_report = -float("inf")
        self._last_cancel_check = -float("inf")
        self._cancelled = False
        self._first_done: int | None = None

    def progress(self, done: int, total: int, message: str | None = None) -> None:
        """``done`` of ``total`` units finished; ETA by the mean time per unit finished in this run (a resumed
        training starts counting at its first report, not at 0). Raises :class:`JobCancelled` when the job was
        asked to stop (checked with each write, so at most a second late)."""
        now = self._clock()
        if self._first_done is None:
            self._first_done = done - 1  # the units before this one were done before this run started
        if done < total and now - self._last_report < REPORT_INTERVAL_S:
            return
        self._last_report = now
        elapsed = now - self._started
        finished_here = done - self._first_done
        eta = elapsed / finished_here * (total - done) if finished_here > 0 else None
        fraction = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
        text = message if message is not None else f"{done} of {total}"
        if self._jobs.report(self._job_id, progress=fraction, eta_seconds=eta, message=text):
            raise JobCancelled

    def log(self, line: str) -> None:
        """A line for the job's log tail (written at once: lines are rare, one per validation or trial)."""
        if self._jobs.report(self._job_id, log_line=f"{time.strftime('%H:%M:%S')} {line}"):
            raise JobCancelled

    def cancel_requested(self) -> bool:
        """Whether the job was asked to stop; asks the store at most once a second (the answer in between is the
        last one), as a tune study polls this after every outer iteration."""
        now = self._clock()
        if now - self._last_cancel_check >= REPORT_INTERVAL_S:
            self._last_cancel_check = now
            self._cancelled = self._jobs.report(self._job_id)
        return self._cancelled


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job stores: its JSON result and, for an evaluation, the evaluation's row."""

    status: str  # "succeeded" or "cancelled" (a tune study stopped early keeps what it found)
    result: dict[str, Any]
    summary: str
    evaluation: EvaluationInput | None = None


def _run_evaluate(arguments: EvaluateJobArguments, reporter: JobReporter) -> JobOutcome:
    from core.cli import evaluation_from_args

    checkpoint, device, result = evaluation_from_args(
        parse_command(arguments.cli_argv()), on_progress=reporter.progress
    )
    evaluation = EvaluationInput(
        checkpoint=str(checkpoint),
        device=str(device),
        metric=result.metric,
        mean=result.mean,
        ci95=result.ci95,
        episodes=result.episodes,
        n_way=result.n_way,
        k_shot=result.k_shot,
        n_query=result.n_query,
        steps=result.steps,
        rule=result.rule,
        head_init=result.head_init,
        seed=result.seed,
        protocol=result.protocol,
        seconds=result.seconds,
        values=[float(value) for value in result.values],
    )
    payload = {"checkpoint": str(checkpoint), "device": str(device), **result.to_dict()}
    return JobOutcome("succeeded", payload, f"{result.metric} {result.summary()} (95% CI)", evaluation)


def _run_train(arguments: TrainJobArguments, reporter: JobReporter) -> JobOutcome:
    from core.cli import trainer_from_args

    args = parse_command(arguments.cli_argv())
    trainer = trainer_from_args(args)

    def on_validation(iteration: int, score: float) -> None:
        reporter.log(f"validation at iteration {iteration}: score {score:.4f}")

    try:
        summary = trainer.run(resume=args.resume, on_iteration=reporter.progress, on_validation=on_validation)
    except JobCancelled:
        reporter_line = f"cancelled: state saved at iteration {trainer.iteration}; a train job with resume continues it"
        raise JobCancelled(reporter_line) from None
    output = trainer.output
    result = {
        **summary,
        "best_checkpoint": str(output / "best.safetensors"),
        "last_checkpoint": str(output / "last.safetensors"),
    }
    return JobOutcome("succeeded", result, f"{summary['iterations']} iterations; best score {summary['best_score']}")


def _run_tune(arguments: TuneJobArguments, reporter: JobReporter) -> JobOutcome:
    import dataclasses

    from core.tune import run_tune

    trials_done = 0
    stopped = False

    def on_trial(report: Any) -> None:
        nonlocal trials_done
        trials_done += 1
        reporter.log(f"trial {getattr(report, 'number', trials_done - 1)}: {_trial_line(report)}")
        reporter.progress(min(trials_done, arguments.trials), arguments.trials)

    def should_stop() -> bool:
        nonlocal stopped
        stopped = stopped or reporter.cancel_requested()
        return stopped

    result = run_tune(arguments.request(), on_trial=on_trial, should_stop=should_stop)
    payload = dataclasses.asdict(result)
    summary = (
        f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed; best {result.best_value}"
    )
    return JobOutcome("cancelled" if stopped else "succeeded", payload, summary)


def _trial_line(report: Any) -> str:
    fields = {name: getattr(report, name) for name in ("state", "value") if hasattr(report, name)}
    return ", ".join(f"{name} {value}" for name, value in fields.items()) or "done"


RUNNERS: dict[str, Callable[[Any, JobReporter], JobOutcome]] = {
    EvaluateJobArguments.kind: _run_evaluate,
    TrainJobArguments.kind: _run_train,
    TuneJobArguments.kind: _run_tune,
}


def _beat(jobs: JobTable, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_INTERVAL_S):
        # A database busy now and then must not end the job; the next beat retries.
        with contextlib.suppress(OperationalError):
            jobs.heartbeat(job_id)


def run_job(job_id: int) -> str:
    """Run job ``job_id`` in this process (a worker's task); returns the status it ended in. A job that is no
    longer queued (cancelled before a worker took it) is skipped."""
    jobs = open_store().jobs
    if not jobs.claim(job_id, worker_identity()):
        return jobs.record(job_id).status
    record = jobs.record(job_id)
    reporter = JobReporter(jobs, job_id)
    stop = threading.Event()
    beating = threading.Thread(target=_beat, args=(jobs, job_id, stop), name=f"job-{job_id}-heartbeat", daemon=True)
    beating.start()
    try:
        arguments: JobArguments = arguments_from_payload(record.kind, record.payload)
        reporter.log(f"started {record.kind} on worker {worker_identity()}")
        outcome = RUNNERS[record.kind](arguments, reporter)
    except JobCancelled as cancelled:
        line = str(cancelled) or "cancelled"
        jobs.finish(job_id, "cancelled", message="cancelled", log_line=line)
        return "cancelled"
    except Exception as error:  # noqa: BLE001  # whatever the command raises, the job says failed and why
        reason = f"{type(error).__name__}: {error}"
        jobs.finish(job_id, "failed", error=reason, message="failed", log_line=traceback.format_exc(limit=-4).rstrip())
        return "failed"
    finally:
        stop.set()
        beating.join()
    jobs.finish(
        job_id,
        outcome.status,
        result=outcome.result,
        message=outcome.summary,
        log_line=f"{outcome.status}: {outcome.summary}",
        evaluation=outcome.evaluation,
    )
    return outcome.status
