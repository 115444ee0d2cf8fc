"""The FO-B-MAML paper's Figure 1 on a quadratic family, live: settings, the study, and the paper's claims checked.

``shared/reference.md``, "The bilevel view"; the maths (R1-R6) is in :mod:`core.bilevel.quadratic`, and
``bench/bilevel_quadratic.py`` is the full, slower study (every delta, a lambda sweep, finer grids). This one answers
in a few seconds on one CPU thread (``bench/lab_speed.py`` times it), through the fast paths of the quadratic module:
every inner-step count ``T`` from one inner trajectory (:func:`~core.bilevel.quadratic.estimates_every_step`) and
the outer loop in numpy with the estimator built once (:func:`~core.bilevel.quadratic.run_outer_fast`).

- Figure 1 left: ``||mean_i estimate_i - grad F(x0)|| / ||grad F(x0)||`` for ``T = 1 .. max_inner_steps``, ``x0 = 0``,
  ``grad F`` exact (R2).
- Figure 1 right: ``F(x_k)`` (exact, R1) over the outer iterations at ``T = outer_inner_steps``, with GD, its rate
  chosen per estimator from a grid by :func:`rate_score`; optionally SNGDM (momentum 0.9) and clipped GD (threshold a
  quarter of ``||grad F(x0)||``).
- A delta sweep with a converged inner loop (the exact perturbed minimisers), beside the closed-form biases R4 and R5:
  the log-log slope of each FO-B-MAML estimator's error in ``delta``.
- The paper's four claims (:func:`check_claims`), each "holds", "does not hold" or "not checked" with its numbers.

Everything a study holds is plain data (floats, ints, strings, lists; a value that is not finite is ``None``), so
:meth:`QuadraticStudy.to_json_data` and :meth:`QuadraticStudy.from_json_data` round-trip it exactly through JSON.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.bilevel import quadratic as qd
from core.meta.outer_step import OuterStepChoice

__all__ = [
    "CLIP_FRACTION",
    "COMPETITIVE_FACTOR",
    "GD_GRID",
    "SNGDM_GRID",
    "SNGDM_MOMENTUM",
    "STUDY_KIND",
    "SWEEP_DELTAS",
    "Claim",
    "DeltaSweep",
    "ErrorCurve",
    "OuterCurve",
    "OuterPanel",
    "QuadraticStudy",
    "QuadraticStudySettings",
    "check_claims",
    "from_json_data",
    "outer_methods",
    "rate_score",
    "run_quadratic_study",
]

STUDY_KIND = "quadratic"  # the ``kind`` a stored study of this module has

# The family beside the settings (as bench/bilevel_quadratic.py): inner Hessians with eigenvalues over [L/kappa, L],
# L = 1; outer Hessians with condition number 10 and norm 1; centres spread 1, query shift 0.5.
INNER_SMOOTHNESS = 1.0
OUTER_KAPPA = 10.0
OUTER_SMOOTHNESS = 1.0
CENTER_SPREAD = 1.0
QUERY_SHIFT = 0.5

GD_GRID = tuple(float(r) for r in np.geomspace(1e-2, 1e2, 9))  # 2 rates a decade
SNGDM_GRID = tuple(float(r) for r in np.geomspace(1e-4, 1.0, 9))  # a step length: ||x* - x0|| is about 1
SNGDM_MOMENTUM = 0.9
CLIP_FRACTION = 0.25  # the clipping threshold, as a fraction of ||grad F(x0)||
SWEEP_DELTAS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
BIAS_AGREEMENT = 0.1  # a delta is "bias dominated" where the measured error is the closed-form bias within 10 %
COMPETITIVE_FACTOR = 2.0  # "competitive": within this factor of the better reference
SLOPE_MARGIN = 0.5  # "falls faster": the symmetric log-log slope exceeds the forward one by this much
OuterMethod = Literal["gd", "sngdm", "clipped"]


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _finite_list(values: Any) -> list[float | None]:
    return [_finite(v) for v in np.asarray(values, dtype=float).ravel()]


# ------------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class QuadraticStudySettings:
    """What a quadratic study computes. ``inner_rate_fraction`` is relative: the inner rate is
    ``inner_rate_fraction / (L + lambda)`` with ``L = 1`` the largest inner eigenvalue, so ``1`` is the classic
    ``1/(L + lambda)`` and the inner loop contracts for fractions in ``(0, 2)`` (R3).

    ``cg_steps``: one iMAML curve per value. ``delta``: both FO-B-MAML estimators'; the symmetric one needs
    ``A - delta B + lambda I`` positive definite, so ``delta < L/kappa + lambda`` (``||B|| = 1``). ``outer_inner_steps``
    is the ``T`` of the right panel.
    """

    kappa: float = 1000.0
    lam: float = 0.1
    n: int = 20
    tasks: int = 10
    inner_rate_fraction: float = 1.0
    delta: float = 1e-3
    cg_steps: tuple[int, ...] = (2, 5, 10)
    estimators: tuple[str, ...] = tuple(qd.ESTIMATORS)
    max_inner_steps: int = 100
    outer_inner_steps: int = 20
    outer_iterations: int = 100
    sngdm: bool = True
    clipped: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cg_steps", tuple(self.cg_steps))
        object.__setattr__(self, "estimators", tuple(self.estimators))
        problems = self.problems()
        if problems:
            raise ValueError("invalid study settings: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every bad value, each in a sentence that names the setting and the range it must be in."""
        out: list[str] = []

        def number(name: str, low: float, high: float, low_open: bool = False, high_open: bool = False) -> bool:
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
            if not ok:
                below = f"above {low:g}" if low_open else f"from {low:g}"
                above = f"below {high:g}" if high_open else f"to {high:g}"
                out.append(f"{name} must be a number {below} {above}, not {value!r}")
            return ok

        def whole(name: str, low: int, high: int) -> bool:
            value = getattr(self, name)
            ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
            if not ok:
                out.append(f"{name} must be a whole number from {low} to {high}, not {value!r}")
            return ok

        kappa_ok = number("kappa", 1, 1e8)
        lam_ok = number("lam", 0, 100, low_open=True)
        whole("n", 2, 200)
        whole("tasks", 1, 100)
        number("inner_rate_fraction", 0, 2, low_open=True, high_open=True)
        if number("delta", 0, 1, low_open=True) and kappa_ok and lam_ok:
            bound = INNER_SMOOTHNESS / self.kappa + self.lam
            if self.delta * OUTER_SMOOTHNESS >= bound:
                out.append(
                    f"delta must be below L/kappa + lambda = {bound:g} (the symmetric estimator's perturbed "
                    f"inner problem must stay convex), not {self.delta:g}"
                )
        max_ok = whole("max_inner_steps", 1, 1000)
        if whole("outer_inner_steps", 1, 1000) and max_ok and self.outer_inner_steps > self.max_inner_steps:
            out.append(
                f"outer_inner_steps ({self.outer_inner_steps}) must be at most max_inner_steps ({self.max_inner_steps})"
            )
        whole("outer_iterations", 1, 2000)
        whole("seed", 0, 2**32 - 1)
        for name in ("sngdm", "clipped"):
            if not isinstance(getattr(self, name), bool):
                out.append(f"{name} must be true or false, not {getattr(self, name)!r}")
        unknown = [e for e in self.estimators if e not in qd.ESTIMATORS]
        if unknown:
            out.append(f"unknown estimator(s) {', '.join(map(repr, unknown))}; choose from {', '.join(qd.ESTIMATORS)}")
        elif not self.estimators:
            out.append("choose at least one estimator")
        elif len(set(self.estimators)) != len(self.estimators):
            out.append("each estimator once")
        if "imaml" in self.estimators:
            bad = [k for k in self.cg_steps if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 1000)]
            if not self.cg_steps or bad or len(set(self.cg_steps)) != len(self.cg_steps):
                out.append(
                    f"cg_steps must be different whole numbers from 1 to 1000 (at least one, for iMAML), "
                    f"not {list(self.cg_steps)!r}"
                )
        return out

    @property
    def inner_rate(self) -> float:
        """The absolute inner rate, ``inner_rate_fraction / (L + lambda)``."""
        return self.inner_rate_fraction / (INNER_SMOOTHNESS + self.lam)

    def family(self) -> qd.QuadraticFamilySpec:
        return qd.QuadraticFamilySpec(
            n=self.n,
            tasks=self.tasks,
            kappa=float(self.kappa),
            smoothness=INNER_SMOOTHNESS,
            outer_kappa=OUTER_KAPPA,
            outer_smoothness=OUTER_SMOOTHNESS,
            center_spread=CENTER_SPREAD,
            query_shift=QUERY_SHIFT,
            seed=self.seed,
        )

    def choices(self) -> list[qd.EstimatorChoice]:
        """The estimators in the registry's order, iMAML once per ``cg_steps`` (ascending), FO-B-MAML at ``delta``."""
        out = []
        for name, spec in qd.ESTIMATORS.items():
            if name not in self.estimators:
                continue
            if spec.option is None:
                out.append(qd.EstimatorChoice(name))
            elif spec.option == "cg_steps":
                out += [qd.EstimatorChoice(name, k) for k in sorted(self.cg_steps)]
            else:
                out.append(qd.EstimatorChoice(name, float(self.delta)))
        return out


# ------------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class ErrorCurve:
    """Figure 1 left, one estimator: the relative error at ``T = 1 .. max_inner_steps``."""

    label: str
    estimator: str
    option: float | None
    relative_error: list[float | None]


@dataclass(frozen=True)
class OuterCurve:
    """Figure 1 right, one estimator with one outer step at its chosen rate (``loss[k]``: ``F`` after ``k`` steps)."""

    label: str
    rate: float
    rate_index: int
    at_grid_edge: bool
    loss: list[float | None]
    unrolled_loss: list[float | None]
    final_suboptimality: float | None
    score_by_rate: list[float | None]
    diverged_by_rate: list[bool]


@dataclass(frozen=True)
class OuterPanel:
    method: str  # "gd", "sngdm" or "clipped"
    label: str  # the outer step with its options, e.g. "sngdm (momentum=0.9)"
    grid: list[float]
    curves: list[OuterCurve]


@dataclass(frozen=True)
class DeltaSweep:
    """Both FO-B-MAML estimators with a converged inner loop over ``deltas``, beside the closed-form biases (R4, R5);
    the slopes are fitted where the delta bias dominates (measured within 10 % of the closed form)."""

    deltas: list[float]
    forward_error: list[float | None]
    symmetric_error: list[float | None]
    forward_bias: list[float | None]
    symmetric_bias: list[float | None]
    forward_slope: float | None
    symmetric_slope: float | None
    halving_delta: float
    forward_halving_ratio: float | None
    symmetric_halving_ratio: float | None


@dataclass(frozen=True)
class Claim:
    claim: str
    verdict: str  # "holds", "does not hold" or "not checked"
    criterion: str
    evidence: str


@dataclass(frozen=True)
class QuadraticStudy:
    settings: QuadraticStudySettings
    inner_rate: float
    contraction_factor: float
    grad_norm_x0: float
    f_x0: float
    f_star: float
    inner_steps: list[int]
    errors: list[ErrorCurve]
    outer_inner_steps: int
    outer: list[OuterPanel]
    delta_sweep: DeltaSweep
    claims: list[Claim]
    wall_seconds: float

    def to_json_data(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(settings, results)`` as plain JSON-ready dicts (what the study store keeps)."""
        data = dataclasses.asdict(self)
        settings = data.pop("settings")
        settings["cg_steps"], settings["estimators"] = list(settings["cg_steps"]), list(settings["estimators"])
        data.pop("wall_seconds")
        return settings, data

    @classmethod
    def from_json_data(
        cls, settings: Mapping[str, Any], results: Mapping[str, Any], wall_seconds: float
    ) -> QuadraticStudy:
        """The study back from :meth:`to_json_data`'s two dicts (and its wall time); ValueError or TypeError (saying
        where) if they do not fit."""
        return from_json_data(cls, {**results, "settings": settings, "wall_seconds": wall_seconds})

    def suboptimality(self, curve: OuterCurve) -> list[float | None]:
        """``F(x_k) - F*`` along ``curve`` (None where the run diverged)."""
        return [None if f is None else f - self.f_star for f in curve.loss]

    def error_curve(self, label: str) -> ErrorCurve | None:
        return next((c for c in self.errors if c.label == label), None)

    def panel(self, method: str) -> OuterPanel | None:
        return next((p for p in self.outer if p.method == method), None)


def from_json_data(cls: type, data: Any, where: str = "study") -> Any:
    """A dataclass ``cls`` from plain data, field types followed (nested dataclasses, lists, tuples, ``X | None``)."""
    hints = typing.get_type_hints(cls)
    if not isinstance(data, Mapping):
        raise TypeError(f"{where}: expected a table, not {type(data).__name__}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    return cls(**{f.name: _convert(hints[f.name], data[f.name], f"{where}.{f.name}") for f in dataclasses.fields(cls)})


def _convert(kind: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, not {type(value).__name__}")
        items = [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if dataclasses.is_dataclass(kind):
        return from_json_data(kind, value, where)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(kind, type) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{where}: expected {getattr(kind, '__name__', kind)}, not {value!r}")


# ------------------------------------------------------------------------------------------------------ the study


def rate_score(exact_loss: np.ndarray, f_star: float) -> np.ndarray:
    """How a rate of the grid is judged: the mean over the outer iterations of ``log10(F - F*)``, so both how fast and
    how low count (lower is better). ``F - F*`` is floored at ``1e-15 F*`` (below it is rounding); a run that
    diverged scores ``+inf``."""
    gap = np.maximum(exact_loss[:, 1:] - f_star, 1e-15 * f_star)
    with np.errstate(invalid="ignore"):
        return np.where(np.all(np.isfinite(gap), axis=1), np.mean(np.log10(gap), axis=1), np.inf)


def outer_methods(settings: QuadraticStudySettings, clip: float) -> list[tuple[str, OuterStepChoice, tuple]]:
    """The right panel's outer steps with their rate grids: GD, then SNGDM and clipped GD (threshold ``clip``)."""
    methods = [("gd", OuterStepChoice.parse("sgd"), GD_GRID)]
    if settings.sngdm:
        methods.append(("sngdm", OuterStepChoice.parse("sngdm", {"momentum": SNGDM_MOMENTUM}), SNGDM_GRID))
    if settings.clipped:
        methods.append(("clipped", OuterStepChoice.parse("clipped", {"max_norm": clip}), GD_GRID))
    return methods


def _delta_sweep(tasks: qd.QuadraticTasks, x0: np.ndarray, settings: QuadraticStudySettings) -> DeltaSweep:
    lam = settings.lam
    bound = (INNER_SMOOTHNESS / settings.kappa + lam) / OUTER_SMOOTHNESS
    deltas = [d for d in SWEEP_DELTAS if d < 0.5 * bound]
    exact = qd.meta_gradient_mean(qd.exact_meta_gradient(tasks, x0, lam))
    y_0 = qd.perturbed_inner_solution(tasks, x0, lam, 0.0)

    def error(delta: float, symmetric: bool) -> float:
        if symmetric:
            y_minus = qd.perturbed_inner_solution(tasks, x0, lam, -delta)
            estimate = lam * (y_minus - qd.perturbed_inner_solution(tasks, x0, lam, delta)) / (2 * delta)
        else:
            estimate = lam * (y_0 - qd.perturbed_inner_solution(tasks, x0, lam, delta)) / delta
        return float(qd.relative_error(qd.meta_gradient_mean(estimate), exact))

    def bias(delta: float, symmetric: bool) -> float:
        per_task = qd.fo_b_maml_bias(tasks, x0, lam, delta, symmetric)
        return float(np.linalg.norm(qd.meta_gradient_mean(per_task)) / np.linalg.norm(exact))

    def slope(measured: list[float], predicted: list[float]) -> float | None:
        m, p = np.array(measured), np.array(predicted)
        dominated = np.abs(m / p - 1) < BIAS_AGREEMENT
        if dominated.sum() < 2:
            return None
        return float(np.polyfit(np.log(np.array(deltas)[dominated]), np.log(m[dominated]), 1)[0])

    forward = [error(d, False) for d in deltas]
    symmetric = [error(d, True) for d in deltas]
    forward_bias = [bias(d, False) for d in deltas]
    symmetric_bias = [bias(d, True) for d in deltas]
    d = settings.delta

    def halving(symmetric_: bool) -> float | None:
        return _finite(error(d, symmetric_) / error(d / 2, symmetric_))

    return DeltaSweep(
        deltas=list(deltas),
        forward_error=_finite_list(forward),
        symmetric_error=_finite_list(symmetric),
        forward_bias=_finite_list(forward_bias),
        symmetric_bias=_finite_list(symmetric_bias),
        forward_slope=slope(forward, forward_bias),
        symmetric_slope=slope(symmetric, symmetric_bias),
        halving_delta=float(d),
        forward_halving_ratio=halving(False),
        symmetric_halving_ratio=halving(True),
    )


def run_quadratic_study(settings: QuadraticStudySettings) -> QuadraticStudy:
    """Figure 1 left and right, the delta sweep and the claims for ``settings`` (module docstring), in float64."""
    started = time.perf_counter()
    tasks = qd.make_family(settings.family())
    lam, rate = settings.lam, settings.inner_rate
    x0 = np.zeros(settings.n)
    exact = qd.meta_gradient_mean(qd.exact_meta_gradient(tasks, x0, lam))
    _, f_star, _ = qd.optimal_outer(tasks, lam)
    choices = settings.choices()

    errors = []
    with np.errstate(over="ignore", invalid="ignore"):
        for choice in choices:
            every = qd.estimates_every_step(choice.name, tasks, x0, settings.max_inner_steps, rate, lam, choice.option)
            relative = qd.relative_error(qd.meta_gradient_mean(every), exact)
            errors.append(ErrorCurve(choice.label, choice.name, choice.option, _finite_list(relative)))

    clip = CLIP_FRACTION * float(np.linalg.norm(exact))
    panels = []
    for method_name, method, grid in outer_methods(settings, clip):
        curves = []
        for choice in choices:
            run = qd.run_outer_fast(
                tasks, x0, choice, settings.outer_inner_steps, rate, lam, method, grid, settings.outer_iterations
            )
            score = rate_score(run.exact_loss, f_star)
            best = int(np.argmin(score))
            curves.append(
                OuterCurve(
                    label=choice.label,
                    rate=float(grid[best]),
                    rate_index=best,
                    at_grid_edge=best in (0, len(grid) - 1),
                    loss=_finite_list(run.exact_loss[best]),
                    unrolled_loss=_finite_list(run.unrolled_loss[best]),
                    final_suboptimality=_finite(run.exact_loss[best, -1] - f_star),
                    score_by_rate=_finite_list(score),
                    diverged_by_rate=[bool(v) for v in run.diverged],
                )
            )
        panels.append(OuterPanel(method_name, method.label, list(grid), curves))

    sweep = _delta_sweep(tasks, x0, settings)
    inner_steps = list(range(1, settings.max_inner_steps + 1))
    gd = panels[0]
    claims = check_claims(
        inner_steps,
        {c.label: c.relative_error for c in errors},
        {c.label: c.final_suboptimality for c in gd.curves},
        sweep,
        settings.outer_inner_steps,
    )
    return QuadraticStudy(
        settings=settings,
        inner_rate=rate,
        contraction_factor=float(qd.contraction_factor(tasks, rate, lam).max()),
        grad_norm_x0=float(np.linalg.norm(exact)),
        f_x0=float(qd.outer_loss(tasks, x0, lam)),
        f_star=float(f_star),
        inner_steps=inner_steps,
        errors=errors,
        outer_inner_steps=settings.outer_inner_steps,
        outer=panels,
        delta_sweep=sweep,
        claims=claims,
        wall_seconds=time.perf_counter() - started,
    )


# ------------------------------------------------------------------------------------------------------ the claims


def _better(mine: float | None, other: float | None, factor: float | None) -> bool:
    """``mine`` lower than ``other`` (``factor`` None) or within ``factor`` of it; a missing (diverged) value loses."""
    if mine is None:
        return False
    if other is None:
        return True
    return mine <= factor * other if factor else mine < other


def check_claims(
    inner_steps: Sequence[int],
    errors: Mapping[str, Sequence[float | None]],
    gd_suboptimality: Mapping[str, float | None],
    sweep: DeltaSweep,
    outer_inner_steps: int,
) -> list[Claim]:
    """The paper's four claims (Chayti and Jaggi; ``shared/reference.md``, "The bilevel view") on one study.

    ``errors``: Figure 1 left by estimator label; ``gd_suboptimality``: final ``F - F*`` with tuned GD by label.
    FO-B-MAML means every ``fo_b_maml*`` label present. A comparison is checked at ``T = outer_inner_steps`` and at the
    last ``T`` in meta-gradient error, and in final ``F - F*`` with tuned GD; it holds when every check passes for
    every FO-B-MAML estimator; it is "not checked" when an estimator it names was not computed.
    """
    ours = [label for label in errors if label.startswith("fo_b_maml")]
    imaml = sorted(
        (label for label in errors if label.startswith("imaml (cg=")),
        key=lambda label: int(label.removeprefix("imaml (cg=").removesuffix(")")),
    )
    points = {f"error at T={t}": inner_steps.index(t) for t in dict.fromkeys((outer_inner_steps, inner_steps[-1]))}

    def compare(claim: str, others: list[str], factor: float | None, needed: str) -> Claim:
        criterion = (
            f"within a factor {factor:g} of the better of {' and '.join(others) or needed}"
            if factor
            else f"lower than each of {' and '.join(others) or needed}"
        )
        criterion += (
            f" in meta-gradient error at T={' and T='.join(k.split('=')[1] for k in points)} and in final "
            f"F - F* with tuned GD at T={outer_inner_steps}"
        )
        if not ours or not others or any(o not in errors for o in others):
            return Claim(claim, "not checked", criterion, f"needs FO-B-MAML and {needed} in the study")
        passes, lines = True, []
        for mine in ours:
            cells = []
            for check, index in [*points.items(), ("GD final F - F*", None)]:
                if index is None:
                    values = {o: gd_suboptimality.get(o) for o in others}
                    value = gd_suboptimality.get(mine)
                else:
                    values = {o: errors[o][index] for o in others}
                    value = errors[mine][index]
                finite = [v for v in values.values() if v is not None]
                if factor:
                    ok = _better(value, min(finite) if finite else None, factor)
                else:
                    ok = all(_better(value, v, None) for v in values.values())
                passes &= ok
                shown = ", ".join(f"{o} {_text(v)}" for o, v in values.items())
                cells.append(f"{check}: {_text(value)} vs {shown}{'' if ok else ' (fails)'}")
            lines.append(f"{mine}: " + "; ".join(cells))
        return Claim(claim, "holds" if passes else "does not hold", criterion, "\n".join(lines))

    references = [label for label in ("maml",) if label in errors] + imaml[-1:]
    claims = [
        compare("FO-B-MAML beats FO-MAML and Reptile", ["fomaml", "reptile"], None, "fomaml and reptile"),
        compare("FO-B-MAML is competitive with MAML and iMAML", references, COMPETITIVE_FACTOR, "maml or imaml"),
        compare(
            "FO-B-MAML beats iMAML with 2 and 5 CG steps",
            ["imaml (cg=2)", "imaml (cg=5)"],
            None,
            "imaml with cg_steps 2 and 5",
        ),
    ]
    forward, symmetric = sweep.forward_slope, sweep.symmetric_slope
    criterion = (
        f"log-log slope of the error in delta with a converged inner loop, where the delta bias dominates: "
        f"symmetric at least {SLOPE_MARGIN:g} above forward"
    )
    evidence = (
        f"slope forward {_text(forward)}, symmetric {_text(symmetric)}; halving delta={sweep.halving_delta:g} "
        f"divides the error by {_text(sweep.forward_halving_ratio)} (forward) and "
        f"{_text(sweep.symmetric_halving_ratio)} (symmetric)"
    )
    if forward is None or symmetric is None:
        verdict = "not checked"
        evidence = "fewer than two deltas where the bias dominates; " + evidence
    else:
        verdict = "holds" if symmetric > forward + SLOPE_MARGIN else "does not hold"
    claims.append(
        Claim(
            "the symmetric estimator's bias falls faster in delta than the forward one's", verdict, criterion, evidence
        )
    )
    return claims


def _text(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.3g}"
