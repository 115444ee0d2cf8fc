"""The Jobs page in a real headless Chromium: start an evaluation job from the form, reload, and see it finish.

The dashboard is started alone (``streamlit run app/main.py``): the page starts its own worker process, as it does
for a user. Same recipe and helpers as ``test_dashboard.py`` (Debian's Chromium driven by the playwright wheel).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.builders import save_sine_checkpoint
from tests.browser.test_dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT_MS,
    _wait_idle,
    _wait_until_serving,
    sync_playwright,
)
from tests.support.ports import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
__all__ = ["sync_playwright"]  # the fixture, shared with test_dashboard.py


@pytest.fixture
def jobs_dashboard(tmp_path, sync_playwright) -> Iterator[dict[str, str]]:
    checkpoint = save_sine_checkpoint(tmp_path / "checkpoints" / "sine.safetensors")
    port = free_port()
    env = {
        **os.environ,
        "FEWSHOT_DATABASE_URL": f"sqlite:///{tmp_path / 'dashboard.sqlite3'}",
        "FEWSHOT_DEFAULT_CHECKPOINT_DIRS": str(checkpoint.parent),
        "FEWSHOT_CHECKPOINT_DIRS": "",
        "FEWSHOT_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed below, after the server stops
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/main.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, server, tmp_path / "streamlit.log")
        yield {"url": url, "checkpoint": str(checkpoint)}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        # The worker the page started runs in a session of its own; its pid is in its lock file.
        lock = tmp_path / "dashboard.jobs.sqlite3.worker.lock"
        pid = lock.read_text().strip() if lock.exists() else ""
        if pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_an_evaluation_job_started_on_the_page_finishes_after_a_reload(jobs_dashboard, sync_playwright):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{jobs_dashboard['url']}/jobs")
            page.get_by_text("No jobs yet").wait_for()
            _wait_idle(page)
            page.get_by_label("… or a checkpoint file path").fill(jobs_dashboard["checkpoint"])
            page.get_by_label("Shot (0: the default)").fill("5")
            page.get_by_label("Episodes").fill("60")
            page.get_by_label("Episodes").press("Tab")
            page.get_by_role("button", name="Start the evaluation").click()
            page.get_by_text("Job #1 (evaluate) is queued").wait_for()
            page.reload()  # progress lives in the run store, not in the browser session
            page.get_by_text("#1 evaluate — succeeded — started by dashboard").wait_for()
            page.get_by_text("#1 evaluate — succeeded").click()  # open the finished job's expander
            page.get_by_text("mse (95% CI)").wait_for()
        finally:
            browser.close()
