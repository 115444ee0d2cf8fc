"""Figures of stored runs, built from AdaptationDetail records: what a reader of the α/β charts relies on."""

from __future__ import annotations

import math

import pytest
import torch

from app import charts
from core.store import AdaptationDetail
from tests.app.builders import synthetic_spread
from tests.tolerances import gamma

CONV4 = {"name": "conv4", "filters": 64, "n_blocks": 4, "n_classes": 5}
# The ten tensors Conv4's inner loop updates, deliberately out of order (as a store could return them).
CONV4_INNER = ["head.bias", "features.0.weight", "features.0.bias", "features.4.weight", "features.4.bias",
               "features.8.weight", "features.8.bias", "features.12.weight", "features.12.bias", "head.weight"]
CONV4_DEPTH_ORDER = ["features.0.weight", "features.0.bias", "features.4.weight", "features.4.bias",
                     "features.8.weight", "features.8.bias", "features.12.weight", "features.12.bias",
                     "head.weight", "head.bias"]
READABLE_ORDER = ["block 1 conv weight", "block 1 conv bias", "block 2 conv weight", "block 2 conv bias",
                  "block 3 conv weight", "block 3 conv bias", "block 4 conv weight", "block 4 conv bias",
                  "head weight", "head bias"]


def adaptation(rule="alfa", steps=3, layers=CONV4_INNER, alpha=None, beta=None, truths=None, predictions=None,
               label=None) -> AdaptationDetail:
    """A stored adaptation; ``alpha(step, index)`` / ``beta(step, index)`` give the traced values."""
    alpha = alpha or (lambda j, i: 0.1 * (i + 1) - 0.05 * j)
    beta = beta or (lambda j, i: 1.0 - 0.01 * i + 0.02 * j)
    predictions = predictions if predictions is not None else [0, 1, 1]
    return AdaptationDetail(
        rule=rule, rule_label=label or {"alfa": "ALFA", "sgd": "SGD (MAML)"}.get(rule, rule), steps=steps,
        head_init="zero", accuracy=0.5, query_loss=1.0, seconds=0.1, predictions=predictions,
        probabilities=[[1.0]] * len(predictions), truths=truths, confidences=[1.0] * len(predictions),
        support_loss=[1.0 - 0.1 * j for j in range(steps + 1)], support_accuracy=[0.1 * j for j in range(steps + 1)],
        traces=[{layer: {"alpha": alpha(j, i), "beta": beta(j, i)} for i, layer in enumerate(layers)}
                for j in range(steps)],
    )


def sgd(steps=3) -> AdaptationDetail:
    return adaptation("sgd", steps, alpha=lambda j, i: 0.4, beta=lambda j, i: 1.0)


def reference_lines(figure) -> set[tuple[str, float]]:
    """(y axis, y) of every horizontal line drawn across a panel."""
    return {(shape.yref, shape.y0) for shape in figure.layout.shapes if shape.type == "line" and shape.y0 == shape.y1}


def test_heatmap_rows_are_readable_layers_in_depth_order_with_exact_values():
    record = adaptation()
    figure = charts.layer_heatmap(record, CONV4)
    assert [trace.type for trace in figure.data] == ["heatmap", "heatmap"]
    alpha, beta = figure.data
    assert list(alpha.y) == READABLE_ORDER and list(beta.y) == READABLE_ORDER
    assert figure.layout.yaxis.autorange == "reversed"  # input at the top, head at the bottom
    assert list(alpha.z[-1]) == [record.traces[j]["head.bias"]["alpha"] for j in range(3)]
    # block 1 conv weight is the second tensor recorded (beta = 1 - 0.01 i + 0.02 j with i = 1, j = 2).
    assert beta.z[0][2] == pytest.approx(1.0 - 0.01 + 0.04)
    assert alpha.customdata[-1][0] == "head.bias"  # the raw name is in the hover
    assert "%{z:.7g}" in alpha.hovertemplate
    # Diverging scales centred where the values mean something: α at 0 (no step), β at 1 (weights kept).
    assert (alpha.zmid, beta.zmid) == (0.0, 1.0)


def test_every_alpha_beta_chart_of_a_run_shares_one_step_axis():
    short, long = adaptation(steps=3), adaptation(steps=5)
    steps = charts.trace_steps([short, long])
    assert steps == 5
    for figure in (charts.layer_heatmap(short, CONV4, steps), charts.layer_lines(short, CONV4, steps),
                   charts.rules_compared([short, long]), charts.spread_figure(short, spread_of([long]), "head.weight",
                                                                              CONV4, steps)):
        axes = [figure.layout[name] for name in figure.layout if name.startswith("xaxis")]
        assert len(axes) == 2
        assert all(tuple(axis.range) == (-0.5, 4.5) and list(axis.tickvals) == [0, 1, 2, 3, 4] for axis in axes)
        assert all(axis.title.text == "inner step" for axis in axes)
    support = charts.support_curves([short, long])
    axes = [support.layout[name] for name in support.layout if name.startswith("xaxis")]
    # Support values come before each step and once more after the last ("end"): one extra tick on the same grid.
    assert all(tuple(axis.range) == (-0.5, 5.5) and list(axis.ticktext) == ["0", "1", "2", "3", "4", "end"]
               for axis in axes)


def test_lines_are_coloured_by_depth_with_a_colour_bar_and_reference_lines():
    figure = charts.layer_lines(adaptation(), CONV4)
    lines = [trace for trace in figure.data if trace.mode == "lines+markers"]
    assert len(lines) == 2 * len(CONV4_INNER)
    assert not any(trace.showlegend for trace in figure.data)  # no 10-entry legend
    assert [trace.name for trace in lines[: len(CONV4_INNER)]] == READABLE_ORDER
    colours = {trace.name: trace.line.color for trace in lines}
    assert colours["block 1 conv weight"] == colours["block 1 conv bias"]  # same depth, same colour
    assert len({colours[name] for name in READABLE_ORDER}) == 5  # four blocks and the head
    bars = [trace for trace in figure.data if trace.marker is not None and trace.marker.showscale]
    assert len(bars) == 1 and list(bars[0].marker.colorbar.ticktext) == ["input", "head"]
    assert reference_lines(figure) == {("y", 0.0), ("y2", 1.0)}


def test_a_rule_that_is_the_same_everywhere_is_one_line_not_one_per_layer():
    figure = charts.layer_lines(sgd(), CONV4)
    assert len(figure.data) == 2  # one per panel, and no colour bar
    assert figure.data[0].name == "α = 0.4 at every layer and step"
    assert figure.data[1].name == "β = 1 at every layer and step"
    assert reference_lines(figure) == {("y", 0.0), ("y2", 1.0)}
    assert charts.constant_text(sgd()) == "SGD (MAML): α = 0.4 and β = 1 at every layer and step"
    assert charts.constant_text(adaptation()) is None
    nan = adaptation(alpha=lambda j, i: math.nan, beta=lambda j, i: 1.0)
    assert charts.constant_value(nan, "alpha") is None and charts.constant_value(nan, "beta") == 1.0


def test_rules_overlaid_on_one_figure_with_bands_and_one_line_for_sgd():
    alfa = adaptation()
    figure = charts.rules_compared([alfa, sgd()])
    legend = [trace.name for trace in figure.data if trace.showlegend]
    assert legend == ["ALFA (mean over layers, band: min–max)", "SGD (MAML) (same at every layer)"]
    assert len([t for t in figure.data if t.legendgroup == "SGD (MAML)"]) == 2  # one per panel
    assert len([t for t in figure.data if t.legendgroup == "ALFA"]) == 6  # band top, band bottom, mean, per panel
    mean = next(t for t in figure.data if t.name and t.name.startswith("ALFA") and t.xaxis == "x")
    step0 = [alfa.traces[0][layer]["alpha"] for layer in CONV4_INNER]
    assert mean.y[0] == pytest.approx(sum(step0) / len(step0))
    assert mean.customdata[0] == pytest.approx((min(step0), max(step0)))
    assert reference_lines(figure) == {("y", 0.0), ("y2", 1.0)}


def test_without_a_backbone_the_raw_names_are_shown():
    figure = charts.layer_heatmap(adaptation(layers=["w1", "w0"]), None)
    assert list(figure.data[0].y) == ["w1", "w0"]
    unknown = charts.layer_heatmap(adaptation(layers=["features.0.weight", "rule.x"]), CONV4)
    assert list(unknown.data[0].y) == ["block 1 conv weight", "rule.x"]


def test_support_curves_keep_one_colour_per_rule():
    figure = charts.support_curves([adaptation(), sgd()])
    assert len(figure.data) == 4
    assert figure.data[0].line.color == figure.data[1].line.color == charts.rule_colour("alfa")
    assert figure.data[2].line.color == charts.rule_colour("sgd") != charts.rule_colour("alfa")


def test_confusion_matrix_counts_labelled_queries_only():
    names = ["Tagalog/character01", "Tagalog/character02", "Tagalog/character03"]
    record = adaptation(truths=[0, 0, 1, None, 2], predictions=[0, 1, 1, 2, 2])
    figure = charts.confusion_figure(record, names)
    heatmap = figure.data[0]
    assert [list(row) for row in heatmap.z] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]  # rows truth, columns prediction
    assert list(heatmap.text[0]) == ["1", "1", ""]  # zero cells stay blank
    assert list(figure.layout.xaxis.ticktext) == ["character01", "character02", "character03"]
    assert figure.layout.xaxis.title.text == "predicted (Tagalog/…)" and figure.layout.yaxis.title.text.startswith("truth")
    assert "3 of 4 labelled queries right" in figure.layout.title.text
    assert list(heatmap.customdata[0][1]) == ["Tagalog/character01", "Tagalog/character02"]


def test_confusion_matrix_of_twenty_classes_and_of_unlabelled_queries():
    names = [f"{'Tagalog' if c % 2 else 'Japanese_(katakana)'}/character{c // 2:02d}" for c in range(20)]
    record = adaptation(truths=list(range(20)), predictions=[(c + (c == 3)) % 20 for c in range(20)])
    figure = charts.confusion_figure(record, names)
    assert len(figure.data[0].z) == 20 and figure.layout.height >= 20 * 26
    assert figure.layout.xaxis.ticktext[0] == "Japanese…/character00"
    assert figure.layout.xaxis.ticktext[1] == "Tagalog/character00"
    unlabelled = charts.confusion_figure(adaptation(truths=None), names[:3])
    assert "no labelled queries" in unlabelled.layout.title.text


def spread_of(records):
    from core.rule_spread import RuleSpread, spread_of_traces

    return RuleSpread(checkpoint="c.safetensors", checkpoint_sha256="0" * 64, rule="alfa",
                      steps=len(records[0].traces), n_way=5, k_shot=1, n_query=5, episodes=len(records), seed=0,
                      head_init="zero", data="omniglot: Tagalog", accuracies=[0.5] * len(records),
                      layers=spread_of_traces([r.traces for r in records]))


def test_spread_figure_draws_this_episode_against_the_held_out_band():
    held_out = [adaptation(alpha=lambda j, i, e=e: 0.1 * e + j) for e in range(4)]
    spread = spread_of(held_out)
    this = adaptation(alpha=lambda j, i: 5.0)
    figure = charts.spread_figure(this, spread, "head.weight", CONV4)
    episode = [t for t in figure.data if t.name == "this episode"]
    assert len(episode) == 2 and list(episode[0].y) == [5.0, 5.0, 5.0]
    band = [t for t in figure.data if t.fill == "tonexty" and t.xaxis == "x"]
    assert len(band) == 2  # min–max, mean ± std
    assert list(band[0].y) == pytest.approx([0.0, 1.0, 2.0])  # the minimum over episodes
    assert "head weight" in figure.layout.title.text and "4 held-out episodes" in figure.layout.title.text
    assert reference_lines(figure) == {("y", 0.0), ("y2", 1.0)}
    with pytest.raises(ValueError, match="no layer 'nope'"):
        charts.spread_figure(this, spread, "nope", CONV4)


def test_the_reading_guide_explains_negative_alpha_and_large_beta():
    guide = charts.ALPHA_BETA_GUIDE
    assert "negative α" in guide and "ascent" in guide
    assert "β < 1 shrinks" in guide and "decay" in guide and "β near 2 nearly doubles" in guide


def test_adaptivity_figure_has_a_series_per_step_and_panel_with_bars_from_minimum_to_maximum():
    spread = synthetic_spread(CONV4_INNER, steps=3, episodes=4, episode_effect=0.01)
    figure = charts.adaptivity_figure(spread, CONV4)
    colours = set()
    for axis, key in (("x", "alpha"), ("x2", "beta")):
        series = [trace for trace in figure.data if trace.xaxis == axis]
        assert [trace.name for trace in series] == ["step 0", "step 1", "step 2"]
        assert [trace.showlegend for trace in series] == [axis == "x"] * 3  # one legend entry per step
        for j, trace in enumerate(series):
            values = [getattr(spread.layer(name), key) for name in CONV4_DEPTH_ORDER]
            assert list(trace.y) == [v.mean[j] for v in values]
            # Each layer's marker sits in its own slot, the steps side by side.
            assert all(abs(x - index) < 0.5 for index, x in enumerate(trace.x))
            # The bar is drawn from mean - arrayminus to mean + array: one rounding for each difference and one
            # for the sum, so the ends are the minimum and maximum up to gamma_3 of the values involved.
            bars = trace.error_y
            assert not bars.symmetric
            for mean, up, down, v in zip(trace.y, bars.array, bars.arrayminus, values):
                bound = gamma(3, torch.float64) * (abs(mean) + abs(v.maximum[j]) + abs(v.minimum[j]))
                assert abs(mean + up - v.maximum[j]) <= bound and abs(mean - down - v.minimum[j]) <= bound
            colours.add(trace.marker.color)
        x_axis = figure.layout["xaxis" if axis == "x" else "xaxis2"]
        assert list(x_axis.ticktext) == READABLE_ORDER
    assert len(colours) == 3  # coloured by step, the same colours in both panels
    assert reference_lines(figure) == {("y", 0.0), ("y2", 1.0)}
    assert "ALFA: α and β per layer over 4 held-out episodes (5-way 1-shot)" in figure.layout.title.text


def test_adaptivity_figure_of_a_fixed_schedule_has_no_bars_and_keeps_raw_names_without_a_backbone():
    spread = synthetic_spread(["w", "b"], steps=2, episodes=3)
    figure = charts.adaptivity_figure(spread)
    assert len(figure.data) == 4
    for trace in figure.data:
        # The mean of three equal values is off them by at most gamma_3 (a sum, then a division): no bar to see.
        for mean, up, down in zip(trace.y, trace.error_y.array, trace.error_y.arrayminus):
            assert 0 <= up <= gamma(3, torch.float64) * abs(mean) and 0 <= down <= gamma(3, torch.float64) * abs(mean)
    assert list(figure.layout.xaxis.ticktext) == ["w", "b"]
