"""How long the Lab page's quadratic study takes (core/lab), on its default settings, on one CPU thread.

    OMP_NUM_THREADS=1 python bench/lab_speed.py              # writes bench/results/lab_speed.json (~20 s)
    OMP_NUM_THREADS=1 python bench/lab_speed.py --slow       # also the same study through the one-T-at-a-time
                                                             # estimators and torch's outer loop (~1 min more)

The default study: n = 20, 10 tasks, kappa 1000, lambda 0.1, every estimator (iMAML with 2, 5 and 10 CG steps),
relative errors for T = 1..100, and 100 outer iterations at T = 20 with GD, SNGDM and clipped GD over 9-rate grids.
Each repeat is a fresh call; the median and the fastest are reported (the machine may be shared). ``--slow`` times
what the study would cost without the fast paths of core/bilevel/quadratic.py: ``estimate`` for each T and
``run_outer`` (torch optimizers), once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.bilevel import quadratic as qd
from core.lab import QuadraticStudySettings, run_quadratic_study
from core.lab.study import outer_methods

RESULT = ROOT / "bench" / "results" / "lab_speed.json"


def slow_equivalent(settings: QuadraticStudySettings) -> float:
    """Seconds for the same curves through ``estimate`` (one T at a time) and ``run_outer`` (torch steps)."""
    started = time.perf_counter()
    tasks = qd.make_family(settings.family())
    x0 = np.zeros(settings.n)
    rate, lam = settings.inner_rate, settings.lam
    exact = qd.meta_gradient_mean(qd.exact_meta_gradient(tasks, x0, lam))
    for choice in settings.choices():
        for t in range(1, settings.max_inner_steps + 1):
            qd.relative_error(qd.meta_gradient_mean(choice(tasks, x0, t, rate, lam)), exact)
    for _, method, grid in outer_methods(settings, 0.25 * float(np.linalg.norm(exact))):
        for choice in settings.choices():
            qd.run_outer(
                tasks, x0, choice, settings.outer_inner_steps, rate, lam, method, grid, settings.outer_iterations
            )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    settings = QuadraticStudySettings()
    run_quadratic_study(settings)  # imports and first-call costs out of the timings
    seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        run_quadratic_study(settings)
        seconds.append(time.perf_counter() - started)
    result = {
        "command": "OMP_NUM_THREADS=1 python bench/lab_speed.py" + (" --slow" if args.slow else ""),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_average": os.getloadavg(),
        },
        "settings": "QuadraticStudySettings() defaults",
        "repeats": args.repeats,
        "seconds": seconds,
        "median_seconds": statistics.median(seconds),
        "fastest_seconds": min(seconds),
    }
    if args.slow:
        result["slow_equivalent_seconds"] = slow_equivalent(settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"run_quadratic_study on defaults: median {result['median_seconds']:.2f} s, fastest "
        f"{result['fastest_seconds']:.2f} s over {args.repeats} repeats (load average {os.getloadavg()[0]:.1f})"
    )
    if args.slow:
        print(f"the same study one T at a time with torch's outer loop: {result['slow_equivalent_seconds']:.1f} s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
