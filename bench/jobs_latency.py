"""The background-job system's latencies on this machine (issue 15): worker start, queue pick-up, a job against the
same command line, cancel, and recovery after a SIGKILL of the worker.

    OMP_NUM_THREADS=1 python bench/jobs_latency.py          # writes bench/results/jobs_latency.json (~1 minute)

Runs against a fresh SQLite run store and queue in a temporary folder, with a tiny seeded sine checkpoint (the
same builder as the tests): what is timed is the job machinery, not the model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "bench" / "results" / "jobs_latency.json"
WORK = Path(tempfile.mkdtemp(prefix="jobs-latency-"))
os.environ.update(
    FEWSHOT_DATABASE_URL=f"sqlite:///{WORK / 'store.sqlite3'}", FEWSHOT_DEVICE="cpu", FEWSHOT_JOB_WORKERS="2"
)

from core.cli import main as cli_main  # after the environment, which the store reads at import
from core.jobs import (
    EvaluateJobArguments,
    cancel_job,
    embedded_worker_pid,
    ensure_worker,
    get_job,
    recover_orphaned_jobs,
    submit_job,
)
from core.jobs.queue import stop_spawned_workers
from tests.app.builders import save_sine_checkpoint


def wait(condition, timeout: float = 300.0) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError("the job system did not get there in time")
        time.sleep(0.02)


def main() -> None:
    checkpoint = save_sine_checkpoint(WORK / "sine.safetensors")
    results: dict = {"command": "OMP_NUM_THREADS=1 python bench/jobs_latency.py", "cpu_count": os.cpu_count()}
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        cli_main(["evaluate", "--checkpoint", str(checkpoint), "--shot", "5", "--episodes", "600", "--json",
                  "--device", "cpu"])
    results["cli_evaluate_600_sine_s"] = round(time.perf_counter() - started, 2)
    cli = json.loads(out.getvalue())
    try:
        started = time.perf_counter()
        ensure_worker()
        wait(lambda: embedded_worker_pid() is not None)
        results["embedded_worker_start_s"] = round(time.perf_counter() - started, 2)
        time.sleep(2)  # let the worker finish starting its threads: pick-up is measured from an idle worker
        started = time.perf_counter()
        job = submit_job("evaluate", EvaluateJobArguments(str(checkpoint), shot=5, episodes=600, device="cpu"), "bench")
        results["submit_job_s"] = round(time.perf_counter() - started, 3)
        wait(lambda: get_job(job).status != "queued")
        results["queue_pickup_s"] = round(time.perf_counter() - started, 2)
        wait(lambda: get_job(job).finished)
        results["job_evaluate_600_sine_submit_to_finish_s"] = round(time.perf_counter() - started, 2)
        finished = get_job(job)
        results["job_elapsed_s"] = round(finished.elapsed_seconds(), 2)
        results["job_equals_cli"] = finished.result["mean"] == cli["mean"] and finished.result["ci95"] == cli["ci95"]

        long_run = EvaluateJobArguments(str(checkpoint), shot=5, episodes=100000, device="cpu")
        job = submit_job("evaluate", long_run, "bench")
        wait(lambda: get_job(job).progress > 0)
        started = time.perf_counter()
        cancel_job(job)
        wait(lambda: get_job(job).finished)
        results["cancel_running_to_cancelled_s"] = round(time.perf_counter() - started, 2)

        job = submit_job("evaluate", long_run, "bench")
        wait(lambda: get_job(job).progress > 0)
        os.kill(embedded_worker_pid(), signal.SIGKILL)
        started = time.perf_counter()
        wait(lambda: recover_orphaned_jobs() == [job] or get_job(job).status == "failed")
        results["sigkill_to_marked_failed_by_recover_s"] = round(time.perf_counter() - started, 3)
        results["failed_reason"] = get_job(job).error
    finally:
        stop_spawned_workers()
    print(json.dumps(results, indent=2))
    RESULT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
