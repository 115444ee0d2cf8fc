"""Jobs across two hosts: how long from launching a job on host a to the worker on host b claiming it (issue 16).

    OMP_NUM_THREADS=1 python bench/multihost_jobs.py [--jobs 10] [--episodes 5]
        # root, iproute2, PostgreSQL and redis-server; writes bench/results/multihost_jobs.json (~2 minutes)

The deployment is the two-host test's (``tests/browser/test_jobs_multihost.py``, :func:`jobs_on_two_hosts`):
network-namespace hosts a and b joined by a veth pair; on a PostgreSQL (the run store), Redis (the queue) and the
dashboard, on b ``python -m core worker --workers 1``. A process on a launches the jobs as the Jobs page's button
does (``core.jobs.submit_job``: checks, row, enqueue), one at a time, each after the previous one finished, so the
worker is idle at every launch. Per job, from the stored timestamps (one machine, one clock):

* launch to claim: the row's ``created_at`` (written on a just before the enqueue) to its ``started_at``
  (written on b by the worker's claim): the enqueue into Redis on a, b's blocking pop, the claim in PostgreSQL;
* claim to finish: the job itself (a sine evaluation of ``--episodes`` episodes, 5 shots);
* ``submit_job``: its wall time on a.

The machine is shared (2 cores); the load average is recorded with the figures, which are not speed figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "bench" / "results" / "multihost_jobs.json"

from tests.browser.test_jobs_multihost import jobs_on_two_hosts, unavailable_reason  # after sys.path

# Runs on host a: launch each job, wait until it finished, report its timestamps.
LAUNCH = """
import json, sys, time
from core.jobs import EvaluateJobArguments, get_job, submit_job
checkpoint, count, episodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
for _ in range(count):
    started = time.perf_counter()
    job_id = submit_job(
        "evaluate", EvaluateJobArguments(checkpoint, shot=5, episodes=episodes, device="cpu"), started_by="bench"
    )
    submit_s = time.perf_counter() - started
    while not (job := get_job(job_id)).finished:
        time.sleep(0.05)
    rows.append({
        "job": job_id, "status": job.status, "worker": job.worker, "submit_job_s": submit_s,
        "launch_to_claim_s": (job.started_at - job.created_at).total_seconds(),
        "claim_to_finish_s": (job.finished_at - job.started_at).total_seconds(),
    })
print(json.dumps(rows))
"""


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10, help="jobs launched one after another")
    parser.add_argument("--episodes", type=int, default=5, help="sine episodes per evaluation job")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"cannot run: {reason}")
    with tempfile.TemporaryDirectory(prefix="multihost-jobs-") as folder:
        started = time.perf_counter()
        with jobs_on_two_hosts(Path(folder)) as deployment:
            setup_s = time.perf_counter() - started
            load_before = os.getloadavg()
            rows = deployment.python(
                deployment.a, LAUNCH, str(deployment.checkpoint), str(args.jobs), str(args.episodes)
            )
            load_after = os.getloadavg()
            worker = deployment.worker_identity
    assert all(row["status"] == "succeeded" for row in rows), rows
    assert all(row["worker"] == worker for row in rows), "a job ran on a worker other than b's"
    command = "OMP_NUM_THREADS=1 python bench/multihost_jobs.py"
    if (args.jobs, args.episodes) != (10, 5):
        command += f" --jobs {args.jobs} --episodes {args.episodes}"
    results = {
        "command": command,
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(value, 2) for value in load_before],
        "loadavg_after": [round(value, 2) for value in load_after],
        "note": "a shared 2-core machine: the load average says how busy; not speed figures",
        "deployment": "host a: PostgreSQL, Redis, dashboard; host b: python -m core worker --workers 1 (netns + veth)",
        "deployment_start_s": round(setup_s, 1),
        "jobs": len(rows),
        "episodes_per_job": args.episodes,
        "all_claimed_by_b_worker": True,
        "launch_to_claim_s": _summary([row["launch_to_claim_s"] for row in rows]),
        "claim_to_finish_s": _summary([row["claim_to_finish_s"] for row in rows]),
        "submit_job_s": _summary([row["submit_job_s"] for row in rows]),
        "per_job": rows,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(results, indent=2) + "\n")
    for name in ("launch_to_claim_s", "claim_to_finish_s", "submit_job_s"):
        summary = results[name]
        print(f"{name:<18} median {summary['median']:.3f}  min {summary['min']:.3f}  max {summary['max']:.3f}")
    print(f"{len(rows)} jobs, all claimed by b's worker {worker}; load average {load_before} -> {load_after}")
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
