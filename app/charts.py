"""Plotly figures of stored runs. Inputs are the store's plain records; nothing here computes model values."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.store import AdaptationDetail, RunDetail

_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _clean(values: Sequence[float]) -> list[float | None]:
    # NaN/inf would break the line silently; None leaves a visible gap instead.
    return [v if v is not None and math.isfinite(v) else None for v in values]


def support_curves(adaptations: Sequence[AdaptationDetail]) -> go.Figure:
    """Support loss and accuracy before each step and after the last, one line per rule."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Support loss", "Support accuracy"))
    for index, adaptation in enumerate(adaptations):
        steps = list(range(len(adaptation.support_loss)))
        colour = _colour(index)
        figure.add_trace(
            go.Scatter(
                x=steps, y=_clean(adaptation.support_loss), mode="lines+markers", name=adaptation.rule_label,
                legendgroup=adaptation.rule_label, line={"color": colour},
            ),
            row=1, col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=steps, y=_clean(adaptation.support_accuracy), mode="lines+markers", name=adaptation.rule_label,
                legendgroup=adaptation.rule_label, showlegend=False, line={"color": colour},
            ),
            row=1, col=2,
        )
    figure.update_xaxes(title_text="inner step", dtick=1)
    figure.update_yaxes(title_text="cross-entropy", row=1, col=1)
    figure.update_yaxes(title_text="accuracy", tickformat=".0%", range=[0, 1.05], row=1, col=2)
    figure.update_layout(height=340, margin=_MARGIN, legend={"orientation": "h", "y": -0.25})
    return figure


def trace_figure(adaptation: AdaptationDetail, which: str) -> go.Figure:
    """``which`` ("alpha" or "beta") of every layer at every step: one line per layer, x = step."""
    if which not in ("alpha", "beta"):
        raise ValueError(f"which must be 'alpha' or 'beta', not {which!r}")
    layers: list[str] = []
    for step in adaptation.traces:
        layers.extend(layer for layer in step if layer not in layers)
    figure = go.Figure()
    for layer in layers:
        steps = [s for s, values in enumerate(adaptation.traces) if layer in values]
        figure.add_trace(
            go.Scatter(
                x=steps, y=_clean([adaptation.traces[s][layer][which] for s in steps]),
                mode="lines+markers", name=layer,
            )
        )
    # The rules' update is theta <- beta * theta - alpha * grad (beta = 1: no decay; SGD has alpha = lr, beta = 1).
    title = "α: learning rate per layer" if which == "alpha" else "β: weight multiplier per layer (θ ← β·θ − α·∇)"
    figure.update_layout(
        title=f"{title} — {adaptation.rule_label}", height=380, margin=_MARGIN,
        xaxis={"title": "inner step", "dtick": 1}, yaxis={"title": which},
    )
    return figure


def overlay_support_loss(details: Sequence[RunDetail]) -> go.Figure:
    """Support loss per step of several runs, one line per (run, rule)."""
    figure = go.Figure()
    for detail in details:
        for adaptation in detail.adaptations:
            figure.add_trace(
                go.Scatter(
                    x=list(range(len(adaptation.support_loss))), y=_clean(adaptation.support_loss),
                    mode="lines+markers", name=f"#{detail.id} {adaptation.rule_label}",
                )
            )
    figure.update_layout(
        title="Support loss per inner step", height=380, margin=_MARGIN,
        xaxis={"title": "inner step", "dtick": 1}, yaxis={"title": "cross-entropy"},
    )
    return figure


def _colour(index: int) -> str:
    palette = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880")
    return palette[index % len(palette)]
