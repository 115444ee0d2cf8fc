"""``python -m core.jobs worker | list | cancel ID`` (``python -m core worker`` and ``python -m core jobs`` hand
over to it): serve the job queue, list the jobs, cancel one."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.jobs", description="Background jobs: worker, list, cancel")
    parser.add_argument("action", choices=("worker", "list", "cancel"))
    parser.add_argument("job", type=int, nargs="?", help="the job id (cancel)")
    parser.add_argument("--workers", type=int, help="worker: jobs run at once (default: $FEWSHOT_JOB_WORKERS, 2)")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="worker: the dashboard's own; exit at once if another worker serves the queue",
    )
    parser.add_argument("--limit", type=int, default=30, help="list: how many jobs, newest first")
    args = parser.parse_args(argv)
    if args.action == "worker":
        from core.device import tune_host_allocator
        from core.jobs.worker import run_worker

        tune_host_allocator()  # as `python -m core` does: a process of its own, tensors served from the heap
        return run_worker(args.workers, embedded=args.embedded)

    from core.jobs import cancel_job, list_jobs, recover_orphaned_jobs

    if args.action == "cancel":
        if args.job is None:
            parser.error("cancel needs a job id")
        try:
            cancel_job(args.job)
        except (KeyError, ValueError) as error:
            print(f"error: {error.args[0]}", file=sys.stderr)  # args[0]: a KeyError's str() adds quotes
            return 2
        print(f"job {args.job}: cancelled (a running job stops at its next progress report)")
        return 0
    recover_orphaned_jobs()
    for job in list_jobs(limit=args.limit):
        print(
            f"{job.id:>5} {job.kind:<8} {job.status:<9} {100 * job.progress:>4.0f}% {job.started_by:<12} "
            f"{job.message or ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
