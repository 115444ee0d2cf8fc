"""The FO-B-MAML paper's Figure 1 as data: meta-gradient estimators on a float64 quadratic family (issue 14).

    OMP_NUM_THREADS=1 python bench/bilevel_quadratic.py        # writes bench/results/bilevel_quadratic.json (~25 s)

Problem (core/bilevel/quadratic.py; shared/reference.md, "The bilevel view"): 10 tasks in n = 20 dimensions, inner
Hessians with condition number kappa = 1000 (eigenvalues log-spaced over [1e-3, 1]), outer Hessians with condition
number 10, lambda = 0.1, inner rate 1 / (L + lambda) (contraction q = 0.908: stable, and 20 steps leave a visible
error), outer start x0 = 0. Every error is against the exact meta-gradient of F(x) = mean_i f_out(y*_i(x)).

- figure1_left: relative error of the family's mean estimate at x0 for T in {1, 2, 5, 10, 20, 50, 100}: MAML,
  FO-MAML, Reptile, iMAML with 2, 5 and 10 CG steps, FO-B-MAML forward and symmetric at delta 1e-2, 1e-3, 1e-4;
  beside them, as a reference curve, FO-B-MAML's delta -> 0 limit at each T (R6: its error falls like T q^T).
- delta_sweep: both FO-B-MAML estimators at a converged inner loop over a range of delta, beside the closed-form
  biases (R4, R5 of core/bilevel/quadratic.py), with fitted slopes and halving ratios.
- figure1_right: outer loss F (exact) and the unrolled loss over 100 outer iterations at T = 20, with GD and its rate
  picked per method from a grid (lowest mean log10(F - F*) over the iterations; the grid, every rate's score and
  final F and the chosen rate are stored), then
  the same with SNGDM (momentum beta 0.9) and clipped GD (threshold a quarter of ||grad F(x0)||). The outer steps are
  training's (core/meta/outer_step.py, torch on float64 tensors); clipping is torch's clip_grad_norm_, whose
  coefficient c / (||g|| + 1e-6) keeps a clipped step 1e-6 / ||g|| (relative) short of c.
- lambda_sweep: the left panel's errors at T = 20 and 100 for other lambdas (same family), to see where the claims
  depend on the problem.
- claims: the paper's four claims, each "holds" or "does not hold" with the numbers (printed as a table too).

No figures are written: a later step draws plotly charts from the json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.bilevel import quadratic as qd
from core.meta.outer_step import OuterStepChoice

RESULT = ROOT / "bench" / "results" / "bilevel_quadratic.json"
SPEC = qd.QuadraticFamilySpec(n=20, tasks=10, kappa=1000.0, smoothness=1.0, outer_kappa=10.0, outer_smoothness=1.0,
                              center_spread=1.0, query_shift=0.5, seed=0)
LAM = 0.1
INNER_STEPS = (1, 2, 5, 10, 20, 50, 100)
CG_STEPS = (2, 5, 10)
DELTAS = (1e-2, 1e-3, 1e-4)
CLAIM_DELTA = 1e-3  # the FO-B-MAML setting the claims (and the right panel) use
RIGHT_STEPS = 20
OUTER_ITERATIONS = 100
GD_GRID = np.geomspace(1e-2, 1e2, 17)  # 4 rates a decade
SNGDM_GRID = np.geomspace(1e-4, 1.0, 17)  # a step length: ||x* - x0|| is about 1
SWEEP_DELTAS = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 1e-7, 1e-8)
LAMBDA_SWEEP = (0.01, 0.05, 0.1, 0.2, 1.0)
COMPETITIVE = 2.0  # "competitive": within this factor of the reference's error or suboptimality


def inner_rate(lam: float) -> float:
    return 1 / (SPEC.smoothness + lam)


def left_choices() -> list[qd.EstimatorChoice]:
    choices = [qd.EstimatorChoice("maml"), qd.EstimatorChoice("fomaml"), qd.EstimatorChoice("reptile")]
    choices += [qd.EstimatorChoice("imaml", k) for k in CG_STEPS]
    choices += [qd.EstimatorChoice(name, d) for name in ("fo_b_maml", "fo_b_maml_sym") for d in DELTAS]
    return choices


def right_choices() -> list[qd.EstimatorChoice]:
    choices = [qd.EstimatorChoice("maml"), qd.EstimatorChoice("fomaml"), qd.EstimatorChoice("reptile")]
    choices += [qd.EstimatorChoice("imaml", k) for k in CG_STEPS]
    return choices + [qd.EstimatorChoice("fo_b_maml", CLAIM_DELTA), qd.EstimatorChoice("fo_b_maml_sym", CLAIM_DELTA)]


def clean(value):
    """JSON-ready: numpy to Python, 7 significant digits, inf and nan to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.7g}") if math.isfinite(value) else None
    return value


def relative_errors(tasks: qd.QuadraticTasks, x0: np.ndarray, lam: float, steps_list, choices) -> dict[str, list]:
    exact = qd.meta_gradient_mean(qd.exact_meta_gradient(tasks, x0, lam))
    return {c.label: [float(qd.relative_error(qd.meta_gradient_mean(c(tasks, x0, t, inner_rate(lam), lam)), exact))
                      for t in steps_list] for c in choices}


def delta_sweep(tasks: qd.QuadraticTasks, x0: np.ndarray) -> dict:
    """Both FO-B-MAML estimators with a converged inner loop, beside the closed-form biases R4 and R5."""
    rate = inner_rate(LAM)
    q = max(float(qd.contraction_factor(tasks, rate, LAM, d).max()) for d in (-max(SWEEP_DELTAS), max(SWEEP_DELTAS)))
    steps = math.ceil(math.log(1e-25) / math.log(q))
    exact = qd.meta_gradient_mean(qd.exact_meta_gradient(tasks, x0, LAM))
    per_task_exact = qd.exact_meta_gradient(tasks, x0, LAM)
    p = np.linalg.solve(tasks.A + LAM * np.eye(tasks.n), tasks.B)  # P = K^-1 B
    eye = np.eye(tasks.n)
    out: dict = {"inner_steps": steps, "deltas": list(SWEEP_DELTAS)}
    for name in ("fo_b_maml", "fo_b_maml_sym"):
        measured, predicted = [], []
        for d in SWEEP_DELTAS:
            estimate = qd.meta_gradient_mean(qd.estimate(name, tasks, x0, steps, rate, LAM, d))
            measured.append(float(qd.relative_error(estimate, exact)))
            if name == "fo_b_maml":  # R4: -delta P (I + delta P)^-1 grad F
                bias = -d * np.einsum("mij,mj->mi", p @ np.linalg.inv(eye + d * p), per_task_exact)
            else:  # R5: delta^2 P^2 (I - delta^2 P^2)^-1 grad F
                p2 = p @ p
                bias = d**2 * np.einsum("mij,mj->mi", p2 @ np.linalg.inv(eye - d**2 * p2), per_task_exact)
            predicted.append(float(np.linalg.norm(bias.mean(axis=0)) / np.linalg.norm(exact)))
        measured_a, predicted_a = np.array(measured), np.array(predicted)
        # the range where the delta bias dominates: the measured error is the closed-form bias to within 10 %
        biased = np.abs(measured_a / predicted_a - 1) < 0.1
        deltas = np.array(SWEEP_DELTAS)[biased]
        slope = float(np.polyfit(np.log(deltas), np.log(measured_a[biased]), 1)[0]) if biased.sum() >= 2 else None
        halving = {}
        for d in (1e-2, 1e-3):
            pair = [float(qd.relative_error(qd.meta_gradient_mean(qd.estimate(name, tasks, x0, steps, rate, LAM, v)),
                                            exact)) for v in (d, d / 2)]
            halving[f"{d:g}"] = pair[0] / pair[1]
        out[name] = {"relative_error": measured, "closed_form_bias": predicted,
                     "bias_dominated": [bool(b) for b in biased],
                     "bias_dominated_range": [float(deltas.min()), float(deltas.max())] if biased.any() else None,
                     "slope": slope, "halving_ratio": halving, "smallest_error": float(min(measured)),
                     "smallest_error_at_delta": SWEEP_DELTAS[int(np.argmin(measured))]}
    return out


def rate_score(exact_loss: np.ndarray, f_star: float) -> np.ndarray:
    """How a rate is judged: the mean over the outer iterations of log10(F - F*), so fast and low both count.

    F - F* is floored at 1e-15 F* (below it F - F* is rounding); a diverged run scores +inf.
    """
    gap = np.maximum(exact_loss[:, 1:] - f_star, 1e-15 * f_star)
    with np.errstate(invalid="ignore"):
        return np.where(np.all(np.isfinite(gap), axis=1), np.mean(np.log10(gap), axis=1), np.inf)


def outer_panel(tasks: qd.QuadraticTasks, x0: np.ndarray, f_star: float, clip: float) -> dict:
    rate = inner_rate(LAM)
    methods = {"gd": (OuterStepChoice.parse("sgd"), GD_GRID),
               "sngdm": (OuterStepChoice.parse("sngdm", {"momentum": 0.9}), SNGDM_GRID),
               "clipped": (OuterStepChoice.parse("clipped", {"max_norm": clip}), GD_GRID)}
    panel: dict = {}
    for kind, (method, grid) in methods.items():
        runs = {}
        for choice in right_choices():
            run = qd.run_outer(tasks, x0, choice, RIGHT_STEPS, rate, LAM, method, grid, OUTER_ITERATIONS)
            score = rate_score(run.exact_loss, f_star)
            best = int(np.argmin(score))
            runs[choice.label] = {
                "rate": float(grid[best]), "rate_index": best, "at_grid_edge": best in (0, len(grid) - 1),
                "final_loss": float(run.exact_loss[best, -1]),
                "final_suboptimality": float(run.exact_loss[best, -1] - f_star),
                "exact_loss": run.exact_loss[best], "unrolled_loss": run.unrolled_loss[best],
                "score_by_rate": score, "final_loss_by_rate": run.exact_loss[:, -1], "diverged_by_rate": run.diverged,
            }
        panel[kind] = {"method": {"outer_step": method.name, "options": method.settings()}, "label": method.label,
                       "grid": grid, "runs": runs}
    return panel


def claims(left: dict, right: dict, sweep: dict, lambda_sweep: dict) -> list[dict]:
    """The paper's four claims, each checked for FO-B-MAML forward and symmetric (delta = CLAIM_DELTA).

    A comparison claim is checked three ways: meta-gradient error at T = 20 (the right panel's T) and at T = 100 (the
    left panel's end), and final F - F* of the right panel with tuned GD. It "holds" when every check passes for
    both estimators; the checks are all stored, with the inner steps where the errors agree with it and its verdict
    on the errors for each lambda of the lambda sweep.
    """
    ours = tuple(qd.EstimatorChoice(n, CLAIM_DELTA).label for n in ("fo_b_maml", "fo_b_maml_sym"))
    column = {t: INNER_STEPS.index(t) for t in (20, 100)}
    sub = {label: r["final_suboptimality"] for label, r in right["gd"]["runs"].items()}

    def compare(others: tuple[str, ...], factor: float | None) -> dict:
        """Per estimator of ours and per check: its value, each other's, and whether it passes against each.

        ``factor`` None: ours must be lower than every other; else within ``factor`` of the best other.
        """
        def row(mine: float, values: dict[str, float]) -> dict:
            if factor:
                against = {k: mine <= factor * min(values.values()) for k in values}
            else:
                against = {k: mine < v for k, v in values.items()}
            return {"fo_b_maml": mine, "others": values, "passes_against": against, "passes": all(against.values())}

        checks = {}
        for o in ours:
            rows = {f"relative_error_T{t}": row(left[o][i], {k: left[k][i] for k in others})
                    for t, i in column.items()}
            rows["gd_final_F_minus_Fstar"] = row(sub[o], {k: sub[k] for k in others})
            checks[o] = rows
        return checks

    def summary(checks: dict) -> str:
        parts = []
        for o, rows in checks.items():
            cells = []
            for name, r in rows.items():
                others = ", ".join(f"{k} {v:.3g}{'' if r['passes_against'][k] else ' (fails)'}"
                                   for k, v in r["others"].items())
                cells.append(f"{name}: {r['fo_b_maml']:.3g} vs {others}")
            parts.append(f"{o}: " + "; ".join(cells))
        return "\n    ".join(parts)

    def steps_where(others: tuple[str, ...], factor: float | None) -> list[int]:
        def ok(o: str, i: int) -> bool:
            best = min(left[k][i] for k in others)
            return left[o][i] <= factor * best if factor else left[o][i] < best
        return [t for i, t in enumerate(INNER_STEPS) if all(ok(o, i) for o in ours)]

    def by_lambda(others: tuple[str, ...], factor: float | None) -> dict:
        out = {}
        for lam, table in lambda_sweep.items():
            out[lam] = {}
            for t in ("T20", "T100"):
                best = min(table[k][t] for k in others)
                out[lam][t] = all((table[o][t] <= factor * best) if factor else (table[o][t] < best) for o in ours)
        return out

    out = []
    for claim, others, factor in (
            ("FO-B-MAML beats FO-MAML and Reptile", ("fomaml", "reptile"), None),
            ("FO-B-MAML is competitive with MAML and iMAML", ("maml", "imaml (cg=10)"), COMPETITIVE),
            ("FO-B-MAML beats iMAML with 2 and 5 CG steps", ("imaml (cg=2)", "imaml (cg=5)"), None)):
        checks = compare(others, factor)
        holds = all(v["passes"] for rows in checks.values() for v in rows.values())
        criterion = (f"within a factor {factor:g} of the better of {' and '.join(others)}" if factor
                     else f"better than each of {' and '.join(others)}")
        out.append({"claim": claim, "holds": holds, "verdict": "holds" if holds else "does not hold",
                    "criterion": criterion + " in meta-gradient error at T=20 and T=100 and in final F - F* with "
                                 f"tuned GD at T={RIGHT_STEPS}; FO-B-MAML forward and symmetric at delta="
                                 f"{CLAIM_DELTA:g}, each",
                    "checks": checks, "summary": summary(checks),
                    "inner_steps_where_the_errors_agree": steps_where(others, factor),
                    "by_lambda_errors": by_lambda(others, factor)})
    slopes = {n: sweep[n]["slope"] for n in ("fo_b_maml", "fo_b_maml_sym")}
    halving = {n: sweep[n]["halving_ratio"] for n in ("fo_b_maml", "fo_b_maml_sym")}
    holds = None not in slopes.values() and slopes["fo_b_maml_sym"] > slopes["fo_b_maml"] + 0.5
    out.append({"claim": "the symmetric estimator's bias falls faster in delta than the forward one's",
                "holds": holds, "verdict": "holds" if holds else "does not hold",
                "criterion": "log-log slope of the relative error against delta where the delta bias dominates "
                             f"(converged inner loop, T={sweep['inner_steps']}), and the ratio of the errors at "
                             "delta and delta/2",
                "checks": {"slopes": slopes, "halving_ratios": halving,
                           "bias_dominated_range": {n: sweep[n]["bias_dominated_range"]
                                                    for n in ("fo_b_maml", "fo_b_maml_sym")}},
                "summary": f"slope forward {slopes['fo_b_maml']:.3f}, symmetric {slopes['fo_b_maml_sym']:.3f}; "
                           "halving delta divides the error by "
                           + ", ".join(f"{r:.3f} (forward, delta={d})" for d, r in halving["fo_b_maml"].items())
                           + " and "
                           + ", ".join(f"{r:.3f} (symmetric, delta={d})" for d, r in halving["fo_b_maml_sym"].items())})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    started = time.perf_counter()
    tasks = qd.make_family(SPEC)
    x0 = np.zeros(SPEC.n)
    rate = inner_rate(LAM)
    x_star, f_star, outer_smoothness = qd.optimal_outer(tasks, LAM)
    grad0 = qd.meta_gradient_mean(qd.exact_meta_gradient(tasks, x0, LAM))
    clip = 0.25 * float(np.linalg.norm(grad0))

    left = relative_errors(tasks, x0, LAM, INNER_STEPS, left_choices())
    sweep = delta_sweep(tasks, x0)
    right = outer_panel(tasks, x0, f_star, clip)
    limit = [float(qd.relative_error(qd.meta_gradient_mean(qd.fo_b_maml_limit(tasks, x0, t, rate, LAM)), grad0))
             for t in INNER_STEPS]
    lambda_sweep, contraction = {}, {}
    for lam in LAMBDA_SWEEP:
        errors = relative_errors(tasks, x0, lam, (20, 100), left_choices())
        lambda_sweep[f"{lam:g}"] = {k: {"T20": v[0], "T100": v[1]} for k, v in errors.items()}
        contraction[f"{lam:g}"] = float(qd.contraction_factor(tasks, inner_rate(lam), lam).max())
    table = claims(left, right, sweep, lambda_sweep)
    wall = time.perf_counter() - started

    result = {
        "command": "OMP_NUM_THREADS=1 python bench/bilevel_quadratic.py",
        "settings": {
            "family": dataclasses.asdict(SPEC), "lambda": LAM, "inner_rate": rate,
            "inner_rate_rule": "1 / (L + lambda)",
            "contraction_factor": float(qd.contraction_factor(tasks, rate, LAM).max()),
            "x0": "zeros", "grad_F_x0_norm": float(np.linalg.norm(grad0)), "F_x0": float(qd.outer_loss(tasks, x0, LAM)),
            "F_star": f_star, "x_star_norm": float(np.linalg.norm(x_star)), "outer_smoothness_L_F": outer_smoothness,
            "relative_error": "||mean_i estimate_i - grad F(x0)|| / ||grad F(x0)||, grad F(x0) exact (R2)",
        },
        "figure1_left": {"inner_steps": list(INNER_STEPS), "relative_error": left,
                         "reference_curves": {"fo_b_maml (delta->0)": limit},
                         "reference_note": "fo_b_maml (delta->0): -lambda dy_T/d delta at delta=0 (R6 of "
                                           "core/bilevel/quadratic.py), what both FO-B-MAML estimators tend to as "
                                           "delta -> 0 at a fixed T; its error falls like T q^T, MAML's like q^T"},
        "delta_sweep": sweep,
        "figure1_right": {"inner_steps": RIGHT_STEPS, "iterations": OUTER_ITERATIONS, "F_star": f_star,
                          "clip_threshold": clip,
                          "rate_choice": "lowest mean over the outer iterations of log10(F - F*) (fast and low)",
                          "outer": right},
        "lambda_sweep": {"lambdas": list(LAMBDA_SWEEP), "inner_rate_rule": "1 / (L + lambda)",
                         "contraction_factor": contraction, "relative_error": lambda_sweep},
        "claims": table,
        "wall_seconds": wall,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(clean(result), indent=1) + "\n")

    print(f"kappa={SPEC.kappa:g} lambda={LAM:g} n={SPEC.n} tasks={SPEC.tasks} inner_rate={rate:.4g} "
          f"q={result['settings']['contraction_factor']:.4f}  F(x0)={result['settings']['F_x0']:.4g} "
          f"F*={f_star:.4g}")
    print("\nrelative error of the meta-gradient at x0")
    print(f"{'estimator':30s}" + "".join(f"{f'T={t}':>10s}" for t in INNER_STEPS))
    for label, values in [*left.items(), ("fo_b_maml (delta->0, R6)", limit)]:
        print(f"{label:30s}" + "".join(f"{v:10.2e}" for v in values))
    print(f"\nT={RIGHT_STEPS}, {OUTER_ITERATIONS} outer iterations: final F - F* (chosen rate)")
    print(f"{'estimator':30s}" + "".join(f"{right[k]['label']:>26s}" for k in right))
    for label in right["gd"]["runs"]:
        cells = []
        for kind in right:
            run = right[kind]["runs"][label]
            cells.append(f"{run['final_suboptimality']:.2e} ({run['rate']:.3g}{'*' if run['at_grid_edge'] else ''})")
        print(f"{label:30s}" + "".join(f"{c:>26s}" for c in cells))
    print("(* the chosen rate is at the edge of its grid)")
    print(f"\ndelta sweep at T={sweep['inner_steps']}: slope forward {sweep['fo_b_maml']['slope']:.3f}, symmetric "
          f"{sweep['fo_b_maml_sym']['slope']:.3f}; halving ratios forward {sweep['fo_b_maml']['halving_ratio']}, "
          f"symmetric {sweep['fo_b_maml_sym']['halving_ratio']}")
    print("\nclaims")
    for claim in table:
        print(f"- {claim['claim']}: {claim['verdict'].upper()}\n    criterion: {claim['criterion']}\n"
              f"    {claim['summary']}")
        if "inner_steps_where_the_errors_agree" in claim:
            print(f"    inner steps where the errors agree with it: {claim['inner_steps_where_the_errors_agree']}; "
                  f"by lambda: {json.dumps(claim['by_lambda_errors'])}")
    print(f"\nwrote {args.out} in {wall:.1f} s")


if __name__ == "__main__":
    main()
