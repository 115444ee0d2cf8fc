"""A job launched from the dashboard on one host is run by a worker on another (network-namespace hosts).

Host a runs the shared services and the dashboard, as a deployment would: PostgreSQL (the run store) and Redis (the
job queue), both listening on a's address, and ``streamlit run app/main.py`` with ``FEWSHOT_DATABASE_URL`` and
``FEWSHOT_JOBS_REDIS_URL`` pointing at them. With a Redis queue the dashboard starts no worker of its own: the only
worker is ``python -m core worker`` on host b, started with the same two URLs, which reaches a over the veth pair.
Debian's Chromium runs inside host a too (Playwright starts it through a two-line wrapper that execs it under
``ip netns exec``), since the dashboard listens on a's address only.

:func:`jobs_on_two_hosts` sets this up; ``bench/multihost_jobs.py`` measures the pick-up latency with it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.app.builders import save_sine_checkpoint
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, _wait_idle, sync_playwright
from tests.support import netns, postgres, redis
from tests.support.netns import Host

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180  # the worker and the dashboard import torch on a busy 2-core machine
DASHBOARD_PORT = 8501  # a fresh namespace: every port is free there
__all__ = ["sync_playwright"]  # the fixture, shared with test_dashboard.py

# A job's row and its evaluation, read beside the store (the test process cannot reach host a's address).
READ_JOB = """
import json, sys
from core.jobs import get_job, job_evaluation
job = get_job(int(sys.argv[1]))
evaluation = job_evaluation(job.id)
print(json.dumps({
    "status": job.status, "worker": job.worker, "error": job.error, "started_by": job.started_by,
    "created_at": job.created_at.isoformat(), "started_at": job.started_at and job.started_at.isoformat(),
    "evaluation": evaluation and {
        "job_id": evaluation.job_id, "metric": evaluation.metric, "mean": evaluation.mean, "ci95": evaluation.ci95,
        "episodes": evaluation.episodes, "k_shot": evaluation.k_shot, "values": len(evaluation.values),
    },
}))
"""
HEALTH = """
import json, sys, urllib.request
try:
    print(json.dumps(urllib.request.urlopen(sys.argv[1] + "/_stcore/health", timeout=2).read().decode()))
except OSError:
    print(json.dumps("down"))
"""


def unavailable_reason() -> str | None:
    """Why the two-host deployment cannot run here (no root or ``ip``, no PostgreSQL, no Redis); None when it can."""
    for reason in (netns.unavailable_reason(), postgres.unavailable_reason(), redis.unavailable_reason()):
        if reason is not None:
            return reason
    return None


@dataclass(frozen=True)
class JobsDeployment:
    """The running deployment: the two hosts, the services' URLs, the dashboard's address, b's worker."""

    a: Host
    b: Host
    database_url: str  # PostgreSQL on a's address
    redis_url: str  # Redis on a's address
    dashboard_url: str  # Streamlit on a's address
    checkpoint: Path  # a tiny sine checkpoint, at the same path for both hosts (one file system: the checkout)
    worker_identity: str  # what b's worker writes in the rows it claims: host:pid
    env: dict[str, str]  # every process's environment (the two URLs and the checkpoint folders)

    def python(self, host: Host, code: str, *argv: str) -> Any:
        """Run ``python -c code argv...`` in ``host`` and return the JSON it prints last."""
        result = subprocess.run(
            host.command([sys.executable, "-c", code, *argv]), cwd=REPO, env=self.env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise AssertionError(f"python in {host.name} failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def job(self, job_id: int) -> dict[str, Any]:
        return self.python(self.a, READ_JOB, str(job_id))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(condition, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in logs if log.exists())
            raise AssertionError(f"timed out after {START_TIMEOUT_S} s waiting for {what}\n{tails}")
        time.sleep(0.5)


@contextmanager
def jobs_on_two_hosts(folder: Path) -> Iterator[JobsDeployment]:
    """Hosts a and b; on a PostgreSQL, Redis and the dashboard, on b ``python -m core worker``; all stopped on exit
    (the worker first, so that it fails no job of its own on the way out while the store is still there)."""
    checkpoint = save_sine_checkpoint(folder / "checkpoints" / "sine.safetensors")
    with ExitStack() as stack:
        a, b = stack.enter_context(netns.two_hosts("jb"))
        database = stack.enter_context(postgres.running_postgres(host=a))
        queue = stack.enter_context(redis.running_redis(host=a))
        env = {
            **os.environ,
            "FEWSHOT_DATABASE_URL": database.create_database("fewshot"),
            "FEWSHOT_JOBS_REDIS_URL": queue.url(),
            "FEWSHOT_DEFAULT_CHECKPOINT_DIRS": str(checkpoint.parent),
            "FEWSHOT_CHECKPOINT_DIRS": "",
            "FEWSHOT_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
        }
        worker_log, dashboard_log = folder / "worker-b.log", folder / "dashboard-a.log"
        with open(worker_log, "wb") as output:
            worker = b.popen(
                [sys.executable, "-m", "core", "worker", "--workers", "1"],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        stack.callback(_stop, worker)  # callbacks run last in, first out: before the servers stop
        # The worker opens (and migrates) the store first; the dashboard opens it when the page is first shown.
        _wait(
            lambda: "queue redis://" in worker_log.read_text() or worker.poll() is not None, "b's worker", [worker_log]
        )
        assert worker.poll() is None, worker_log.read_text()[-3000:]
        dashboard_url = f"http://{a.address}:{DASHBOARD_PORT}"
        streamlit = [
            sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
            "--server.address", a.address, "--server.port", str(DASHBOARD_PORT),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        ]  # fmt: skip
        with open(dashboard_log, "wb") as output:
            dashboard = a.popen(streamlit, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
        stack.callback(_stop, dashboard)
        deployment = JobsDeployment(
            a, b, env["FEWSHOT_DATABASE_URL"], queue.url(), dashboard_url, checkpoint,
            f"{socket.gethostname()}:{worker.pid}",  # `ip netns exec` and `core worker` exec: the same pid
            env,
        )  # fmt: skip

        def dashboard_serves() -> bool:
            return dashboard.poll() is not None or deployment.python(a, HEALTH, dashboard_url) == "ok"

        _wait(dashboard_serves, "the dashboard on a", [dashboard_log])
        assert dashboard.poll() is None, dashboard_log.read_text()[-3000:]
        yield deployment


def chromium_in(host: Host, folder: Path) -> Path:
    """An executable that runs Debian's Chromium inside ``host`` (Playwright starts it with its own arguments and
    talks to it over inherited pipes, which ``ip netns exec`` keeps: it execs the browser)."""
    wrapper = folder / f"chromium-in-{host.name}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {host.name} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _cli_evaluation(checkpoint: Path, *options: str) -> dict[str, Any]:
    """The command line's own result for the same arguments (no network: run here)."""
    argv = [sys.executable, "-m", "core", "evaluate", "--checkpoint", str(checkpoint), "--json", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.fixture
def deployment(tmp_path, sync_playwright) -> Iterator[JobsDeployment]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the two-host jobs test: {reason}")
        pytest.skip(reason)
    with jobs_on_two_hosts(tmp_path) as running:
        yield running


def test_a_job_launched_on_host_a_s_dashboard_is_run_by_the_worker_on_host_b(deployment, sync_playwright, tmp_path):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_in(deployment.a, tmp_path)), args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{deployment.dashboard_url}/jobs")
            page.get_by_text("No jobs yet").wait_for()
            _wait_idle(page)
            page.get_by_label("… or a checkpoint file path").fill(str(deployment.checkpoint))
            page.get_by_label("Shot (0: the default)").fill("5")
            page.get_by_label("Episodes").fill("60")
            page.get_by_label("Episodes").press("Tab")
            page.get_by_role("button", name="Start the evaluation").click()
            page.get_by_text("Job #1 (evaluate) is queued").wait_for()
            page.get_by_text("#1 evaluate — succeeded — started by dashboard").wait_for()  # the list refreshes itself

            job = deployment.job(1)
            assert (job["status"], job["error"], job["started_by"]) == ("succeeded", None, "dashboard")
            assert job["worker"] == deployment.worker_identity  # b's worker claimed it: the only worker there is
            expected = _cli_evaluation(deployment.checkpoint, "--shot", "5", "--episodes", "60", "--device", "cpu")
            assert job["evaluation"] == {
                "job_id": 1,
                "metric": "mse",
                "mean": expected["mean"],
                "ci95": expected["ci95"],
                "episodes": 60,
                "k_shot": 5,
                "values": 60,
            }

            page.reload()  # what a looks at is the shared store, not the browser session
            page.get_by_text("#1 evaluate — succeeded").click()  # open the finished job's expander
            page.get_by_text(f"{expected['mean']:.4g} ± {expected['ci95']:.2g}").wait_for()  # the stored result
            page.get_by_text(f"started evaluate on worker {deployment.worker_identity}").wait_for()  # its log tail
        finally:
            browser.close()
