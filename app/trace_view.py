"""The alpha/beta traces of a stored run: how each rule set its per-layer learning rate and weight multiplier.

Three views of the rules chosen (all by default) — a layer x step heatmap, lines coloured by depth, all rules on
one figure — plus, on demand, this episode against the spread over held-out episodes of the same checkpoint.
Tabs rerun on a switch so that only the open one draws: opening a run builds at most one figure per rule, and
nothing is adapted until the held-out comparison is switched on.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import charts
from app.formatting import percent
from app.resources import cached_loader, short_path
from core.checkpoint import CheckpointError
from core.device import pick_device
from core.rule_spread import DEFAULT_EPISODES, HeldOutDataMissing, RuleSpread, VarianceShares, rule_spread
from core.settings import omniglot_root
from core.store import AdaptationDetail, RunDetail

TABS = ("Heatmap", "Lines", "Rules compared", "Against held-out episodes")


def render_traces(detail: RunDetail, key: str) -> None:
    """alpha and beta per layer and step of the run's adaptations (a heading, a rule choice, then tabbed views)."""
    traced = [a for a in detail.adaptations if any(a.traces)]
    st.markdown("#### α and β per layer and step")
    if not traced:
        st.info("No inner steps were taken (0 steps), so there are no α/β traces.")
        return
    backbone = detail.checkpoint.backbone if detail.checkpoint is not None else None
    steps = charts.trace_steps(traced)
    positions = list(range(len(traced)))
    chosen = st.multiselect(
        "Rules", positions, default=positions, format_func=lambda i: traced[i].rule_label, key=f"{key}_trace_rules"
    )
    shown = [traced[i] for i in chosen]
    st.caption(charts.ALPHA_BETA_GUIDE)
    if backbone is None:
        st.caption("Layers go by their tensor names: this run's checkpoint is no longer in the store.")
    if not shown:
        st.info("Choose at least one rule to see its α and β.")
        return
    heatmap, lines, compared, spread = st.tabs(TABS, key=f"{key}_trace_tab", on_change="rerun")
    with heatmap:
        if heatmap.open:
            for position in chosen:
                fixed = charts.constant_text(traced[position])
                if fixed is not None:
                    st.caption(fixed + ": nothing to map.")
                else:
                    st.plotly_chart(charts.layer_heatmap(traced[position], backbone, steps),
                                    key=f"{key}_heatmap_{position}", width="stretch")
    with lines:
        if lines.open:
            for position in chosen:
                st.plotly_chart(charts.layer_lines(traced[position], backbone, steps),
                                key=f"{key}_lines_{position}", width="stretch")
    with compared:
        if compared.open:
            st.plotly_chart(charts.rules_compared(shown, steps), key=f"{key}_compared", width="stretch")
    with spread:
        if spread.open:
            _render_spread(detail, shown, backbone, steps, key)


@st.cache_data(show_spinner=False, max_entries=32)
def _held_out_spread(
    path: str, sha256: str, rule: str, steps: int, n_way: int, k_shot: int, head_init: str, data_root: str
) -> RuleSpread:
    # Keyed by the file's hash (a checkpoint retrained in place is measured afresh) and by where the data is read.
    return rule_spread(
        path, rule, steps, n_way, k_shot, episodes=DEFAULT_EPISODES, head_init=head_init, device=pick_device(),
        loader=cached_loader, omniglot_root=data_root, expected_sha256=sha256,
    )


def _departure_text(departure: float) -> str:
    if departure == float("inf"):
        return "differs from values that never varied"
    return f"up to {departure:.1f} std from the mean"


def _shares_text(symbol: str, shares: VarianceShares) -> str:
    if shares.episode is None:
        return f"{symbol} is the same in every episode and step"
    return (f"of {symbol}'s variation the episode explains {percent(shares.episode)}, the step "
            f"{percent(shares.step)}, their interaction {percent(shares.interaction)}")


def _render_spread(
    detail: RunDetail, shown: list[AdaptationDetail], backbone: dict | None, steps: int, key: str
) -> None:
    checkpoint = detail.checkpoint
    if checkpoint is None:
        st.info("This run's checkpoint is no longer in the store, so there are no held-out episodes to compare with.")
        return
    if not st.toggle(f"Compare with the spread over {DEFAULT_EPISODES} held-out episodes", key=f"{key}_spread_on"):
        st.caption(
            f"Adapts {DEFAULT_EPISODES} seeded episodes of the checkpoint's held-out classes with the same rule, "
            f"settings ({detail.n_way}-way {detail.k_shot}-shot, {steps} steps) and head, and shows where this "
            "episode's α and β lie in their spread."
        )
        return
    if not Path(checkpoint.path).is_file():
        st.info(f"The checkpoint file {short_path(checkpoint.path)} is not on this machine.")
        return
    adaptation = shown[0]
    if len(shown) > 1:
        position = st.selectbox("Rule", range(len(shown)), format_func=lambda i: shown[i].rule_label,
                                key=f"{key}_spread_rule")
        adaptation = shown[position]
    try:
        with st.spinner(
            f"Adapting {DEFAULT_EPISODES} held-out episodes with {adaptation.rule_label} ({detail.n_way}-way "
            f"{detail.k_shot}-shot, {len(adaptation.traces)} steps) to measure the spread…", show_time=True
        ):
            spread = _held_out_spread(
                checkpoint.path, checkpoint.file_sha256, adaptation.rule, len(adaptation.traces), detail.n_way,
                detail.k_shot, adaptation.head_init, str(omniglot_root()),
            )
    except HeldOutDataMissing as missing:
        st.info(f"No held-out episodes to compare with: {missing}.")
        return
    except (ValueError, CheckpointError) as error:
        st.error(f"The held-out spread could not be measured: {error}")
        return
    labels = {label.name: label.label for label in charts.trace_layers(adaptation, backbone)}
    departures = {
        layer.layer: layer.departure(
            [step[layer.layer]["alpha"] for step in adaptation.traces if layer.layer in step],
            [step[layer.layer]["beta"] for step in adaptation.traces if layer.layer in step],
        )
        for layer in spread.layers
    }
    # Most unusual layer first: that is where this episode made the rule behave differently.
    ordered = sorted(departures, key=lambda name: -departures[name])
    layer = st.selectbox(
        "Layer (the one where this episode is furthest from the held-out mean first)", ordered,
        format_func=lambda name: f"{labels.get(name, name)} — {_departure_text(departures[name])}",
        key=f"{key}_spread_layer",
    )
    st.plotly_chart(charts.spread_figure(adaptation, spread, layer, backbone, steps), key=f"{key}_spread",
                    width="stretch")
    chosen = spread.layer(layer)
    st.caption(
        f"Held-out episodes: {spread.data}, {spread.n_way}-way {spread.k_shot}-shot, {spread.n_query} queries per "
        f"class, seed {spread.seed}, {spread.head_init} head; their mean accuracy "
        f"{percent(sum(spread.accuracies) / len(spread.accuracies))}. For this layer, "
        f"{_shares_text('α', chosen.alpha_shares)}; {_shares_text('β', chosen.beta_shares)}."
    )
