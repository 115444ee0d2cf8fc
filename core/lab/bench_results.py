"""The bilevel issue's bench result files (``bench/results/*.json``) read into typed records for the Lab page.

Each file is written by its own bench script; the keys below are the contract between those scripts and this
reader (extra keys are allowed and ignored). A file that is not there is "not measured yet", with the command that
makes it; a file that is there but cannot be read (bad JSON, a row without a key it must have, a text where a number
belongs) is reported with what is wrong, never raised. A list the file has not written yet (a bench that writes its
rows before its curves) reads as empty.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from core.settings import REPO_ROOT

__all__ = [
    "BENCH_FILES",
    "BenchFile",
    "BenchSpec",
    "MemoryResult",
    "MemoryRow",
    "Mnist1dCurvePoint",
    "Mnist1dResult",
    "Mnist1dRow",
    "OmniglotCost",
    "OmniglotResult",
    "OmniglotRow",
    "QuadraticBenchClaim",
    "QuadraticBenchCurve",
    "QuadraticBenchPanel",
    "QuadraticBenchResult",
    "SmoothnessPoint",
    "SmoothnessResult",
    "load_bench_file",
]

T = TypeVar("T")


class BenchFormatError(ValueError):
    """A result file that is there but does not have the contract's keys and types."""


# ---------------------------------------------------------------------------------------------------- the records


@dataclass(frozen=True)
class QuadraticBenchCurve:
    label: str
    rate: float
    at_grid_edge: bool
    final_suboptimality: float | None
    exact_loss: list[float | None]


@dataclass(frozen=True)
class QuadraticBenchPanel:
    method: str
    label: str
    grid: list[float]
    curves: list[QuadraticBenchCurve]


@dataclass(frozen=True)
class QuadraticBenchClaim:
    claim: str
    verdict: str
    summary: str


@dataclass(frozen=True)
class QuadraticBenchResult:
    """``bench/results/bilevel_quadratic.json``: Figure 1 left and right and the claims (bench/bilevel_quadratic.py)."""

    command: str
    inner_steps: list[int]
    relative_error: dict[str, list[float | None]]
    right_inner_steps: int
    panels: list[QuadraticBenchPanel]
    claims: list[QuadraticBenchClaim]


@dataclass(frozen=True)
class SmoothnessPoint:
    trajectory: str
    iteration: int
    meta_grad_norm: float
    smoothness: float


@dataclass(frozen=True)
class SmoothnessResult:
    """``bench/results/bilevel_smoothness.json``: the local smoothness of a meta-objective against ``||grad||``, with
    the fit ``L0 + L1 ||grad||``."""

    command: str
    problem: str
    L0: float
    L1: float
    points: list[SmoothnessPoint]


@dataclass(frozen=True)
class Mnist1dRow:
    estimator: str
    way: int
    shot: int
    accuracy: float
    ci95: float
    episodes: int
    train_seconds: float
    iterations: int


@dataclass(frozen=True)
class Mnist1dCurvePoint:
    estimator: str
    iteration: int
    seconds: float
    val_accuracy: float


@dataclass(frozen=True)
class Mnist1dResult:
    """``bench/results/mnist1d_estimators.json``: few-shot MNIST-1D accuracy per estimator, and validation accuracy
    against wall time."""

    command: str
    protocol: str
    rows: list[Mnist1dRow]
    curves: list[Mnist1dCurvePoint]


@dataclass(frozen=True)
class MemoryRow:
    estimator: str
    channels: int
    inner_steps: int
    peak_rss_mb: float
    peak_extra_mb: float


@dataclass(frozen=True)
class MemoryResult:
    """``bench/results/bilevel_memory.json``: peak memory of the meta-gradient against channels and inner steps."""

    command: str
    rows: list[MemoryRow]


@dataclass(frozen=True)
class OmniglotRow:
    estimator: str
    checkpoint: str
    way: int
    shot: int
    protocol: str
    accuracy: float
    ci95: float
    episodes: int
    command: str


@dataclass(frozen=True)
class OmniglotCost:
    estimator: str
    seconds_per_iteration: float
    peak_rss_mb: float
    command: str


@dataclass(frozen=True)
class OmniglotResult:
    """``bench/results/omniglot_estimators.json``: held-out accuracy per estimator and its training cost."""

    rows: list[OmniglotRow]
    cost: list[OmniglotCost]


# ---------------------------------------------------------------------------------------------------- reading


def _value(kind: Any, value: Any, where: str) -> Any:
    """``value`` as ``kind`` (str, int, float, bool, ``float | None``); a float that is not finite reads as None."""
    if typing.get_origin(kind) is not None:  # float | None
        if value is None:
            return None
        kind = float
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (str, bool) and isinstance(value, kind):
        return value
    raise BenchFormatError(f"{where} is {value!r}, expected {'a number' if kind in (int, float) else kind.__name__}")


def _record(cls: type[T], data: Any, where: str) -> T:
    """A flat record ``cls`` from a JSON object (every field required, its type checked)."""
    if not isinstance(data, Mapping):
        raise BenchFormatError(f"{where} is not an object")
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name not in data:
            raise BenchFormatError(f"{where} lacks {field.name!r}")
        values[field.name] = _value(hints[field.name], data[field.name], f"{where}.{field.name}")
    return cls(**values)


def _records(cls: type[T], data: Mapping[str, Any], key: str) -> list[T]:
    """The list ``data[key]`` as records (absent: not written yet, empty)."""
    rows = data.get(key, [])
    if not isinstance(rows, list):
        raise BenchFormatError(f"{key} is not a list")
    return [_record(cls, row, f"{key}[{i}]") for i, row in enumerate(rows)]


def _required(data: Mapping[str, Any], key: str, kind: Any, default: Any = dataclasses.MISSING) -> Any:
    if key not in data:
        if default is not dataclasses.MISSING:
            return default
        raise BenchFormatError(f"the file lacks {key!r}")
    return _value(kind, data[key], key)


def _quadratic(data: Mapping[str, Any], command: str) -> QuadraticBenchResult:
    left = data.get("figure1_left")
    right = data.get("figure1_right")
    if not isinstance(left, Mapping) or not isinstance(right, Mapping):
        raise BenchFormatError("the file lacks figure1_left or figure1_right")
    steps = [_value(int, t, "figure1_left.inner_steps") for t in left.get("inner_steps", [])]
    errors = {}
    for label, values in dict(left.get("relative_error", {})).items():
        where = f"figure1_left.relative_error[{label!r}]"
        if not isinstance(values, list) or len(values) != len(steps):
            raise BenchFormatError(f"{where} does not have one value per inner-step count")
        errors[label] = [_value(float | None, v, where) for v in values]
    panels = []
    for method, panel in dict(right.get("outer", {})).items():
        where = f"figure1_right.outer.{method}"
        curves = []
        for label, run in dict(panel.get("runs", {})).items():
            run = dict(run)
            run["label"] = label
            run["exact_loss"] = [
                _value(float | None, v, f"{where}.{label}.exact_loss") for v in run.get("exact_loss", [])
            ]
            curves.append(
                QuadraticBenchCurve(
                    **{
                        f.name: run[f.name]
                        if f.name == "exact_loss"
                        else _value(
                            typing.get_type_hints(QuadraticBenchCurve)[f.name],
                            run.get(f.name),
                            f"{where}.{label}.{f.name}",
                        )
                        for f in dataclasses.fields(QuadraticBenchCurve)
                    }
                )
            )
        grid = [_value(float, r, f"{where}.grid") for r in panel.get("grid", [])]
        panels.append(
            QuadraticBenchPanel(method, _value(str, panel.get("label", method), f"{where}.label"), grid, curves)
        )
    claims = _records(QuadraticBenchClaim, data, "claims")
    return QuadraticBenchResult(
        command, steps, errors, _value(int, right.get("inner_steps", 0), "inner_steps"), panels, claims
    )


def _smoothness(data: Mapping[str, Any], command: str) -> SmoothnessResult:
    fit = data.get("fit")
    if not isinstance(fit, Mapping):
        raise BenchFormatError("the file lacks 'fit' ({'L0': ..., 'L1': ...})")
    return SmoothnessResult(
        command,
        _required(data, "problem", str),
        _value(float, fit.get("L0"), "fit.L0"),
        _value(float, fit.get("L1"), "fit.L1"),
        _records(SmoothnessPoint, data, "points"),
    )


def _mnist1d(data: Mapping[str, Any], command: str) -> Mnist1dResult:
    return Mnist1dResult(
        command,
        _required(data, "protocol", str, ""),
        _records(Mnist1dRow, data, "rows"),
        _records(Mnist1dCurvePoint, data, "curves"),
    )


def _memory(data: Mapping[str, Any], command: str) -> MemoryResult:
    return MemoryResult(command, _records(MemoryRow, data, "rows"))


def _omniglot(data: Mapping[str, Any], command: str) -> OmniglotResult:
    return OmniglotResult(_records(OmniglotRow, data, "rows"), _records(OmniglotCost, data, "cost"))


@dataclass(frozen=True)
class BenchSpec(Generic[T]):
    """One result file: where it is, the command that makes it (used until the file names its own) and its reader."""

    key: str
    title: str
    path: str  # relative to the checkout
    command: str
    read: Callable[[Mapping[str, Any], str], T]


BENCH_FILES: dict[str, BenchSpec[Any]] = {
    spec.key: spec
    for spec in (
        BenchSpec(
            "quadratic",
            "Figure 1 on quadratics (full study)",
            "bench/results/bilevel_quadratic.json",
            "OMP_NUM_THREADS=1 python bench/bilevel_quadratic.py",
            _quadratic,
        ),
        BenchSpec(
            "smoothness",
            "Smoothness against the meta-gradient norm",
            "bench/results/bilevel_smoothness.json",
            "OMP_NUM_THREADS=1 python bench/bilevel_smoothness.py",
            _smoothness,
        ),
        BenchSpec(
            "mnist1d",
            "MNIST-1D few-shot, every estimator",
            "bench/results/mnist1d_estimators.json",
            "OMP_NUM_THREADS=1 python bench/mnist1d_estimators.py",
            _mnist1d,
        ),
        BenchSpec(
            "memory",
            "Peak memory of the meta-gradient",
            "bench/results/bilevel_memory.json",
            "OMP_NUM_THREADS=1 python bench/bilevel_memory.py",
            _memory,
        ),
        BenchSpec(
            "omniglot",
            "Omniglot Conv4 per estimator",
            "bench/results/omniglot_estimators.json",
            "OMP_NUM_THREADS=1 python bench/omniglot_estimators.py heldout && python bench/omniglot_estimators.py cost",
            _omniglot,
        ),
    )
}


@dataclass(frozen=True)
class BenchFile(Generic[T]):
    """A result file as the page shows it: its ``result`` or, when there is none, the ``problem`` in a sentence."""

    spec: BenchSpec[T]
    result: T | None
    problem: str | None

    @property
    def measured(self) -> bool:
        return self.result is not None


def load_bench_file(key: str, root: Path | None = None) -> BenchFile[Any]:
    """The result file ``key`` of :data:`BENCH_FILES` under ``root`` (default: the checkout): read, or why not
    ("not measured yet: <command>" for a missing file, the first thing wrong for a malformed one)."""
    spec = BENCH_FILES.get(key)
    if spec is None:
        raise ValueError(f"unknown bench result {key!r}; choose one of {', '.join(BENCH_FILES)}")
    path = (REPO_ROOT if root is None else root) / spec.path
    if not path.is_file():
        return BenchFile(spec, None, f"not measured yet: {spec.command}")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, Mapping):
            raise BenchFormatError("the file is not a JSON object")
        command = data.get("command", spec.command)
        if not isinstance(command, str):
            raise BenchFormatError(f"command is {command!r}, expected text")
        return BenchFile(spec, spec.read(data, command), None)
    except (OSError, json.JSONDecodeError, AttributeError, TypeError, ValueError) as error:
        return BenchFile(spec, None, f"{spec.path} cannot be read ({error}); remake it: {spec.command}")
