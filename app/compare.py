"""The run history table and the comparison of stored runs (Runs page).

Pure functions of the store's records: table rows, grouped accuracies with their confidence intervals, and
plotly figures (overlays of support curves and alpha/beta across runs, parallel coordinates). The page only
arranges them in widgets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import plotly.graph_objects as go

from app.formatting import percent, rule_label, when
from core.evaluate import mean_and_ci95
from core.store import RunDetail, RunSummary

# Settings an accuracy can be grouped by, in the order the grouping table shows them.
GROUP_FIELDS: tuple[str, ...] = ("checkpoint", "way", "shot", "steps", "rule")
# Rows of the settings table that differ between any two runs by construction, so "only differences" would
# always list them; they are shown when all settings are.
ALWAYS_DIFFERENT = frozenset({"created", "total seconds"})
# Result rows: kept in "only differences" even when equal, since they are what the runs are compared on.
RESULT_PREFIXES = ("accuracy: ", "final support loss: ")
MEAN_OVER_LAYERS = None  # ``layer`` of :func:`trace_overlay` meaning the mean over every layer

_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
# Below the plot, so that many (run, rule) names do not squeeze it.
_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0}


def run_title(summary: RunSummary) -> str:
    """One line naming a run: id, name, when, where, way/shot, checkpoint and status."""
    where = summary.dataset or summary.source
    name = f"{summary.name} · " if summary.name else ""
    return (
        f"#{summary.id} · {name}{when(summary.created_at)} · {where} · {summary.n_way}-way {summary.k_shot}-shot · "
        f"{summary.checkpoint_name} · {summary.status}"
    )


def accuracy_column(rule: str) -> str:
    """The history table's column holding a rule's accuracy, e.g. ``accuracy: ALFA``."""
    return f"accuracy: {rule_label(rule)}"


def history_table(summaries: Sequence[RunSummary], link: Callable[[int], str]) -> pd.DataFrame:
    """One row per run; ``link(id)`` is the URL that opens the run, and each rule has a numeric accuracy column.

    Accuracies are percentages (0-100, NaN where the rule did not run or had no labelled queries), so the
    column sorts numerically; rules are in the order of their labels.
    """
    rules = sorted({rule for summary in summaries for rule in summary.accuracies}, key=rule_label)
    rows = []
    for summary in summaries:
        row: dict[str, Any] = {
            "run": link(summary.id),
            "name": summary.name or "",
            "tags": list(summary.tags),
            "when": summary.created_at.astimezone().replace(tzinfo=None),
            "status": summary.status,
            "source": summary.source,
            "dataset": summary.dataset or "—",
            "way": summary.n_way,
            "shot": summary.k_shot,
            "steps": summary.steps,
            "checkpoint": summary.checkpoint_name,
        }
        for rule in rules:
            accuracy = summary.accuracies.get(rule)
            row[accuracy_column(rule)] = math.nan if accuracy is None else 100 * accuracy
        row["seconds"] = summary.total_seconds
        row["device"] = summary.device
        row["note"] = summary.note or ""
        row["error"] = summary.error or ""
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- settings table


def run_config(detail: RunDetail) -> dict[str, str]:
    """The settings and results of a run as flat (label -> text) pairs, for the comparison table."""
    provenance = detail.config.get("provenance") or {}
    values: dict[str, Any] = {
        "name": detail.name,
        "tags": ", ".join(detail.tags) or None,
        "status": detail.status,
        "created": when(detail.created_at),
        "source": detail.source,
        "dataset": detail.dataset,
        "split": detail.split,
        "way": detail.n_way,
        "shot": detail.k_shot,
        "queries": detail.config.get("queries", detail.n_query),
        "seed": detail.seed,
        "checkpoint": detail.checkpoint_name,
        "checkpoint file": detail.checkpoint.file_sha256[:12] if detail.checkpoint else None,
        "device": detail.device,
        "steps": detail.steps,
        "head init": detail.config.get("head_init") or "auto",
        "rules": ", ".join(rule_label(r) for r in detail.config.get("rules", detail.rules)),
        "classes": ", ".join(detail.class_names),
        "alphabets": ", ".join(provenance.get("alphabets") or []) or None,
    }
    for adaptation in detail.adaptations:
        values[f"accuracy: {adaptation.rule_label}"] = percent(adaptation.accuracy)
        final = adaptation.support_loss[-1] if adaptation.support_loss else None
        values[f"final support loss: {adaptation.rule_label}"] = None if final is None else f"{final:.4g}"
    values["total seconds"] = None if detail.total_seconds is None else round(detail.total_seconds, 2)
    return {key: ("—" if value is None else str(value)) for key, value in values.items()}


def comparison_rows(details: Sequence[RunDetail], only_differences: bool) -> list[dict[str, str]]:
    """One row per setting or result, one column per run.

    ``only_differences`` leaves out the settings every run shares and those that always differ
    (``ALWAYS_DIFFERENT``: creation time, duration); accuracy and final-loss rows always stay.
    """
    configs = [run_config(detail) for detail in details]
    fields: list[str] = []
    for config in configs:
        fields.extend(field for field in config if field not in fields)
    rows = []
    for field in fields:
        values = [config.get(field, "—") for config in configs]
        hidden = field in ALWAYS_DIFFERENT or len(set(values)) <= 1
        if only_differences and hidden and not field.startswith(RESULT_PREFIXES):
            continue
        rows.append({"setting": field, **{f"run #{d.id}": v for d, v in zip(details, values)}})
    return rows


# -------------------------------------------------------------------------------------- grouped accuracy


@dataclass(frozen=True)
class AccuracyPoint:
    """The accuracy one rule reached in one run, with the settings it can be grouped by."""

    run_id: int
    checkpoint: str
    way: int
    shot: int
    steps: int
    rule: str
    accuracy: float


@dataclass(frozen=True)
class AccuracyGroup:
    """Accuracies sharing the values ``key`` of the grouping fields.

    ``ci95`` is the half-width 1.96 * std / sqrt(n), std the population standard deviation, as
    ``python -m core evaluate`` reports it; None for a single value.
    """

    key: tuple[Any, ...]
    n: int
    mean: float
    ci95: float | None


def accuracy_points(summaries: Sequence[RunSummary]) -> list[AccuracyPoint]:
    """Every (run, rule) accuracy of ``summaries``; rules without an accuracy (no labels) are left out."""
    return [
        AccuracyPoint(s.id, s.checkpoint_name, s.n_way, s.k_shot, s.steps, rule, accuracy)
        for s in summaries
        for rule, accuracy in s.accuracies.items()
        if accuracy is not None and math.isfinite(accuracy)
    ]


def group_accuracies(points: Sequence[AccuracyPoint], by: Sequence[str]) -> list[AccuracyGroup]:
    """Mean accuracy ± 95% CI per distinct value of the fields ``by`` (from ``GROUP_FIELDS``), sorted by key.

    With no fields, all points form one group.
    """
    unknown = [field for field in by if field not in GROUP_FIELDS]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUP_FIELDS)}")
    groups: dict[tuple[Any, ...], list[float]] = {}
    for point in points:
        groups.setdefault(tuple(getattr(point, field) for field in by), []).append(point.accuracy)
    result = []
    for key in sorted(groups):  # each field has one type (text or whole numbers), so keys compare
        values = groups[key]
        mean, ci95 = mean_and_ci95(values)
        result.append(AccuracyGroup(key, len(values), mean, ci95 if len(values) > 1 else None))
    return result


def group_table(groups: Sequence[AccuracyGroup], by: Sequence[str]) -> pd.DataFrame:
    """The grouping table: one column per grouping field, then n, mean accuracy and ± 95% CI in percent."""
    rows = []
    for group in groups:
        row: dict[str, Any] = {
            field: rule_label(value) if field == "rule" else value for field, value in zip(by, group.key)
        }
        row["n"] = group.n
        row["mean accuracy"] = 100 * group.mean
        row["± 95% CI"] = math.nan if group.ci95 is None else 100 * group.ci95
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, "n", "mean accuracy", "± 95% CI"])


def parallel_coordinates(points: Sequence[AccuracyPoint]) -> go.Figure:
    """One line per (run, rule) from its settings (way, shot, steps, checkpoint, rule) to its accuracy."""
    checkpoints = sorted({p.checkpoint for p in points})
    rules = sorted({p.rule for p in points}, key=rule_label)

    def categorical(label: str, values: list[str], chosen: list[str], names: Callable[[str], str] = str) -> dict:
        return {
            "label": label,
            "values": [values.index(v) for v in chosen],
            "tickvals": list(range(len(values))),
            "ticktext": [names(v) for v in values],
            "range": [-0.5, len(values) - 0.5] if len(values) > 1 else [-1, 1],
        }

    def numeric(label: str, chosen: list[int]) -> dict:
        ticks = sorted(set(chosen))  # whole numbers only: no 2.5-way ticks
        return {"label": label, "values": chosen, "tickvals": ticks, "range": [ticks[0] - 0.5, ticks[-1] + 0.5]}

    accuracies = [100 * p.accuracy for p in points]
    dimensions = [
        numeric("way", [p.way for p in points]),
        numeric("shot", [p.shot for p in points]),
        numeric("steps", [p.steps for p in points]),
        categorical("checkpoint", checkpoints, [p.checkpoint for p in points]),
        categorical("rule", rules, [p.rule for p in points], rule_label),
        {"label": "accuracy (%)", "values": accuracies, "range": [0, 100]},
    ]
    figure = go.Figure(
        go.Parcoords(
            line={"color": accuracies, "colorscale": "Viridis", "cmin": 0, "cmax": 100, "showscale": True,
                  "colorbar": {"title": {"text": "%"}}},
            dimensions=dimensions,
        )
    )
    # No title: the axis labels sit above the plot, where a title would cover them.
    figure.update_layout(height=420, margin={"l": 60, "r": 40, "t": 60, "b": 20})
    return figure


# --------------------------------------------------------------------------------------------- overlays


def _series_name(detail: RunDetail, rule: str) -> str:
    return f"#{detail.id} {detail.name} · {rule}" if detail.name else f"#{detail.id} {rule}"


def _clean(values: Sequence[float | None]) -> list[float | None]:
    # NaN/inf would break a line silently; None leaves a visible gap instead.
    return [v if v is not None and math.isfinite(v) else None for v in values]


def curve_overlay(details: Sequence[RunDetail], metric: Literal["support_loss", "support_accuracy"]) -> go.Figure:
    """Support loss or accuracy before each inner step (and after the last), one line per (run, rule)."""
    if metric not in ("support_loss", "support_accuracy"):
        raise ValueError(f"metric must be 'support_loss' or 'support_accuracy', not {metric!r}")
    figure = go.Figure()
    for detail in details:
        for adaptation in detail.adaptations:
            values = getattr(adaptation, metric)
            figure.add_trace(
                go.Scatter(
                    x=list(range(len(values))), y=_clean(values), mode="lines+markers",
                    name=_series_name(detail, adaptation.rule_label),
                )
            )
    loss = metric == "support_loss"
    figure.update_layout(
        title="Support loss per inner step" if loss else "Support accuracy per inner step",
        height=400, margin=_MARGIN, xaxis={"title": "inner step", "dtick": 1}, legend=_LEGEND,
        yaxis={"title": "cross-entropy"} if loss else {"title": "accuracy", "tickformat": ".0%", "range": [0, 1.05]},
    )
    return figure


def trace_layers(details: Sequence[RunDetail]) -> list[str]:
    """Every layer with an alpha/beta trace in any of the runs, in first-seen order."""
    layers: dict[str, None] = {}
    for detail in details:
        for adaptation in detail.adaptations:
            for step in adaptation.traces:
                layers.update(dict.fromkeys(step))
    return list(layers)


def trace_overlay(details: Sequence[RunDetail], which: Literal["alpha", "beta"], layer: str | None) -> go.Figure:
    """``which`` per inner step, one line per (run, rule): of ``layer``, or the mean over layers when None.

    Non-finite values are left out of a mean; a step without any finite value is a gap.
    """
    if which not in ("alpha", "beta"):
        raise ValueError(f"which must be 'alpha' or 'beta', not {which!r}")
    figure = go.Figure()
    for detail in details:
        for adaptation in detail.adaptations:
            if not any(adaptation.traces):
                continue
            values: list[float | None] = []
            for step in adaptation.traces:
                chosen = [v[which] for name, v in step.items() if layer is None or name == layer]
                finite = [v for v in chosen if math.isfinite(v)]
                values.append(sum(finite) / len(finite) if finite else None)
            if all(v is None for v in values):
                continue
            figure.add_trace(
                go.Scatter(
                    x=list(range(len(values))), y=values, mode="lines+markers",
                    name=_series_name(detail, adaptation.rule_label),
                )
            )
    symbol = "α" if which == "alpha" else "β"
    where = "mean over layers" if layer is None else layer
    figure.update_layout(
        title=f"{symbol} per inner step ({where})", height=400, margin=_MARGIN, legend=_LEGEND,
        xaxis={"title": "inner step", "dtick": 1}, yaxis={"title": which},
    )
    return figure
