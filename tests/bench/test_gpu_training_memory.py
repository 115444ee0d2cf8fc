"""bench/gpu_training_memory.py trains a config for real on the CPU at tiny sizes, and bench/gpu_check.sh refuses to
run its GPU parts without a GPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_training_memory.py"
ALFA_CONFIG = ROOT / "configs" / "miniimagenet" / "conv4_alfa_maml_5shot.toml"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the no-GPU answer is not given")


def run_script(tmp_path: Path, *arguments: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return done, json.loads(out.read_text())


def test_one_tiny_iteration_of_the_alfa_config_on_the_cpu(tmp_path):
    done, report = run_script(
        tmp_path, "--device", "cpu", "--tiny", "--iterations", "1", "--configs", "conv4_alfa_maml"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = report["rows"]
    config = load_config(ALFA_CONFIG)
    assert row["config"] == "configs/miniimagenet/conv4_alfa_maml_5shot.toml"
    assert (row["rule"], row["estimator"]) == (config.rule.name, "maml") == ("alfa", "maml")  # second order
    # --tiny shrinks images, shots and queries; the meta-batch, way and inner steps stay the config's
    assert (row["image_size"], row["k_shot"], row["n_query"]) == (28, 1, 2)
    assert (row["meta_batch"], row["n_way"], row["inner_steps"]) == (
        config.meta.meta_batch,
        config.task.n_way,
        config.meta.inner_steps,
    )
    assert row["device"] == "cpu" and row["iterations"] == 1 and len(row["seconds"]) == 1
    assert math.isclose(row["median_s_per_iteration"], row["seconds"][0], abs_tol=1e-4)  # stored rounded
    assert len(row["losses"]) == 1 and math.isfinite(row["losses"][0]) and row["losses"][0] > 0
    assert row["peak_rss_mb"] > 0 and "peak_cuda_allocated_mb" not in row
    assert "conv4_alfa_maml_5shot" in done.stdout and "peak RSS" in done.stdout


@no_cuda
def test_asking_for_cuda_without_it_fails_with_the_reason(tmp_path):
    done, report = run_script(tmp_path, "--device", "cuda", "--tiny", "--iterations", "1", "--configs", "conv4_maml")
    assert done.returncode == 1
    (row,) = report["rows"]
    assert "CUDA is not available" in row["error"]


@no_cuda
def test_gpu_check_without_cuda_says_to_use_the_cpu_flag(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OUT": str(tmp_path)},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "no CUDA device; run with --cpu"
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written
