"""The speed benchmark runs end to end on small cases, writes its report and renders the README tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "engine_speed.py"


@pytest.mark.slow
def test_engine_speed_reports_latency_vmap_agreement_and_target_verdicts(tmp_path):
    out = tmp_path / "speed.json"
    cases = ["conv4-omniglot-adapt-1shot-alfa", "vmap-conv4-omniglot-2nd", "eval-conv4-omniglot-1shot-alfa"]
    subprocess.run([sys.executable, str(SCRIPT), "--cases", *cases, "--repeats", "1", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    rows = {row["case"]: row for row in report["results"]}
    assert set(rows) == set(cases)
    adapt_row, vmap_row, eval_row = (rows[c] for c in cases)
    assert adapt_row["median_s"] > 0 and adapt_row["peak_rss_mb"] > 0 and adapt_row["rule"] == "alfa"
    # The per-task loop and vmap must give the same meta-gradient (up to float32 rounding).
    assert vmap_row["max_grad"] > 0
    assert vmap_row["max_grad_difference"] <= 1e-4 * vmap_row["max_grad"]
    assert vmap_row["max_grad_difference_float64"] <= 1e-12 * vmap_row["max_grad"]
    assert vmap_row["speedup"] > 0
    assert eval_row["episodes"] == 4 and eval_row["episodes_per_s"] == pytest.approx(4 / eval_row["seconds"])
    verdicts = {v["case"]: v for v in report["targets"]}
    assert set(verdicts) == {"conv4-omniglot-adapt-1shot-alfa"}  # only targets whose case ran are judged
    assert verdicts["conv4-omniglot-adapt-1shot-alfa"]["met"] == (adapt_row["median_s"] <= 0.3)

    tables = subprocess.run([sys.executable, str(SCRIPT), "--markdown", str(out)], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    assert f"| alfa | {adapt_row['median_s']:.3f} | - | - | - |" in tables
    assert f"| vmap-conv4-omniglot-2nd | {vmap_row['median_s']:.2f} |" in tables
