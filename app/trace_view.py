"""The alpha/beta traces of a stored run: how each rule set its per-layer learning rate and weight decay."""

from __future__ import annotations

import streamlit as st

from app import charts
from core.store import RunDetail


def render_traces(detail: RunDetail, key: str) -> None:
    """alpha and beta per layer and step of the run's adaptations (a heading, then the charts)."""
    traced = [a for a in detail.adaptations if any(a.traces)]
    st.markdown("#### α and β per layer and step")
    if not traced:
        st.info("No inner steps were taken (0 steps), so there are no α/β traces.")
    else:
        labels = [a.rule_label for a in traced]
        chosen = st.selectbox("Rule", labels, key=f"{key}_trace_rule")
        adaptation = traced[labels.index(chosen)]
        left, right = st.columns(2)
        with left:
            st.plotly_chart(charts.trace_figure(adaptation, "alpha"), key=f"{key}_alpha", width="stretch")
        with right:
            st.plotly_chart(charts.trace_figure(adaptation, "beta"), key=f"{key}_beta", width="stretch")
