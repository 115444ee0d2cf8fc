"""Rendering of stored records: one view of a run serves both "just ran" (Adapt) and "browse" (Runs).

Everything here reads :class:`core.store.RunDetail` / checkpoint metadata and arranges widgets; the only
values it derives are counts and formatting.
"""

from __future__ import annotations

import json

import streamlit as st

from app import charts
from app.formatting import percent, when
from app.trace_view import render_traces
from core.store import RunDetail, Store, run_detail_to_dict

RUNS_PAGE = "pages/runs.py"
ADAPT_PAGE = "pages/adapt.py"
GALLERY_COLUMNS = 5


def _image(store: Store, sha256: str, caption: str | None = None, width: int = 84) -> None:
    data, _mime = store.get_image(sha256)
    st.image(data, caption=caption, width=width)


def render_run(store: Store, detail: RunDetail, key: str = "run") -> None:
    """The whole stored run: settings, accuracy per rule, query gallery, support curves, alpha/beta traces."""
    st.subheader(f"Run #{detail.id}")
    where = detail.dataset or detail.source
    if detail.split:
        where += f" / {detail.split}"
    st.caption(
        f"{when(detail.created_at)} · {detail.source}: {where} · {detail.n_way}-way {detail.k_shot}-shot, "
        f"{detail.config.get('queries', detail.n_query)} queries · checkpoint {detail.checkpoint_name} · "
        f"{detail.steps} steps · device {detail.device}"
        + ("" if detail.total_seconds is None else f" · {detail.total_seconds:.2f} s in all")
        + (f" · {detail.note}" if detail.note else "")
    )
    st.page_link(RUNS_PAGE, label=f"Permalink: Runs page, ?run={detail.id}", query_params={"run": str(detail.id)})
    if detail.status == "failed":
        st.error(f"This run failed: {detail.error}")
    if not detail.adaptations:
        st.info("No rule finished adapting in this run, so there are no predictions to show.")
        return

    labelled = detail.config.get("labelled_queries")
    columns = st.columns(len(detail.adaptations))
    for column, adaptation in zip(columns, detail.adaptations):
        with column:
            if adaptation.truths is None:
                st.metric(adaptation.rule_label, "no labels", help="The queries were not labelled")
            else:
                st.metric(f"{adaptation.rule_label} accuracy", percent(adaptation.accuracy))
            counted = "" if labelled is None else f" · {labelled} labelled queries"
            st.caption(f"{adaptation.seconds:.2f} s · head {adaptation.head_init}{counted}")

    _render_gallery(store, detail, key)

    with st.expander(f"Support set ({sum(1 for i in detail.items if i.role == 'support')} images)"):
        for label, name in enumerate(detail.class_names):
            shots = [item for item in detail.items if item.role == "support" and item.label == label]
            st.markdown(f"**{name}**")
            cells = st.columns(max(len(shots), GALLERY_COLUMNS))
            for cell, item in zip(cells, shots):
                with cell:
                    _image(store, item.image_sha256, width=64)

    st.markdown("#### Support loss and accuracy per step")
    st.plotly_chart(charts.support_curves(detail.adaptations), key=f"{key}_support", width="stretch")

    render_traces(detail, key)

    st.download_button(
        "Download this run (JSON)",
        json.dumps(run_detail_to_dict(detail), indent=1),
        file_name=f"run-{detail.id}.json",
        mime="application/json",
        key=f"{key}_download",
    )


def _render_gallery(store: Store, detail: RunDetail, key: str) -> None:
    queries = [item for item in detail.items if item.role == "query"]
    names = detail.class_names
    wrong_any = [
        any(a.truths is not None and a.truths[i] is not None and a.predictions[i] != a.truths[i]
            for a in detail.adaptations)
        for i in range(len(queries))
    ]
    st.markdown("#### Queries and predictions")
    only_mistakes = st.toggle(
        f"Only queries some rule got wrong ({sum(wrong_any)})", key=f"{key}_mistakes", disabled=not any(wrong_any)
    )
    shown = [i for i in range(len(queries)) if wrong_any[i] or not only_mistakes]
    for start in range(0, len(shown), GALLERY_COLUMNS):
        cells = st.columns(GALLERY_COLUMNS)
        for cell, index in zip(cells, shown[start : start + GALLERY_COLUMNS]):
            item = queries[index]
            with cell, st.container(border=True):
                _image(store, item.image_sha256, caption=item.source_name.rsplit("/", 1)[-1])
                truth = item.label
                st.markdown(f"truth: **{names[truth]}**" if truth is not None else "truth: _unlabelled_")
                lines = []
                for adaptation in detail.adaptations:
                    guess = adaptation.predictions[index]
                    confidence = adaptation.confidences[index]
                    mark = "" if truth is None else (" :green[✓]" if guess == truth else " :red[✗ wrong]")
                    lines.append(f"{adaptation.rule_label}: **{names[guess]}** {percent(confidence)}{mark}")
                st.markdown("  \n".join(lines))
