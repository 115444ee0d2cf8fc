"""The MAML objective is not globally smooth, measured: local smoothness against the meta-gradient's norm (issue 14).

    OMP_NUM_THREADS=1 python bench/bilevel_smoothness.py     # writes bench/results/bilevel_smoothness.json (~2 min)

Chayti and Jaggi's finding (core/bilevel/smoothness.py, S1): ``||hessian F(x)|| <= L0 + L1 ||grad F(x)||``. Here it is
measured on a problem that is not quadratic, in float64 on one thread:

- problem: sine regression (core/data/sine.py, ALFA's ranges), a FIXED batch of 25 tasks (indices 0-24, seed 0),
  10 support and 10 query points each; the 2x40 ReLU MLP (models/backbones/mlp.py, 1761 weights); the inner loop is
  5 SGD steps at 0.01 (configs/sine: MAML's sine setting); F(x) = the mean query MSE after them, second order (S2).
- trajectories: meta-training with exact meta-gradients of that F from the learner's seeded initialisation x0
  scaled by 1, 1.75, 2, 2.25 and 2.5 (scaling a ReLU network's weights by c scales its output by about c^3 and
  the inner loop's curvature with it, so the starts' meta-gradient norms span 1.5 to 7e7) with Adam at 1e-3 (the
  sine configs' outer step), and from 2.5 x0 with SNGDM (rate 1e-2, momentum 0.9), 300 outer iterations each,
  measured every 20.
- at each point: ||grad F||, the meta-Hessian's spectral norm and both extreme eigenvalues (Lanczos on
  Hessian-vector products, each certified by its measured residual), and the secant ratio along the gradient.
- fit: L0 and L1 >= 0 by least squares, of the logarithms (a point off by a factor counts alike wherever it lies:
  the headline "fit") and absolute (decided by the largest points), with Pearson's correlation of (||grad F||, L) and of their
  logarithms, the log-log slope, and how far the points lie from the line (measured / fitted); per trajectory too.
- check: the first and last point of each trajectory measured again with 80 Lanczos products from another start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.bilevel.smoothness import (
    MeasureSettings,
    TrajectoryPoint,
    UnrolledMAML,
    fit_smoothness,
    local_smoothness,
    smoothness_along_trajectory,
)
from core.data.sine import SineTaskFamily
from core.learner import Learner
from core.meta.outer_step import OuterStepChoice

RESULT = ROOT / "bench" / "results" / "bilevel_smoothness.json"
COMMAND = "OMP_NUM_THREADS=1 python bench/bilevel_smoothness.py"


@dataclass(frozen=True)
class Problem:
    """The fixed meta-objective (S2) every trajectory descends."""

    tasks: int = 25
    task_seed: int = 0
    k_shot: int = 10
    n_query: int = 10
    hidden: tuple[int, ...] = (40, 40)
    inner_lr: float = 0.01
    inner_steps: int = 5
    init_seed: int = 0

    def describe(self) -> str:
        return (
            f"sine regression (ALFA's ranges), a fixed batch of {self.tasks} tasks (seed {self.task_seed}), "
            f"{self.k_shot} support / {self.n_query} query points; MLP {'x'.join(map(str, self.hidden))} ReLU; "
            f"{self.inner_steps} inner SGD steps at {self.inner_lr:g}; F = mean query MSE after them, second "
            "order, float64"
        )


@dataclass(frozen=True)
class Trajectory:
    """One meta-training run: the start ``scale * x0``, the outer step and its rate."""

    scale: float
    outer_step: str
    lr: float
    options: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.outer_step} {self.lr:g}, start {self.scale:g} x0"


PROBLEM = Problem()
TRAJECTORIES = (
    Trajectory(1.0, "adam", 1e-3),
    Trajectory(1.75, "adam", 1e-3),
    Trajectory(2.0, "adam", 1e-3),
    Trajectory(2.25, "adam", 1e-3),
    Trajectory(2.5, "adam", 1e-3),
    Trajectory(2.5, "sngdm", 1e-2, (("momentum", 0.9),)),
)
ITERATIONS = 300
EVERY = 20
SETTINGS = MeasureSettings()
CHECK_SETTINGS = MeasureSettings(min_steps=80, max_steps=80)


def objective(problem: Problem) -> UnrolledMAML:
    learner = Learner(
        {"name": "mlp", "hidden": list(problem.hidden), "n_classes": 1},
        {"name": "sgd", "lr": problem.inner_lr},
        task_kind="regression",
        seed=problem.init_seed,
    ).double()
    tasks = SineTaskFamily().batch(0, problem.tasks, problem.k_shot, problem.n_query, seed=problem.task_seed)
    return UnrolledMAML.of(learner, tasks, problem.inner_steps)


def finite(value: float) -> float | None:
    return float(f"{value:.7g}") if math.isfinite(value) else None


def point_row(point: TrajectoryPoint) -> dict:
    m = point.measured
    row: dict = {"trajectory": point.trajectory, "iteration": point.iteration}
    return row | {k: (v if isinstance(v, bool | int) else finite(v)) for k, v in dataclasses.asdict(m).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    meta_objective = objective(PROBLEM)
    x0 = meta_objective.initial_point()
    points: list[TrajectoryPoint] = []
    for trajectory in TRAJECTORIES:
        tick = time.perf_counter()
        step = OuterStepChoice.parse(trajectory.outer_step, dict(trajectory.options))
        found = smoothness_along_trajectory(
            meta_objective, trajectory.scale * x0, step, trajectory.lr, ITERATIONS, EVERY, trajectory.label, SETTINGS
        )
        points += found
        first, last = found[0].measured, found[-1].measured
        print(
            f"{trajectory.label:28s} ||grad F|| {first.meta_grad_norm:9.3g} -> {last.meta_grad_norm:9.3g}   "
            f"L {first.smoothness:9.3g} -> {last.smoothness:9.3g}   F {first.loss:9.3g} -> {last.loss:9.3g}   "
            f"({time.perf_counter() - tick:.0f} s)",
            flush=True,
        )
    norms = [p.measured.meta_grad_norm for p in points]
    smoothness = [p.measured.smoothness for p in points]
    logs = fit_smoothness(norms, smoothness, "log")
    absolute = fit_smoothness(norms, smoothness, "absolute")
    per_trajectory = {}
    for trajectory in TRAJECTORIES:
        mine = [p.measured for p in points if p.trajectory == trajectory.label]
        per_trajectory[trajectory.label] = dataclasses.asdict(
            fit_smoothness([m.meta_grad_norm for m in mine], [m.smoothness for m in mine], "log")
        )
    # The Lanczos answers checked: the first and last point of every trajectory measured again from another start
    # vector with a Krylov space four times larger (80 products, no early stop).
    checks = []
    for trajectory in TRAJECTORIES:
        mine = [p for p in points if p.trajectory == trajectory.label]
        for point in (mine[0], mine[-1]):
            again = local_smoothness(meta_objective, point.x, CHECK_SETTINGS, seed=1)
            checks.append(
                {
                    "trajectory": point.trajectory,
                    "iteration": point.iteration,
                    "smoothness": point.measured.smoothness,
                    "smoothness_80_steps": again.smoothness,
                    "relative_difference": abs(again.smoothness - point.measured.smoothness) / again.smoothness,
                }
            )
    worst_check = max(c["relative_difference"] for c in checks)
    wall = time.perf_counter() - started

    result = {
        "command": COMMAND,
        "problem": PROBLEM.describe(),
        "problem_settings": dataclasses.asdict(PROBLEM),
        "trajectories": [dataclasses.asdict(t) | {"label": t.label} for t in TRAJECTORIES],
        "iterations": ITERATIONS,
        "every": EVERY,
        "measure": dataclasses.asdict(SETTINGS),
        "definitions": {
            "smoothness": "||hessian F(x)||_2 = max |eigenvalue| of the meta-Hessian, Lanczos with full "
            "reorthogonalisation on Hessian-vector products (double backward through the second-order F)",
            "residual": "||H u - theta u|| of the dominant Ritz pair, measured: an eigenvalue lies within it",
            "secant_along_gradient": "||grad F(x + h d) - grad F(x)|| / h, d = grad F / ||grad F||, "
            "h = secant_step * max(1, ||x||)",
            "fit": "least squares of log(smoothness) = log(L0 + L1 ||grad F||) with L0, L1 >= 0 (a point off by a "
            "factor counts alike wherever it lies); ratio_range: the smallest and largest measured / fitted",
            "fit_absolute": "the same, plain (absolute) residuals",
        },
        "fit": dataclasses.asdict(logs),
        "fit_absolute": dataclasses.asdict(absolute),
        "fit_per_trajectory": per_trajectory,
        "all_converged": all(p.measured.converged for p in points),
        "lanczos_check": {
            "settings": dataclasses.asdict(CHECK_SETTINGS),
            "seed": 1,
            "points": checks,
            "largest_relative_difference": worst_check,
        },
        "points": [point_row(p) for p in points],
        "wall_seconds": round(wall, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"\n{len(points)} points, ||grad F|| from {min(norms):.3g} to {max(norms):.3g}, smoothness from "
        f"{min(smoothness):.3g} to {max(smoothness):.3g}; every Lanczos run converged: {result['all_converged']}"
    )
    for fit in (logs, absolute):
        print(
            f"fit ({fit.weighting}): L0 = {fit.L0:.4g}, L1 = {fit.L1:.4g}; correlation {fit.correlation:.3f}, "
            f"of the logs {fit.log_correlation:.3f}, log-log slope {fit.log_slope:.3f}"
        )
        print(f"    measured / fitted from {fit.ratio_range[0]:.3g} to {fit.ratio_range[1]:.3g}")
    print(
        f"Lanczos check (80 products, another start) at {len(checks)} points: largest relative difference "
        f"{worst_check:.2g}"
    )
    print(f"wrote {args.out} in {wall:.0f} s")


if __name__ == "__main__":
    main()
