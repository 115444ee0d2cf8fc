"""Plotly figures of stored runs. Inputs are the store's plain records; nothing here computes model values.

Every figure of a run's inner loop uses one step axis: x = the inner step ``j`` (0 = the first update), a tick
per step. α and β at ``j`` are the values update ``j`` applied; the support loss and accuracy at ``j`` were
measured before update ``j``, and the one extra point at ``x = steps`` ("end") after the last update.

The update every rule here applies is ``θ ← β·θ − α·∇L`` (ALFA, Baik et al. 2020, eq. 4), so α is read against
0 (no step) and β against 1 (weights kept); every α/β chart draws those reference values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from app.formatting import rule_label
from core.lab import QuadraticStudy
from core.lab.bench_results import MemoryResult, Mnist1dResult, QuadraticBenchResult, SmoothnessResult
from core.layer_names import LayerLabel, label_layers
from core.rule_spread import LayerSpread, RuleSpread
from core.rules import rule_colour as registered_rule_colour
from core.store import AdaptationDetail

_MARGIN = {"l": 10, "r": 10, "t": 60, "b": 10}
DEPTH_COLOURS = "Viridis"
STEP_COLOURS = "Plasma"  # sampled up to 0.85: its yellow end would vanish on white
QUANTITY_KEYS = ("alpha", "beta")

ALPHA_BETA_GUIDE = (
    "Each inner step applies θ ← β·θ − α·∇L to every layer. α is the learning rate: a negative α moves the "
    "weights up the gradient (ascent) for that step. β multiplies the weights: β = 1 keeps them, β < 1 shrinks "
    "them (decay), β > 1 grows them, and β near 2 nearly doubles them."
)


@dataclass(frozen=True)
class Quantity:
    """How one of the two rule outputs is drawn: its symbol, the value it is read against, a diverging scale."""

    key: str
    symbol: str
    title: str
    reference: float
    reference_text: str
    colorscale: str


QUANTITIES = {
    "alpha": Quantity("alpha", "α", "α: learning rate", 0.0, "α = 0: no step", "RdBu"),
    "beta": Quantity("beta", "β", "β: weight multiplier", 1.0, "β = 1: weights kept", "BrBG"),
}

# Names no rule is registered under (a run stored by older code) still get a stable colour of their own.
_SPARE_COLOURS = ("#8c564b", "#e377c2", "#bcbd22", "#17becf")


def _clean(values: Sequence[float | None]) -> list[float | None]:
    # NaN/inf would break the line silently; None leaves a visible gap instead.
    return [v if v is not None and math.isfinite(v) else None for v in values]


def rule_colour(rule: str) -> str:
    """The colour of ``rule`` in every chart: the one its registration declares (``core.rules``)."""
    return registered_rule_colour(rule) or _SPARE_COLOURS[sum(map(ord, rule)) % len(_SPARE_COLOURS)]


def _translucent(colour: str, opacity: float) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {opacity})"


def trace_steps(adaptations: Sequence[AdaptationDetail]) -> int:
    """The number of α/β steps of a run's charts: the most any of its adaptations took."""
    return max((len(a.traces) for a in adaptations), default=0)


def _step_axis(steps: int, with_end: bool = False) -> dict[str, Any]:
    ticks = list(range(steps + 1 if with_end else steps))
    labels = [str(j) for j in range(steps)] + (["end"] if with_end else [])
    return {
        "title": {"text": "inner step"},
        "tickmode": "array",
        "tickvals": ticks,
        "ticktext": labels,
        "range": [-0.5, ticks[-1] + 0.5] if ticks else [-0.5, 0.5],
    }


def trace_layers(adaptation: AdaptationDetail, backbone: dict[str, Any] | None) -> list[LayerLabel]:
    """The tensors of an adaptation's traces with readable names, input to output (raw names without a backbone)."""
    names: dict[str, None] = {}
    for step in adaptation.traces:
        names.update(dict.fromkeys(step))
    return label_layers(list(names), backbone)


def _value(adaptation: AdaptationDetail, step: int, layer: str, which: str) -> float | None:
    if step >= len(adaptation.traces) or layer not in adaptation.traces[step]:
        return None
    return adaptation.traces[step][layer][which]


def constant_value(adaptation: AdaptationDetail, which: str) -> float | None:
    """The one value ``which`` takes at every layer and step (SGD: its rate, and β = 1), else ``None``."""
    values = [values[which] for step in adaptation.traces for values in step.values()]
    if not values or any(v != values[0] for v in values):
        return None
    return values[0]


def constant_text(adaptation: AdaptationDetail) -> str | None:
    """"SGD (MAML): α = 0.4 and β = 1 at every layer and step" when both are fixed, else ``None``."""
    alpha, beta = constant_value(adaptation, "alpha"), constant_value(adaptation, "beta")
    if alpha is None or beta is None:
        return None
    return f"{adaptation.rule_label}: α = {alpha:.4g} and β = {beta:.7g} at every layer and step"


def _reference_lines(figure: go.Figure, columns: Sequence[int] = (1, 2)) -> None:
    for column, key in zip(columns, QUANTITY_KEYS):
        quantity = QUANTITIES[key]
        figure.add_hline(
            y=quantity.reference, line={"dash": "dot", "color": "#444", "width": 1}, row=1, col=column,
            annotation_text=quantity.reference_text, annotation_position="bottom right",
            annotation_font={"size": 10, "color": "#444"},
        )


def _two_panels(shared_yaxes: bool = False) -> go.Figure:
    return make_subplots(
        rows=1, cols=2, shared_yaxes=shared_yaxes, horizontal_spacing=0.16 if shared_yaxes else 0.1,
        subplot_titles=(QUANTITIES["alpha"].title, QUANTITIES["beta"].title),
    )


def layer_heatmap(
    adaptation: AdaptationDetail, backbone: dict[str, Any] | None = None, steps: int | None = None
) -> go.Figure:
    """α and β of every layer (rows, input at the top) at every step (columns), side by side.

    Colours diverge from the value each is read against: α from 0 (red: ascent, blue: descent), β from 1
    (brown: decay, green: growth). ``steps`` fixes the step axis (the run's, so that all its charts align).
    """
    layers = trace_layers(adaptation, backbone)
    steps = len(adaptation.traces) if steps is None else steps
    figure = _two_panels(shared_yaxes=True)
    names = [[layer.name] * steps for layer in layers]
    for column, key in enumerate(QUANTITY_KEYS, start=1):
        quantity = QUANTITIES[key]
        domain = figure.layout[f"xaxis{column if column > 1 else ''}"].domain
        figure.add_trace(
            go.Heatmap(
                z=[_clean([_value(adaptation, j, layer.name, key) for j in range(steps)]) for layer in layers],
                x=list(range(steps)),
                y=[layer.label for layer in layers],
                customdata=names,
                colorscale=quantity.colorscale,
                zmid=quantity.reference,
                colorbar={"title": {"text": quantity.symbol}, "x": domain[1] + 0.01, "len": 1.0, "thickness": 12},
                hovertemplate=f"%{{y}} (%{{customdata}})<br>step %{{x}}<br>{quantity.symbol} = %{{z:.7g}}<extra></extra>",
                xgap=1, ygap=1,
            ),
            row=1, col=column,
        )
        figure.update_xaxes(_step_axis(steps), row=1, col=column)
    figure.update_yaxes(autorange="reversed", row=1, col=1)
    figure.update_layout(
        title={"text": f"{adaptation.rule_label}: α and β per layer and step"},
        height=max(280, 22 * len(layers) + 140), margin=_MARGIN,
    )
    return figure


def layer_lines(
    adaptation: AdaptationDetail, backbone: dict[str, Any] | None = None, steps: int | None = None
) -> go.Figure:
    """α (left) and β (right) per step, one line per layer coloured by depth (a colour bar, not a legend).

    A quantity that is the same at every layer and step is one line labelled as such (SGD: not 18 flat lines).
    """
    layers = trace_layers(adaptation, backbone)
    steps = len(adaptation.traces) if steps is None else steps
    deepest = max((layer.depth for layer in layers), default=0)
    figure = _two_panels()
    colour_bar_needed = False
    for column, key in enumerate(QUANTITY_KEYS, start=1):
        quantity = QUANTITIES[key]
        fixed = constant_value(adaptation, key)
        if fixed is not None:
            figure.add_trace(
                go.Scatter(
                    x=list(range(steps)), y=[fixed] * steps, mode="lines+markers",
                    name=f"{quantity.symbol} = {fixed:.7g} at every layer and step",
                    line={"color": rule_colour(adaptation.rule)},
                    hovertemplate=f"every layer<br>step %{{x}}: {quantity.symbol} = %{{y:.7g}}<extra></extra>",
                ),
                row=1, col=column,
            )
        else:
            colour_bar_needed = True
            for layer in layers:
                colour = sample_colorscale(DEPTH_COLOURS, [layer.depth / deepest if deepest else 0.0])[0]
                figure.add_trace(
                    go.Scatter(
                        x=list(range(steps)), y=_clean([_value(adaptation, j, layer.name, key) for j in range(steps)]),
                        mode="lines+markers", name=layer.label, showlegend=False,
                        line={"color": colour, "width": 1.5}, marker={"size": 5},
                        hovertemplate=f"{layer.label}<br>step %{{x}}: {quantity.symbol} = %{{y:.7g}}<extra></extra>",
                    ),
                    row=1, col=column,
                )
        figure.update_xaxes(_step_axis(steps), row=1, col=column)
        figure.update_yaxes(title={"text": quantity.symbol}, row=1, col=column)
    if colour_bar_needed:
        # An invisible marker carries the depth colour bar (lines cannot show one themselves).
        figure.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                marker={
                    "color": [0, deepest], "cmin": 0, "cmax": max(deepest, 1), "colorscale": DEPTH_COLOURS,
                    "showscale": True,
                    "colorbar": {"title": {"text": "depth"}, "tickvals": [0, max(deepest, 1)],
                                 "ticktext": ["input", "head"], "thickness": 12},
                },
            ),
            row=1, col=1,
        )
    _reference_lines(figure)
    figure.update_layout(
        title={"text": f"{adaptation.rule_label}: α and β per layer"}, height=400, margin=_MARGIN,
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def rules_compared(adaptations: Sequence[AdaptationDetail], steps: int | None = None) -> go.Figure:
    """Several rules on one figure: per rule, the mean over layers at each step with a min–max band over layers.

    A rule whose value is the same at every layer and step is one line labelled "same at every layer".
    """
    steps = trace_steps(adaptations) if steps is None else steps
    figure = _two_panels()
    x = list(range(steps))
    for adaptation in adaptations:
        colour = rule_colour(adaptation.rule)
        for column, key in enumerate(QUANTITY_KEYS, start=1):
            symbol = QUANTITIES[key].symbol
            shown_in_legend = column == 1
            fixed = constant_value(adaptation, key)
            if fixed is not None:
                figure.add_trace(
                    go.Scatter(
                        x=x, y=[fixed] * steps, mode="lines", name=f"{adaptation.rule_label} (same at every layer)",
                        legendgroup=adaptation.rule_label, showlegend=shown_in_legend,
                        line={"color": colour, "dash": "dash"},
                        hovertemplate=f"{adaptation.rule_label}<br>step %{{x}}: {symbol} = %{{y:.7g}} at every layer"
                                      "<extra></extra>",
                    ),
                    row=1, col=column,
                )
                continue
            per_step = [
                [v for v in (values[key] for values in adaptation.traces[j].values()) if math.isfinite(v)]
                if j < len(adaptation.traces) else []
                for j in x
            ]
            low = [min(values) if values else None for values in per_step]
            high = [max(values) if values else None for values in per_step]
            mean = [sum(values) / len(values) if values else None for values in per_step]
            figure.add_trace(
                go.Scatter(x=x, y=high, mode="lines", line={"width": 0, "color": colour}, showlegend=False,
                           legendgroup=adaptation.rule_label, hoverinfo="skip"),
                row=1, col=column,
            )
            figure.add_trace(
                go.Scatter(x=x, y=low, mode="lines", line={"width": 0, "color": colour}, fill="tonexty",
                           fillcolor=_translucent(colour, 0.18), showlegend=False,
                           legendgroup=adaptation.rule_label, hoverinfo="skip"),
                row=1, col=column,
            )
            figure.add_trace(
                go.Scatter(
                    x=x, y=mean, mode="lines+markers", name=f"{adaptation.rule_label} (mean over layers, band: min–max)",
                    legendgroup=adaptation.rule_label, showlegend=shown_in_legend, line={"color": colour},
                    customdata=list(zip(low, high)),
                    hovertemplate=f"{adaptation.rule_label}<br>step %{{x}}: mean {symbol} = %{{y:.7g}}"
                                  "<br>layers from %{customdata[0]:.7g} to %{customdata[1]:.7g}<extra></extra>",
                ),
                row=1, col=column,
            )
    for column, key in enumerate(QUANTITY_KEYS, start=1):
        figure.update_xaxes(_step_axis(steps), row=1, col=column)
        figure.update_yaxes(title={"text": QUANTITIES[key].symbol}, row=1, col=column)
    _reference_lines(figure)
    figure.update_layout(
        title={"text": "Rules compared: α and β over layers"}, height=400, margin=_MARGIN,
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def spread_figure(
    adaptation: AdaptationDetail,
    spread: RuleSpread,
    layer: str,
    backbone: dict[str, Any] | None = None,
    steps: int | None = None,
) -> go.Figure:
    """This episode's α and β of one layer against their spread over the held-out episodes of ``spread``.

    Bands: min–max over the episodes (light) and mean ± one standard deviation (darker); the mean dashed.
    """
    layer_spread: LayerSpread | None = spread.layer(layer)
    if layer_spread is None:
        raise ValueError(f"the held-out spread has no layer {layer!r}")
    labels = {label.name: label.label for label in trace_layers(adaptation, backbone)}
    steps = len(adaptation.traces) if steps is None else steps
    colour = rule_colour(adaptation.rule)
    figure = _two_panels()
    for column, key in enumerate(QUANTITY_KEYS, start=1):
        symbol = QUANTITIES[key].symbol
        values = getattr(layer_spread, key)
        x = list(range(len(values.mean)))
        first = column == 1
        below = [m - s for m, s in zip(values.mean, values.std)]
        above = [m + s for m, s in zip(values.mean, values.std)]
        for upper, lower, name, opacity in (
            (values.maximum, values.minimum, f"min–max over {spread.episodes} held-out episodes", 0.12),
            (above, below, "mean ± std", 0.25),
        ):
            figure.add_trace(
                go.Scatter(x=x, y=_clean(upper), mode="lines", line={"width": 0, "color": colour}, showlegend=False,
                           legendgroup=name, hoverinfo="skip"),
                row=1, col=column,
            )
            figure.add_trace(
                go.Scatter(x=x, y=_clean(lower), mode="lines", line={"width": 0, "color": colour}, fill="tonexty",
                           fillcolor=_translucent(colour, opacity), name=name, legendgroup=name, showlegend=first,
                           hoverinfo="skip"),
                row=1, col=column,
            )
        figure.add_trace(
            go.Scatter(x=x, y=_clean(values.mean), mode="lines", name="mean over held-out episodes",
                       legendgroup="mean", showlegend=first, line={"color": colour, "dash": "dash", "width": 1},
                       customdata=list(zip(values.minimum, values.maximum, values.std)),
                       hovertemplate=f"held-out episodes, step %{{x}}<br>mean {symbol} = %{{y:.7g}} "
                                     "(std %{customdata[2]:.3g})<br>from %{customdata[0]:.7g} to %{customdata[1]:.7g}"
                                     "<extra></extra>"),
            row=1, col=column,
        )
        figure.add_trace(
            go.Scatter(
                x=list(range(steps)), y=_clean([_value(adaptation, j, layer, key) for j in range(steps)]),
                mode="lines+markers", name="this episode", legendgroup="episode", showlegend=first,
                line={"color": "#111", "width": 2},
                hovertemplate=f"this episode, step %{{x}}: {symbol} = %{{y:.7g}}<extra></extra>",
            ),
            row=1, col=column,
        )
        figure.update_xaxes(_step_axis(steps), row=1, col=column)
        figure.update_yaxes(title={"text": symbol}, row=1, col=column)
    _reference_lines(figure)
    # A rule that ignores the episode has bands thinner than the line: say how wide they are.
    widest = ", ".join(f"{QUANTITIES[key].symbol} {max(getattr(layer_spread, key).std, default=0.0):.2g}"
                       for key in QUANTITY_KEYS)
    figure.update_layout(
        title={"text": f"{adaptation.rule_label}, {labels.get(layer, layer)}: this episode against "
                       f"{spread.episodes} held-out episodes ({spread.n_way}-way {spread.k_shot}-shot)",
               "subtitle": {"text": f"largest std over the held-out episodes at any step: {widest}"}},
        height=400, margin=_MARGIN, legend={"orientation": "h", "y": -0.2},
    )
    return figure


def adaptivity_figure(spread: RuleSpread, backbone: dict[str, Any] | None = None) -> go.Figure:
    """α (left) and β (right) per layer over held-out episodes, as ALFA's Figure 3 (Baik et al. 2020) draws them.

    x: the layers, input to output, with readable names; one series per inner step, coloured by step and set a
    little apart within each layer: a marker at the mean over the episodes and an error bar from their minimum to
    their maximum.
    """
    layers = label_layers([layer.layer for layer in spread.layers], backbone)
    steps = spread.steps
    # Steps side by side within a layer's slot, filling 70 % of it.
    width = 0.7 / steps
    offsets = [(j - (steps - 1) / 2) * width for j in range(steps)]
    colours = sample_colorscale(STEP_COLOURS, [0.85 * j / max(steps - 1, 1) for j in range(steps)])
    figure = _two_panels()
    for column, key in enumerate(QUANTITY_KEYS, start=1):
        symbol = QUANTITIES[key].symbol
        per_layer = [getattr(spread.layer(label.name), key) for label in layers]
        for j in range(steps):
            mean = [values.mean[j] for values in per_layer]
            low = [values.minimum[j] for values in per_layer]
            high = [values.maximum[j] for values in per_layer]
            figure.add_trace(
                go.Scatter(
                    x=[index + offsets[j] for index in range(len(layers))], y=_clean(mean), mode="markers",
                    name=f"step {j}", legendgroup=f"step {j}", showlegend=column == 1,
                    marker={"color": colours[j], "size": 7},
                    error_y={"type": "data", "symmetric": False, "color": colours[j], "thickness": 1.5, "width": 3,
                             # A mean of equal values can round past them: a bar is never negative.
                             "array": [max(h - m, 0.0) for h, m in zip(high, mean)],
                             "arrayminus": [max(m - lo, 0.0) for m, lo in zip(mean, low)]},
                    customdata=[(label.label, lo, h, values.std[j])
                                for label, lo, h, values in zip(layers, low, high, per_layer)],
                    hovertemplate=f"%{{customdata[0]}}, step {j}<br>mean {symbol} = %{{y:.7g}} (std "
                                  "%{customdata[3]:.3g})<br>from %{customdata[1]:.7g} to %{customdata[2]:.7g}"
                                  "<extra></extra>",
                ),
                row=1, col=column,
            )
        figure.update_xaxes(
            tickmode="array", tickvals=list(range(len(layers))), ticktext=[label.label for label in layers],
            tickangle=-45, range=[-0.5, len(layers) - 0.5], title={"text": "layer (input to output)"},
            row=1, col=column,
        )
        figure.update_yaxes(title={"text": symbol}, row=1, col=column)
    _reference_lines(figure)
    figure.update_layout(
        title={"text": f"{rule_label(spread.rule)}: α and β per layer over {spread.episodes} held-out episodes "
                       f"({spread.n_way}-way {spread.k_shot}-shot)",
               "subtitle": {"text": "marker: the mean over the episodes; bar: from their minimum to their maximum"}},
        # Room above the panel titles for the subtitle; the legend on the right, clear of the long tick labels.
        height=500, margin={**_MARGIN, "t": 100}, legend={"title": {"text": "inner step"}},
    )
    return figure


def support_curves(adaptations: Sequence[AdaptationDetail], steps: int | None = None) -> go.Figure:
    """Support loss and accuracy before each step and after the last ("end"), one line per rule."""
    steps = trace_steps(adaptations) if steps is None else steps
    steps = max([steps] + [len(a.support_loss) - 1 for a in adaptations])
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Support loss", "Support accuracy"))
    for adaptation in adaptations:
        x = list(range(len(adaptation.support_loss)))
        colour = rule_colour(adaptation.rule)
        figure.add_trace(
            go.Scatter(
                x=x, y=_clean(adaptation.support_loss), mode="lines+markers", name=adaptation.rule_label,
                legendgroup=adaptation.rule_label, line={"color": colour},
            ),
            row=1, col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=x, y=_clean(adaptation.support_accuracy), mode="lines+markers", name=adaptation.rule_label,
                legendgroup=adaptation.rule_label, showlegend=False, line={"color": colour},
            ),
            row=1, col=2,
        )
    figure.update_xaxes(_step_axis(steps, with_end=True))
    figure.update_yaxes(title={"text": "cross-entropy"}, row=1, col=1)
    figure.update_yaxes(title={"text": "accuracy"}, tickformat=".0%", range=[0, 1.05], row=1, col=2)
    figure.update_layout(height=340, margin=_MARGIN, legend={"orientation": "h", "y": -0.25})
    return figure


def _tick_names(class_names: Sequence[str]) -> tuple[list[str], str]:
    """Short tick labels for class names, and the folder prefix they all shared ("" if none).

    "Tagalog/character01" -> "character01" when every class is under "Tagalog/"; with several folders each folder
    part is cut to 8 characters ("Japanese…/character17"). Names that shortening would make equal stay whole.
    """
    names = list(class_names)
    if not names or not all("/" in name for name in names):
        return names, ""
    heads = {name.rsplit("/", 1)[0] for name in names}
    if len(heads) == 1:
        prefix = heads.pop() + "/"
        short = [name[len(prefix):] for name in names]
    else:
        prefix = ""
        short = ["/".join([part if len(part) <= 9 else part[:8] + "…" for part in name.split("/")[:-1]]
                          + [name.rsplit("/", 1)[1]]) for name in names]
    if len(set(short)) < len(set(names)):
        return names, ""
    return short, prefix


def confusion_figure(adaptation: AdaptationDetail, class_names: Sequence[str]) -> go.Figure:
    """Counts of (true class, predicted class) over the labelled queries: rows truth, columns prediction.

    Zero cells are left blank and a shared folder prefix is taken off the tick labels (it is in the axis titles
    and the full names in the hover), so that 20 classes stay readable.
    """
    n = len(class_names)
    counts = [[0] * n for _ in range(n)]
    labelled = 0
    for index, truth in enumerate(adaptation.truths or []):
        if truth is None:
            continue
        counts[truth][adaptation.predictions[index]] += 1
        labelled += 1
    right = sum(counts[i][i] for i in range(n))
    positions = list(range(n))
    figure = go.Figure(
        go.Heatmap(
            z=counts, x=positions, y=positions, colorscale="Blues", zmin=0, showscale=False, xgap=1, ygap=1,
            # Zero cells stay blank so the mistakes stand out in a 20-class matrix.
            text=[[str(c) if c else "" for c in row] for row in counts], texttemplate="%{text}",
            customdata=[[(class_names[t], class_names[p]) for p in positions] for t in positions],
            hovertemplate="truth %{customdata[0]}<br>predicted %{customdata[1]}<br>%{z} queries<extra></extra>",
        )
    )
    ticks, prefix = _tick_names(class_names)
    axis = {"tickmode": "array", "tickvals": positions, "ticktext": ticks, "automargin": True}
    within = f" ({prefix}…)" if prefix else ""
    summary = (f"{right} of {labelled} labelled queries right" if labelled
               else "no labelled queries, so nothing to count")
    figure.update_layout(
        title={"text": f"{adaptation.rule_label}: {summary}"},
        xaxis={**axis, "title": {"text": f"predicted{within}"}, "tickangle": -45 if n > 6 else 0},
        yaxis={**axis, "title": {"text": f"truth{within}"}, "autorange": "reversed"},
        height=max(320, 26 * n + 160), margin=_MARGIN,
    )
    return figure


# --------------------------------------------------------------------------------------------------- the Lab page
# Figures of core.lab's quadratic study (one study, or two stored ones overlaid: colour = estimator, dash = study)
# and of the bilevel bench results. Every value drawn is computed in core.lab; the charts only place it.

_ESTIMATOR_COLOURS = {"maml": "#1f77b4", "fomaml": "#ff7f0e", "reptile": "#8c564b", "imaml": "#2ca02c",
                      "fo_b_maml": "#d62728", "fo_b_maml_sym": "#9467bd"}
_STUDY_DASHES = ("solid", "dash", "dot", "dashdot")
_IMAML_SHADES = ("#98df8a", "#2ca02c", "#1b5e20", "#0b3d0b")


def estimator_colour(label: str) -> str:
    """The colour of an estimator's curve by its label (``imaml (cg=5)``: a green, darker with more CG steps)."""
    name = label.split(" ")[0]
    if name == "imaml" and "cg=" in label:
        steps = int(label.split("cg=")[1].rstrip(")"))
        return _IMAML_SHADES[min(sum(steps > k for k in (2, 5, 10)), len(_IMAML_SHADES) - 1)]
    return _ESTIMATOR_COLOURS.get(name, _SPARE_COLOURS[sum(map(ord, name)) % len(_SPARE_COLOURS)])


def _lab_layout(figure: go.Figure, title: str, x_title: str, y_title: str, *, log_x: bool, log_y: bool = True) -> None:
    figure.update_xaxes(title={"text": x_title}, type="log" if log_x else "linear")
    figure.update_yaxes(title={"text": y_title}, type="log" if log_y else "linear", exponentformat="power")
    figure.update_layout(title={"text": title}, height=450, margin=_MARGIN, legend={"orientation": "v"})


def _positive(values: Sequence[float | None]) -> list[float | None]:
    # a log axis cannot show 0 or below; a gap says "exact to rounding" (or diverged) instead of a wrong point
    return [v if v is not None and math.isfinite(v) and v > 0 else None for v in values]


def lab_error_figure(studies: Sequence[tuple[str, QuadraticStudy]]) -> go.Figure:
    """Figure 1 left: the relative error of each estimator's meta-gradient against the inner steps (log-log)."""
    figure = go.Figure()
    for index, (name, study) in enumerate(studies):
        dash = _STUDY_DASHES[index % len(_STUDY_DASHES)]
        for curve in study.errors:
            label = curve.label if len(studies) == 1 else f"{curve.label} · {name}"
            figure.add_trace(go.Scatter(
                x=study.inner_steps, y=_positive(curve.relative_error), mode="lines", name=label,
                line={"color": estimator_colour(curve.label), "dash": dash},
                hovertemplate=f"{label}<br>T = %{{x}}: relative error %{{y:.4g}}<extra></extra>",
            ))
    _lab_layout(figure, "Meta-gradient error against the inner steps (Figure 1 left)", "inner steps T",
                "relative error ||ĝ − ∇F|| / ||∇F||", log_x=True)
    return figure


def lab_outer_figure(studies: Sequence[tuple[str, QuadraticStudy]], method: str) -> go.Figure:
    """Figure 1 right for one outer step: ``F(x_k) - F*`` over the outer iterations at each estimator's chosen rate."""
    figure = go.Figure()
    title = method
    for index, (name, study) in enumerate(studies):
        panel = study.panel(method)
        if panel is None:
            continue
        title = panel.label
        dash = _STUDY_DASHES[index % len(_STUDY_DASHES)]
        for curve in panel.curves:
            label = f"{curve.label} (rate {curve.rate:.3g})"
            label = label if len(studies) == 1 else f"{label} · {name}"
            gap = study.suboptimality(curve)
            figure.add_trace(go.Scatter(
                x=list(range(len(gap))), y=_positive(gap), mode="lines", name=label,
                line={"color": estimator_colour(curve.label), "dash": dash},
                hovertemplate=f"{label}<br>iteration %{{x}}: F − F* = %{{y:.4g}}<extra></extra>",
            ))
    _lab_layout(figure, f"Outer loss with {title}, rate tuned per estimator (Figure 1 right)", "outer iteration",
                "F(x) − F*", log_x=False)
    return figure


def lab_delta_figure(study: QuadraticStudy) -> go.Figure:
    """FO-B-MAML's error against ``delta`` with a converged inner loop, beside the closed-form biases R4 and R5."""
    sweep = study.delta_sweep
    figure = go.Figure()
    for name, measured, bias, slope in (
            ("fo_b_maml", sweep.forward_error, sweep.forward_bias, sweep.forward_slope),
            ("fo_b_maml_sym", sweep.symmetric_error, sweep.symmetric_bias, sweep.symmetric_slope)):
        colour = estimator_colour(name)
        slope_text = "slope not fitted" if slope is None else f"slope {slope:.2f}"
        figure.add_trace(go.Scatter(x=sweep.deltas, y=_positive(measured), mode="lines+markers",
                                    name=f"{name} measured ({slope_text})", line={"color": colour}))
        figure.add_trace(go.Scatter(x=sweep.deltas, y=_positive(bias), mode="lines", name=f"{name} closed-form bias",
                                    line={"color": colour, "dash": "dot"}))
    _lab_layout(figure, "FO-B-MAML's error against δ (converged inner loop)", "δ", "relative error", log_x=True)
    return figure


def bench_quadratic_figure(result: QuadraticBenchResult) -> go.Figure:
    """The bench's Figure 1 left (``bench/results/bilevel_quadratic.json``)."""
    figure = go.Figure()
    for label, values in result.relative_error.items():
        figure.add_trace(go.Scatter(x=result.inner_steps, y=_positive(values), mode="lines+markers", name=label,
                                    line={"color": estimator_colour(label)}))
    _lab_layout(figure, "Bench: meta-gradient error against the inner steps", "inner steps T", "relative error",
                log_x=True)
    return figure


def bench_smoothness_figure(result: SmoothnessResult) -> go.Figure:
    """Local smoothness of the meta-objective against ``||grad||`` per trajectory, with the fit ``L0 + L1 ||grad||``."""
    figure = go.Figure()
    trajectories = sorted({p.trajectory for p in result.points})
    for trajectory in trajectories:
        points = [p for p in result.points if p.trajectory == trajectory]
        figure.add_trace(go.Scatter(
            x=[p.meta_grad_norm for p in points], y=[p.smoothness for p in points], mode="markers", name=trajectory,
            customdata=[p.iteration for p in points],
            hovertemplate=f"{trajectory}<br>iteration %{{customdata}}<br>||∇|| = %{{x:.4g}}, L = %{{y:.4g}}"
                          "<extra></extra>"))
    norms = sorted(p.meta_grad_norm for p in result.points if p.meta_grad_norm > 0)
    if norms:
        xs = [norms[0] * (norms[-1] / norms[0]) ** (i / 49) for i in range(50)]
        figure.add_trace(go.Scatter(x=xs, y=[result.L0 + result.L1 * x for x in xs], mode="lines",
                                    name=f"fit L0 + L1·||∇||: {result.L0:.3g} + {result.L1:.3g}·||∇||",
                                    line={"color": "black", "dash": "dash"}))
    _lab_layout(figure, f"Smoothness against the meta-gradient norm ({result.problem})", "||∇F||",
                "local smoothness L", log_x=True)
    return figure


def bench_mnist1d_figure(result: Mnist1dResult) -> go.Figure:
    """Validation accuracy against wall time per estimator (MNIST-1D few-shot)."""
    figure = go.Figure()
    for estimator in dict.fromkeys(p.estimator for p in result.curves):
        points = sorted((p for p in result.curves if p.estimator == estimator), key=lambda p: p.seconds)
        figure.add_trace(go.Scatter(
            x=[p.seconds for p in points], y=[p.val_accuracy for p in points], mode="lines+markers", name=estimator,
            line={"color": estimator_colour(estimator)}, customdata=[p.iteration for p in points],
            hovertemplate=f"{estimator}<br>%{{x:.1f}} s (iteration %{{customdata}}): %{{y:.3f}}<extra></extra>"))
    _lab_layout(figure, "MNIST-1D: validation accuracy against wall time", "seconds", "validation accuracy",
                log_x=False, log_y=False)
    return figure


def bench_memory_figure(result: MemoryResult) -> go.Figure:
    """Peak extra memory of the meta-gradient against channels (left) and inner steps (right), per estimator."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("against channels", "against inner steps"))
    estimators = list(dict.fromkeys(r.estimator for r in result.rows))
    for column, axis in ((1, "channels"), (2, "inner_steps")):
        for estimator in estimators:
            rows = sorted((r for r in result.rows if r.estimator == estimator), key=lambda r: getattr(r, axis))
            other = "inner_steps" if axis == "channels" else "channels"
            groups = sorted({getattr(r, other) for r in rows})
            for value in groups:
                chosen = [r for r in rows if getattr(r, other) == value]
                if len(chosen) < 2:
                    continue
                figure.add_trace(go.Scatter(
                    x=[getattr(r, axis) for r in chosen], y=[r.peak_extra_mb for r in chosen], mode="lines+markers",
                    name=f"{estimator} ({other.replace('_', ' ')} {value})", legendgroup=estimator,
                    line={"color": estimator_colour(estimator)}), row=1, col=column)
        figure.update_xaxes(title={"text": axis.replace("_", " ")}, type="log", row=1, col=column)
        figure.update_yaxes(title={"text": "peak extra MB"}, type="log", row=1, col=column)
    figure.update_layout(title={"text": "Peak memory of the meta-gradient"}, height=450, margin=_MARGIN)
    return figure
