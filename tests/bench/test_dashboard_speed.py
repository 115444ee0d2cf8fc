"""bench/dashboard_speed.py runs end to end on a tiny checkpoint and writes a report of the right shape.

Only the report's shape and verdicts are checked, never the timings (house rule: speed targets live in the
benchmark scripts, not in timed tests). One journey, one try: a fresh server, its first load and its first Run.
Without Chromium or Playwright the test skips locally and fails under CI, as the browser test does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import chromium_path
from tests.app.builders import save_tiny_checkpoint
from tests.conftest import omniglot_root

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "dashboard_speed.py"
CHROMIUM = chromium_path()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests: see .ci/run)")
    pytest.skip(reason)


def test_dashboard_speed_reports_figures_targets_and_verdicts(tmp_path) -> None:
    try:
        import playwright  # noqa: F401 - only whether it is installed
    except ImportError:
        _unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)")
    checkpoint = save_tiny_checkpoint(tmp_path / "checkpoints" / "tiny-alfa.safetensors")
    # With Omniglot: a first load and the first Run on the same server; without it, the first load only.
    cases = ["load-cold-omniglot", "run-5way-1shot-first"] if omniglot_root() else ["load-cold-no-omniglot"]
    out = tmp_path / "dashboard_speed.json"
    finished = subprocess.run(
        [sys.executable, str(SCRIPT), "--cases", *cases, "--repeats", "1", "--checkpoint-dir",
         str(checkpoint.parent), "--out", str(out), "--timeout", "120", "--keep-logs", str(tmp_path / "logs")],
        cwd=REPO, capture_output=True, text=True, timeout=400, check=False,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu_model"]
    assert report["versions"]["streamlit"] and report["versions"]["torch"] and report["versions"]["chromium"]
    assert len(report["git"]["commit"]) == 40
    assert report["settings"]["checkpoint"] == "tiny-alfa"
    assert report["settings"]["rules"] == ["ALFA", "SGD (MAML)"]
    rows = {row["case"]: row for row in report["figures"]}
    assert list(rows) == cases
    for row in rows.values():
        assert "error" not in row and "skipped" not in row
        assert row["starts"] and row["ends"]
        assert len(row["seconds"]) == 1 and row["seconds"][0] > 0
        assert row["median_s"] == row["min_s"] == row["max_s"] == row["seconds"][0]
        assert row["target_s"] in (5.0, 2.0)
        assert row["met"] == (row["median_s"] <= row["target_s"])
    assert {(t["case"], t["met"]) for t in report["targets"]} == {(c, rows[c]["met"]) for c in cases}
    assert report["journeys"][0]["figures"].keys() == set(cases)
    if "run-5way-1shot-first" in rows:
        settings = report["journeys"][0]["settings"]
        assert settings["n_way"] == "5" and settings["k_shot"] == "1" and settings["rules"] == ["ALFA", "SGD (MAML)"]
    table = finished.stdout
    for case in cases:
        assert case in table
    assert ("met" in table) or ("MISSED" in table)
