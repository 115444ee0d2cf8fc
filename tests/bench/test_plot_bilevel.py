"""bench/plot_bilevel.py draws every figure whose result file exists, skips the others, and renders the claims."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "plot_bilevel.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def plot():
    spec = importlib.util.spec_from_file_location("plot_bilevel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the signature (the file is a PNG)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


CLAIMS = [
    {
        "claim": "A beats B",
        "verdict": "holds",
        "criterion": "lower error | at T=20",
        "summary": "a: 0.1 vs b 0.2\n    a_sym: 0.1 vs b 0.3",
        "inner_steps_where_the_errors_agree": [10, 20],
    },
    {
        "claim": "A is competitive",
        "verdict": "does not hold",
        "criterion": "within 2x",
        "summary": "a 1 vs c 0.1",
        "inner_steps_where_the_errors_agree": [],
    },
    {"claim": "bias falls faster", "verdict": "holds", "criterion": "slopes", "summary": "slope 1 and 2"},
]


def quadratic() -> dict:
    steps = [1, 10, 100]
    runs = {
        "maml": {"rate": 1.0, "exact_loss": [2.0, 1.5, 1.0 + 1e-9]},
        "fo_b_maml (delta=0.001)": {"rate": 0.5, "exact_loss": [2.0, None, 1.2]},
    }
    return {
        "settings": {"family": {"kappa": 1000.0, "n": 20}, "lambda": 0.1},
        "figure1_left": {
            "inner_steps": steps,
            "relative_error": {"maml": [0.5, 0.1, 1e-5], "fo_b_maml (delta=0.001)": [0.8, 0.2, None]},
            "reference_curves": {"fo_b_maml (delta->0)": [0.8, 0.2, 1e-4]},
        },
        "figure1_right": {
            "inner_steps": 20,
            "F_star": 1.0,
            "outer": {kind: {"label": kind, "runs": runs} for kind in ("gd", "sngdm", "clipped")},
        },
        "claims": CLAIMS,
    }


def smoothness() -> dict:
    points = [
        {"trajectory": t, "iteration": i, "meta_grad_norm": n, "smoothness": 5 + 100 * n}
        for t, norms in (("a", (1.0, 0.5)), ("b", (1e4, 10.0)))
        for i, n in enumerate(norms)
    ]
    return {"command": "x", "problem": "sine", "fit": {"L0": 5.0, "L1": 100.0}, "points": points}


def mnist1d() -> dict:
    return {
        "command": "x",
        "protocol": "p",
        "rows": [
            {
                "estimator": e,
                "way": 5,
                "shot": 1,
                "accuracy": 0.6,
                "ci95": 0.02,
                "episodes": 600,
                "train_seconds": 30.0,
                "iterations": 100,
            }
            for e in ("maml", "fo_b_maml_sym")
        ],
        "curves": [
            {"estimator": e, "iteration": i, "seconds": 3.0 * i, "val_accuracy": 0.2 + 0.04 * i}
            for e in ("maml", "fo_b_maml_sym")
            for i in range(1, 11)
        ],
    }


def memory() -> dict:
    rows = [
        {"estimator": e, "channels": c, "inner_steps": 5, "peak_rss_mb": 500.0, "peak_extra_mb": c * 0.1}
        for e in ("maml", "fo_b_maml")
        for c in (32, 64, 128)
    ]
    rows += [
        {"estimator": e, "channels": 64, "inner_steps": t, "peak_rss_mb": 500.0, "peak_extra_mb": t * 1.0}
        for e in ("maml", "fo_b_maml")
        for t in (10, 20, 50)
    ]
    return {"command": "x", "rows": rows}


def write(directory: Path, files: dict[str, dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_text(json.dumps(data))


def test_every_figure_is_a_png_and_missing_files_are_skipped_then_drawn_on_a_rerun(plot, tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "figures"
    write(results, {"bilevel_quadratic.json": quadratic(), "bilevel_smoothness.json": smoothness()})
    written = plot.draw(results, out)
    assert sorted(p.name for p in written) == [
        "bilevel_figure1_left.png",
        "bilevel_figure1_right.png",
        "bilevel_smoothness.png",
    ]
    printed = capsys.readouterr().out
    assert "skipped mnist1d_estimators.json" in printed and "skipped bilevel_memory.json" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    # The right panel has three panels side by side: wider than tall, at the script's DPI.
    width, height = png_size(out / "bilevel_figure1_right.png")
    assert width == round(5.5 * 3 * plot.DPI) and height == round(4.5 * plot.DPI)

    write(results, {"mnist1d_estimators.json": mnist1d(), "bilevel_memory.json": memory()})
    again = plot.draw(results, out)
    assert {p.name for p in again} == {
        "bilevel_figure1_left.png",
        "bilevel_figure1_right.png",
        "bilevel_smoothness.png",
        "mnist1d_accuracy_time.png",
        "bilevel_memory.png",
    }
    for path in again:
        assert all(n > 0 for n in png_size(path))


def test_the_memory_sweeps_hold_the_other_axis_where_it_varies_most(plot):
    rows = memory()["rows"]
    held, channel_sweep = plot._sweep(rows, "channels", "inner_steps")
    assert held == 5 and [r["channels"] for r in channel_sweep] == [32, 32, 64, 64, 128, 128]
    held, step_sweep = plot._sweep(rows, "inner_steps", "channels")
    assert held == 64 and [r["inner_steps"] for r in step_sweep] == [5, 5, 10, 10, 20, 20, 50, 50]


def test_a_file_without_a_key_its_figure_needs_names_the_key(plot, tmp_path):
    data = smoothness()
    del data["fit"]
    write(tmp_path, {"bilevel_smoothness.json": data})
    with pytest.raises(SystemExit, match="'fit'"):
        plot.draw(tmp_path, tmp_path / "figures")


def test_the_claims_table_is_markdown_with_one_row_per_claim(plot):
    table = plot.claims_table({"claims": CLAIMS}).splitlines()
    assert (
        table[0] == "| Claim (Chayti & Jaggi) | Verdict | Criterion | Measured | Inner steps where the errors agree |"
    )
    assert table[1] == "|---|---|---|---|---|"
    assert table[2] == (
        "| A beats B | **holds** | lower error \\| at T=20 | a: 0.1 vs b 0.2<br>a_sym: 0.1 vs b 0.3 | 10, 20 |"
    )
    assert table[3] == "| A is competitive | **does not hold** | within 2x | a 1 vs c 0.1 | none |"
    assert table[4] == "| bias falls faster | **holds** | slopes | slope 1 and 2 | n/a |"
    assert len(table) == 5


def test_the_claims_flag_prints_the_table_and_draws_nothing(tmp_path):
    write(tmp_path, {"bilevel_quadratic.json": quadratic()})
    out = tmp_path / "figures"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--claims", "--results", str(tmp_path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.splitlines()[2].startswith("| A beats B | **holds** |")
    assert not out.exists()
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), "--claims", "--results", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0 and "bilevel_quadratic.py" in missing.stderr
