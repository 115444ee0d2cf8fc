"""The Lab's quadratic study (core/lab): settings validation, the fast paths against the quadratic module's own
functions, the study's numbers against the closed forms (R1-R6 of core/bilevel/quadratic.py), the claims logic, the
JSON round trip, and the bench result readers with missing, partial and broken files."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.bilevel import quadratic as qd
from core.lab import DeltaSweep, QuadraticStudy, QuadraticStudySettings, check_claims, rate_score, run_quadratic_study
from core.lab.bench_results import BENCH_FILES, load_bench_file
from core.meta.outer_step import OuterStepChoice
from tests.tolerances import gamma, unit_roundoff

U = unit_roundoff(torch.float64)
SMALL = QuadraticStudySettings(
    n=6, tasks=3, kappa=50.0, max_inner_steps=40, outer_inner_steps=10, outer_iterations=30, cg_steps=(2, 5, 6)
)
FAMILY = qd.QuadraticFamilySpec(n=6, tasks=3, kappa=50.0, seed=1)
LAM = 0.1
RATE = 1 / (1 + LAM)


@pytest.fixture(scope="module")
def tasks() -> qd.QuadraticTasks:
    return qd.make_family(FAMILY)


@pytest.fixture(scope="module")
def study() -> QuadraticStudy:
    return run_quadratic_study(SMALL)


# ------------------------------------------------------------------------------------------------------ settings


def test_the_defaults_are_the_bench_problem_and_the_rate_is_relative() -> None:
    settings = QuadraticStudySettings()
    assert (settings.kappa, settings.lam, settings.n, settings.max_inner_steps, settings.outer_inner_steps) == (
        1000.0,
        0.1,
        20,
        100,
        20,
    )
    assert settings.inner_rate == 1 / 1.1
    assert QuadraticStudySettings(inner_rate_fraction=0.5, lam=1.0).inner_rate == 0.25
    assert [c.label for c in settings.choices()] == [
        "maml",
        "fomaml",
        "reptile",
        "imaml (cg=2)",
        "imaml (cg=5)",
        "imaml (cg=10)",
        "fo_b_maml (delta=0.001)",
        "fo_b_maml_sym (delta=0.001)",
    ]
    assert [c.label for c in QuadraticStudySettings(estimators=("imaml", "maml"), cg_steps=(7, 3)).choices()] == [
        "maml",
        "imaml (cg=3)",
        "imaml (cg=7)",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kappa": 0.5}, "kappa must be a number from 1 to 1e+08, not 0.5"),
        ({"kappa": float("nan")}, "kappa must be a number"),
        ({"lam": 0.0}, "lam must be a number above 0 to 100, not 0.0"),
        ({"n": 1}, "n must be a whole number from 2 to 200, not 1"),
        ({"n": 6.0}, "n must be a whole number from 2 to 200, not 6.0"),
        ({"tasks": True}, "tasks must be a whole number"),
        ({"inner_rate_fraction": 2.0}, "inner_rate_fraction must be a number above 0 below 2, not 2.0"),
        ({"delta": 0.0}, "delta must be a number above 0 to 1"),
        ({"delta": 0.2, "lam": 0.1, "kappa": 10.0}, "delta must be below L/kappa + lambda = 0.2"),
        ({"cg_steps": ()}, "cg_steps must be different whole numbers"),
        ({"cg_steps": (2, 2)}, "cg_steps must be different whole numbers"),
        ({"estimators": ("maml", "bogus")}, "unknown estimator(s) 'bogus'"),
        ({"estimators": ()}, "choose at least one estimator"),
        ({"estimators": ("maml", "maml")}, "each estimator once"),
        ({"max_inner_steps": 0}, "max_inner_steps must be a whole number from 1 to 1000, not 0"),
        (
            {"outer_inner_steps": 30, "max_inner_steps": 20},
            "outer_inner_steps (30) must be at most max_inner_steps (20)",
        ),
        ({"outer_iterations": 5000}, "outer_iterations must be a whole number from 1 to 2000"),
        ({"sngdm": 1}, "sngdm must be true or false"),
        ({"seed": -1}, "seed must be a whole number"),
    ],
)
def test_a_bad_setting_is_named_with_its_range(changes, message) -> None:
    with pytest.raises(ValueError, match="invalid study settings: ") as raised:
        QuadraticStudySettings(**changes)
    assert message in str(raised.value)


def test_every_problem_is_listed_at_once_and_cg_steps_only_matter_for_imaml() -> None:
    with pytest.raises(ValueError) as raised:
        QuadraticStudySettings(kappa=0.0, n=0, seed=-1)
    assert str(raised.value).count(";") == 2
    assert QuadraticStudySettings(estimators=("maml",), cg_steps=()).choices() == [qd.EstimatorChoice("maml")]


# ------------------------------------------------------------------------------------------------------ fast paths


@pytest.mark.parametrize(
    ("name", "option"),
    [("fomaml", None), ("reptile", None), ("imaml", 3), ("fo_b_maml", 1e-3), ("fo_b_maml_sym", 1e-3)],
)
def test_every_step_at_once_is_the_same_operations_as_one_step_count_at_a_time(tasks, name, option) -> None:
    x = np.linspace(-0.5, 0.5, tasks.n)
    every = qd.estimates_every_step(name, tasks, x, 25, RATE, LAM, option)
    one_at_a_time = np.stack([qd.estimate(name, tasks, x, t, RATE, LAM, option) for t in range(1, 26)])
    np.testing.assert_array_equal(every, one_at_a_time)


def test_every_step_maml_is_the_backward_pass_to_rounding(tasks) -> None:
    """The closed form J_T^T g (R3) against the backward pass through T steps: both are chains of about
    ``T (2n + 8)`` rounded operations on vectors no longer than ``(1 + T) ||g||`` (``||M|| < 1``), so they agree to
    ``gamma(T (2n + 8)) (1 + T) ||g||``."""
    x = np.linspace(-0.5, 0.5, tasks.n)
    every = qd.estimates_every_step("maml", tasks, x, 25, RATE, LAM)
    for t in range(1, 26):
        backward = qd.maml(tasks, x, t, RATE, LAM)
        g = np.linalg.norm(qd.fomaml(tasks, x, t, RATE, LAM), axis=-1)
        bound = gamma(t * (2 * tasks.n + 8), torch.float64) * (1 + t) * g
        assert np.all(np.linalg.norm(every[t - 1] - backward, axis=-1) <= bound), t


def test_every_step_refuses_what_estimate_refuses(tasks) -> None:
    with pytest.raises(ValueError, match="unknown estimator"):
        qd.estimates_every_step("bogus", tasks, np.zeros(tasks.n), 3, RATE, LAM)
    with pytest.raises(ValueError, match="needs its delta"):
        qd.estimates_every_step("fo_b_maml", tasks, np.zeros(tasks.n), 3, RATE, LAM)
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        qd.estimates_every_step("maml", tasks, np.zeros(tasks.n), 0, RATE, LAM)


@pytest.mark.parametrize(
    "method",
    [
        OuterStepChoice.parse("sgd"),
        OuterStepChoice.parse("sgd", {"momentum": 0.5}),
        OuterStepChoice.parse("clipped", {"max_norm": 0.02}),
        OuterStepChoice.parse("normalized"),
        OuterStepChoice.parse("sngdm", {"momentum": 0.9}),
    ],
    ids=lambda m: m.label,
)
@pytest.mark.parametrize(
    "choice",
    [qd.EstimatorChoice("maml"), qd.EstimatorChoice("imaml", 2), qd.EstimatorChoice("fo_b_maml_sym", 1e-3)],
    ids=lambda c: c.label,
)
def test_the_numpy_outer_loop_is_training_s_torch_steps_to_rounding(tasks, method, choice) -> None:
    """run_outer_fast against run_outer (torch optimizers), a grid that diverges at its top rates included.

    Tolerances: the estimate is built once as an affine map of x (iMAML's right-hand side) and evaluated there, which
    reorders its rounding; FO-B-MAML's estimate is a difference of inner solves over delta, so its rounding is
    ``U |y| / delta`` relative, which 30 outer steps carry along (normalized steps near the minimum magnify a
    direction's error most): 1e-10 relative, and ``1e5 U / delta`` for FO-B-MAML.
    """
    rates = np.geomspace(1e-2, 1e2, 5) if method.name in ("sgd", "clipped") else np.geomspace(1e-3, 1.0, 4)
    x0 = np.full(tasks.n, 0.3)
    torch_run = qd.run_outer(tasks, x0, choice, 5, RATE, LAM, method, rates, 30)
    fast = qd.run_outer_fast(tasks, x0, choice, 5, RATE, LAM, method, rates, 30)
    tolerance = 1e5 * U / choice.option if choice.name == "fo_b_maml_sym" else 1e-10
    np.testing.assert_array_equal(fast.diverged, torch_run.diverged)
    np.testing.assert_array_equal(np.isfinite(fast.exact_loss), np.isfinite(torch_run.exact_loss))
    finite = np.isfinite(torch_run.exact_loss)
    np.testing.assert_allclose(fast.exact_loss[finite], torch_run.exact_loss[finite], rtol=tolerance)
    np.testing.assert_allclose(fast.unrolled_loss[finite], torch_run.unrolled_loss[finite], rtol=tolerance)
    np.testing.assert_allclose(fast.final_x, torch_run.final_x, rtol=tolerance, atol=tolerance)
    if method.name == "sgd" and not method.options.momentum:
        assert fast.diverged.any()  # the check above covered a run that blew up


def test_the_fast_outer_loop_has_no_adam() -> None:
    family = qd.make_family(FAMILY)
    with pytest.raises(ValueError, match="run_outer_fast has no 'adam' step"):
        qd.run_outer_fast(
            family, np.zeros(6), qd.EstimatorChoice("maml"), 2, RATE, LAM, OuterStepChoice.parse("adam"), [0.1], 2
        )


def test_the_perturbed_solution_and_the_bias_closed_forms(tasks) -> None:
    x = np.linspace(-0.5, 0.5, tasks.n)
    np.testing.assert_allclose(
        qd.perturbed_inner_solution(tasks, x, LAM, 0.0), qd.inner_solution(tasks, x, LAM), rtol=1e-12
    )
    converged = qd.inner_solve(tasks, x, 2000, RATE, LAM, 0.01)
    np.testing.assert_allclose(qd.perturbed_inner_solution(tasks, x, LAM, 0.01), converged, rtol=1e-10)
    exact = qd.exact_meta_gradient(tasks, x, LAM)
    for symmetric, name in ((False, "fo_b_maml"), (True, "fo_b_maml_sym")):
        estimate = qd.estimate(name, tasks, x, 2000, RATE, LAM, 0.01)
        np.testing.assert_allclose(
            estimate - exact, qd.fo_b_maml_bias(tasks, x, LAM, 0.01, symmetric), rtol=1e-6, atol=1e-12
        )


# ------------------------------------------------------------------------------------------------------ the study


def test_the_left_panel_is_each_estimator_s_closed_form(study) -> None:
    family = qd.make_family(SMALL.family())
    x0 = np.zeros(SMALL.n)
    exact = qd.meta_gradient_mean(qd.exact_meta_gradient(family, x0, SMALL.lam))
    assert study.inner_steps == list(range(1, 41)) and study.f_x0 == float(qd.outer_loss(family, x0, SMALL.lam))
    for t in (1, 10, 40):
        y_t = qd.unrolled_iterate(family, x0, t, SMALL.inner_rate, SMALL.lam)  # R3
        closed = {
            "maml": qd.unrolled_gradient(family, x0, t, SMALL.inner_rate, SMALL.lam),
            "fomaml": qd.outer_gradient(family, y_t),
            "reptile": (x0 - y_t) / (t * SMALL.inner_rate),
            # CG with n steps solves the n-dimensional system: R2 at y_T
            "imaml (cg=6)": np.linalg.solve(
                np.eye(SMALL.n) + family.A / SMALL.lam, qd.outer_gradient(family, y_t)[..., None]
            )[..., 0],
        }
        for label, per_task in closed.items():
            expected = float(qd.relative_error(qd.meta_gradient_mean(per_task), exact))
            assert study.error_curve(label).relative_error[t - 1] == pytest.approx(expected, rel=1e-9), (label, t)
    # FO-B-MAML: its own function at T = 40 (the study's value is that estimate's error), and within its second-order
    # distance of its delta -> 0 limit (R6)
    sym = qd.meta_gradient_mean(qd.fo_b_maml_sym(family, x0, 40, SMALL.inner_rate, SMALL.lam, 1e-3))
    shown = study.error_curve("fo_b_maml_sym (delta=0.001)").relative_error[-1]
    assert shown == pytest.approx(float(qd.relative_error(sym, exact)), rel=1e-12)
    limit = qd.meta_gradient_mean(qd.fo_b_maml_limit(family, x0, 40, SMALL.inner_rate, SMALL.lam))
    distance = float(np.linalg.norm(sym - limit) / np.linalg.norm(exact))
    assert abs(shown - float(qd.relative_error(limit, exact))) <= distance < 1e-3


def test_the_right_panel_runs_training_s_steps_at_the_best_rate_of_its_grid(study) -> None:
    family = qd.make_family(SMALL.family())
    x0 = np.zeros(SMALL.n)
    _, f_star, _ = qd.optimal_outer(family, SMALL.lam)
    assert study.f_star == f_star
    assert [p.method for p in study.outer] == ["gd", "sngdm", "clipped"]
    gd = study.panel("gd")
    for curve in gd.curves:
        scores = [math.inf if s is None else s for s in curve.score_by_rate]
        assert curve.rate_index == int(np.argmin(scores)) and curve.rate == gd.grid[curve.rate_index]
        assert curve.final_suboptimality == curve.loss[-1] - f_star
        assert study.suboptimality(curve)[-1] == curve.final_suboptimality
    maml = gd.curves[0]
    torch_run = qd.run_outer(
        family,
        x0,
        qd.EstimatorChoice("maml"),
        SMALL.outer_inner_steps,
        SMALL.inner_rate,
        SMALL.lam,
        OuterStepChoice.parse("sgd"),
        [maml.rate],
        SMALL.outer_iterations,
    )
    np.testing.assert_allclose(maml.loss, torch_run.exact_loss[0], rtol=1e-10)
    clip = study.panel("clipped").label
    assert clip == f"clipped (max_norm={0.25 * study.grad_norm_x0:g})"


def test_the_delta_sweep_has_the_closed_form_slopes(study) -> None:
    sweep = study.delta_sweep
    assert max(sweep.deltas) < 0.5 * (1 / SMALL.kappa + SMALL.lam)
    for measured, bias in ((sweep.forward_error, sweep.forward_bias), (sweep.symmetric_error, sweep.symmetric_bias)):
        dominated = [(m, b) for m, b, d in zip(measured, bias, sweep.deltas, strict=True) if d >= 1e-3]
        assert all(m == pytest.approx(b, rel=1e-6) for m, b in dominated)
    # R4 is first order in delta, R5 second order
    assert sweep.forward_slope == pytest.approx(1, abs=0.05) and sweep.symmetric_slope == pytest.approx(2, abs=0.05)
    assert sweep.forward_halving_ratio == pytest.approx(2, rel=0.02)
    assert sweep.symmetric_halving_ratio == pytest.approx(4, rel=0.02)
    assert study.claims[-1].verdict == "holds"


def test_a_study_round_trips_through_json_exactly(study) -> None:
    settings, results = study.to_json_data()
    text = json.dumps({"settings": settings, "results": results}, allow_nan=False)
    back = json.loads(text)
    again = QuadraticStudy.from_json_data(back["settings"], back["results"], study.wall_seconds)
    assert again == study
    broken = dict(back["results"], outer=[{"method": "gd"}])
    with pytest.raises(ValueError, match=r"study.outer\[0\]: missing label, grid, curves"):
        QuadraticStudy.from_json_data(back["settings"], broken, 1.0)
    with pytest.raises(ValueError, match="invalid study settings"):
        QuadraticStudy.from_json_data(dict(back["settings"], n=1), back["results"], 1.0)


def test_only_the_chosen_outer_steps_are_run() -> None:
    small = run_quadratic_study(
        dataclasses.replace(
            SMALL,
            estimators=("maml",),
            sngdm=False,
            clipped=False,
            max_inner_steps=10,
            outer_inner_steps=5,
            outer_iterations=5,
        )
    )
    assert [p.method for p in small.outer] == ["gd"] and [c.label for c in small.errors] == ["maml"]
    assert [c.verdict for c in small.claims[:3]] == ["not checked"] * 3


def test_rate_score_is_the_mean_log_gap_and_a_diverged_run_loses() -> None:
    losses = np.array([[2.0, 1.1, 1.01], [2.0, 1.5, np.inf]])
    score = rate_score(losses, 1.0)
    assert score[0] == pytest.approx((math.log10(0.1) + math.log10(0.01)) / 2) and score[1] == math.inf
    assert rate_score(np.array([[2.0, 1.0]]), 1.0)[0] == pytest.approx(-15)  # floored at 1e-15 F*


# ------------------------------------------------------------------------------------------------------ the claims

SWEEP = DeltaSweep(
    deltas=[1e-2, 1e-3],
    forward_error=[1e-2, 1e-3],
    symmetric_error=[1e-4, 1e-6],
    forward_bias=[1e-2, 1e-3],
    symmetric_bias=[1e-4, 1e-6],
    forward_slope=1.0,
    symmetric_slope=2.0,
    halving_delta=1e-3,
    forward_halving_ratio=2.0,
    symmetric_halving_ratio=4.0,
)
STEPS = [1, 2, 3]


def errors(**values) -> dict:
    base = {
        "maml": [0.5, 0.1, 0.01],
        "fomaml": [0.6, 0.4, 0.4],
        "reptile": [0.9, 0.9, 0.9],
        "imaml (cg=2)": [0.3, 0.2, 0.2],
        "imaml (cg=5)": [0.3, 0.1, 0.05],
        "imaml (cg=10)": [0.3, 0.1, 0.02],
        "fo_b_maml (delta=0.001)": [0.5, 0.09, 0.015],
    }
    return {**base, **values}


def suboptimality(**values) -> dict:
    base = {
        "maml": 1e-6,
        "fomaml": 1e-3,
        "reptile": 1e-2,
        "imaml (cg=2)": 1e-4,
        "imaml (cg=5)": 1e-5,
        "imaml (cg=10)": 1e-6,
        "fo_b_maml (delta=0.001)": 1.5e-6,
    }
    return {**base, **values}


def verdicts(claims) -> list[str]:
    return [c.verdict for c in claims]


def test_the_claims_hold_or_not_from_the_numbers() -> None:
    claims = check_claims(STEPS, errors(), suboptimality(), SWEEP, 2)
    assert verdicts(claims) == ["holds", "holds", "holds", "holds"]
    assert claims[1].criterion.startswith("within a factor 2 of the better of maml and imaml (cg=10)")
    assert "error at T=2: 0.09 vs maml 0.1, imaml (cg=10) 0.1" in claims[1].evidence
    # competitive fails once FO-B-MAML is more than twice the better reference at one check
    claims = check_claims(STEPS, errors(**{"fo_b_maml (delta=0.001)": [0.5, 0.09, 0.03]}), suboptimality(), SWEEP, 2)
    assert verdicts(claims)[1:3] == ["does not hold", "holds"]
    assert "error at T=3: 0.03 vs maml 0.01, imaml (cg=10) 0.02 (fails)" in claims[1].evidence
    # a diverged FO-B-MAML run loses every comparison in F - F*; a diverged reference loses to it
    claims = check_claims(STEPS, errors(), suboptimality(**{"fo_b_maml (delta=0.001)": None}), SWEEP, 2)
    assert verdicts(claims)[:3] == ["does not hold"] * 3 and "GD final F - F*: diverged" in claims[0].evidence
    claims = check_claims(STEPS, errors(), suboptimality(fomaml=None), SWEEP, 2)
    assert verdicts(claims)[0] == "holds"


def test_a_claim_without_its_estimators_is_not_checked() -> None:
    no_imaml = {k: v for k, v in errors().items() if not k.startswith("imaml (cg=5")}
    claims = check_claims(STEPS, no_imaml, suboptimality(), SWEEP, 2)
    assert verdicts(claims)[2] == "not checked" and "imaml with cg_steps 2 and 5" in claims[2].evidence
    ours_missing = {k: v for k, v in errors().items() if not k.startswith("fo_b")}
    assert verdicts(check_claims(STEPS, ours_missing, suboptimality(), SWEEP, 2))[:3] == ["not checked"] * 3


def test_the_slope_claim() -> None:
    assert check_claims(STEPS, errors(), suboptimality(), SWEEP, 2)[3].verdict == "holds"
    close = dataclasses.replace(SWEEP, symmetric_slope=1.3)
    assert check_claims(STEPS, errors(), suboptimality(), close, 2)[3].verdict == "does not hold"
    unfitted = dataclasses.replace(SWEEP, forward_slope=None)
    claim = check_claims(STEPS, errors(), suboptimality(), unfitted, 2)[3]
    assert claim.verdict == "not checked" and claim.evidence.startswith("fewer than two deltas")


# ------------------------------------------------------------------------------------------------------ bench files


def write(root: Path, key: str, data) -> None:
    path = root / BENCH_FILES[key].path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def test_a_missing_file_is_not_measured_yet_with_its_command(tmp_path) -> None:
    for key, spec in BENCH_FILES.items():
        loaded = load_bench_file(key, tmp_path)
        assert loaded.result is None and not loaded.measured
        assert loaded.problem == f"not measured yet: {spec.command}"
    with pytest.raises(ValueError, match="unknown bench result"):
        load_bench_file("bogus", tmp_path)


def test_each_file_reads_into_its_records(tmp_path) -> None:
    write(
        tmp_path,
        "smoothness",
        {
            "command": "c1",
            "problem": "sine",
            "fit": {"L0": 1, "L1": 2.5},
            "points": [
                {"trajectory": "maml", "iteration": 3, "meta_grad_norm": 0.5, "smoothness": 4.0, "extra": "ignored"}
            ],
        },
    )
    write(
        tmp_path,
        "mnist1d",
        {
            "command": "c2",
            "protocol": "5-way",
            "rows": [
                {
                    "estimator": "maml",
                    "way": 5,
                    "shot": 1,
                    "accuracy": 0.5,
                    "ci95": 0.01,
                    "episodes": 600,
                    "train_seconds": 10.0,
                    "iterations": 100,
                }
            ],
            "curves": [{"estimator": "maml", "iteration": 10, "seconds": 1.5, "val_accuracy": 0.4}],
        },
    )
    write(
        tmp_path,
        "memory",
        {
            "command": "c3",
            "rows": [
                {
                    "estimator": "fo_b_maml",
                    "channels": 64,
                    "inner_steps": 5,
                    "peak_rss_mb": 300.0,
                    "peak_extra_mb": 12.5,
                }
            ],
        },
    )
    write(
        tmp_path,
        "omniglot",
        {
            "rows": [
                {
                    "estimator": "imaml",
                    "checkpoint": "a.safetensors",
                    "way": 5,
                    "shot": 1,
                    "protocol": "heldout",
                    "accuracy": 0.9,
                    "ci95": 0.01,
                    "episodes": 600,
                    "command": "c4",
                }
            ],
            "cost": [{"estimator": "imaml", "seconds_per_iteration": 0.2, "peak_rss_mb": 900, "command": "c5"}],
        },
    )
    smooth = load_bench_file("smoothness", tmp_path).result
    assert (smooth.command, smooth.problem, smooth.L0, smooth.L1) == ("c1", "sine", 1.0, 2.5)
    assert smooth.points[0].iteration == 3 and smooth.points[0].smoothness == 4.0
    mnist = load_bench_file("mnist1d", tmp_path).result
    assert (mnist.rows[0].way, mnist.rows[0].accuracy, mnist.curves[0].seconds) == (5, 0.5, 1.5)
    assert load_bench_file("memory", tmp_path).result.rows[0].peak_extra_mb == 12.5
    omniglot = load_bench_file("omniglot", tmp_path).result
    assert omniglot.rows[0].command == "c4" and omniglot.cost[0].peak_rss_mb == 900.0


def test_a_partial_file_reads_what_is_there(tmp_path) -> None:
    write(tmp_path, "mnist1d", {"protocol": "5-way", "rows": []})  # no curves yet, no command
    loaded = load_bench_file("mnist1d", tmp_path)
    assert loaded.result.curves == [] and loaded.result.command == BENCH_FILES["mnist1d"].command


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("{not json", "cannot be read (Expecting property name"),
        ([1, 2], "the file is not a JSON object"),
        (
            {"rows": [{"estimator": "maml", "channels": 8, "inner_steps": 5, "peak_rss_mb": 1.0}]},
            "rows[0] lacks 'peak_extra_mb'",
        ),
        (
            {
                "rows": [
                    {"estimator": "maml", "channels": "8", "inner_steps": 5, "peak_rss_mb": 1.0, "peak_extra_mb": 1.0}
                ]
            },
            "rows[0].channels is '8', expected a number",
        ),
        ({"rows": {"a": 1}}, "rows is not a list"),
    ],
)
def test_a_broken_file_says_what_is_wrong_and_how_to_remake_it(tmp_path, data, problem) -> None:
    write(tmp_path, "memory", data)
    loaded = load_bench_file("memory", tmp_path)
    assert loaded.result is None and problem in loaded.problem
    assert loaded.problem.endswith(f"remake it: {BENCH_FILES['memory'].command}")


def test_the_quadratic_bench_file_reads_and_agrees_with_the_lab_on_its_family() -> None:
    loaded = load_bench_file("quadratic")
    if loaded.result is None:
        pytest.skip(loaded.problem)
    result = loaded.result
    assert result.command == "OMP_NUM_THREADS=1 python bench/bilevel_quadratic.py"
    assert [p.method for p in result.panels] == ["gd", "sngdm", "clipped"] and len(result.claims) == 4
    # The Lab's defaults are the bench's family, lambda and inner rate: the same errors (the bench keeps 7 digits).
    lab = QuadraticStudySettings(
        estimators=("maml", "fomaml"),
        max_inner_steps=max(result.inner_steps),
        sngdm=False,
        clipped=False,
        outer_iterations=1,
    )
    study = run_quadratic_study(lab)
    for label in ("maml", "fomaml"):
        mine = [study.error_curve(label).relative_error[t - 1] for t in result.inner_steps]
        np.testing.assert_allclose(mine, result.relative_error[label], rtol=1e-6)
