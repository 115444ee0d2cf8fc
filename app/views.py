"""Rendering of stored records: one view of a run serves both "just ran" (Adapt) and "browse" (Runs).

Everything here reads :class:`core.store.RunDetail` / checkpoint metadata and arranges widgets; the only
values it derives are counts and formatting.
"""

from __future__ import annotations

import json

import streamlit as st

from app import charts, gallery
from app.formatting import percent, when
from app.resources import model_input_images, shown_images
from app.trace_view import render_traces
from core.store import RunDetail, Store, run_detail_to_dict

RUNS_PAGE = "screens/runs.py"
RUN_TABS = ("Queries", "Support set", "Loss per step", "α and β", "Confusion matrix")
ADAPT_PAGE = "screens/adapt.py"


def shots_text(detail: RunDetail) -> str:
    """``5-way 1-shot``, or the shots of each class when they differ (``3-way 4/3/2-shot``)."""
    shots = detail.config.get("shots_per_class") or []
    if shots and len(set(shots)) > 1:
        return f"{detail.n_way}-way {'/'.join(str(n) for n in shots)}-shot"
    return f"{detail.n_way}-way {detail.k_shot}-shot"


def render_run(store: Store, detail: RunDetail, key: str = "run") -> None:
    """The whole stored run: settings, accuracy per rule, query gallery, confusion, support curves, alpha/beta."""
    st.subheader(f"Run #{detail.id}" + (f" · {detail.name}" if detail.name else ""))
    where = detail.dataset or detail.source
    if detail.split:
        where += f" / {detail.split}"
    st.caption(
        f"{when(detail.created_at)} · {detail.source}: {where} · {shots_text(detail)}, "
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

    # Tabs rerun on a switch, so only the open one is built and sent: the first view (the queries) draws no
    # chart, and the browser does not have to load and parse the chart library (4.6 MB) before it shows a result.
    queries, support, curves, traces, confusion = st.tabs(RUN_TABS, key=f"{key}_tab", on_change="rerun")
    with queries:
        if queries.open:
            model_view = _model_view_toggle(key)
            _render_gallery(detail, _gallery_images(store, detail, model_view), key, pixelated=model_view)
    with support:
        if support.open:
            model_view = _model_view_toggle(key)
            images = _gallery_images(store, detail, model_view)
            thumbnails = [
                gallery.Thumbnail(images[item.image_sha256],
                                  f"{detail.class_names[item.label]} · {_file(item.source_name)}")
                for item in detail.items
                if item.role == "support" and item.label is not None
            ]
            gallery.show(gallery.thumbnails_html(thumbnails, pixelated=model_view))
    with curves:
        if curves.open:
            st.plotly_chart(charts.support_curves(detail.adaptations), key=f"{key}_support", width="stretch")
    with traces:
        if traces.open:
            render_traces(detail, key)
    with confusion:
        if confusion.open:
            _render_confusion(detail, key)

    st.download_button(
        "Download this run (JSON)",
        lambda: json.dumps(run_detail_to_dict(detail), indent=1),  # built on click, not on every render
        file_name=f"run-{detail.id}.json",
        mime="application/json",
        key=f"{key}_download",
        on_click="ignore",
    )


def _model_view_toggle(key: str) -> bool:
    return st.toggle(
        "Show images as the model sees them", key=f"{key}_model_view",
        help="Resized, turned grey or colour and inverted exactly as the checkpoint's preprocessing does.",
    )


def _render_confusion(detail: RunDetail, key: str) -> None:
    labelled = [a for a in detail.adaptations if a.truths is not None]
    if not labelled:
        st.info("No query was labelled, so there is nothing to compare the predictions with.")
        return
    names = [a.rule_label for a in labelled]
    chosen = st.segmented_control("Rule", names, default=names[0], key=f"{key}_confusion_rule") or names[0]
    adaptation = labelled[names.index(chosen)]
    st.plotly_chart(charts.confusion_figure(adaptation, detail.class_names), key=f"{key}_confusion",
                    width="stretch")


def _file(source_name: str) -> str:
    return source_name.rsplit("/", 1)[-1]


def _gallery_images(store: Store, detail: RunDetail, model_view: bool) -> dict[str, bytes]:
    sha256s = tuple(dict.fromkeys(item.image_sha256 for item in detail.items))
    if model_view:
        spec = detail.config.get("image_spec") or (detail.checkpoint.image_spec if detail.checkpoint else None)
        if spec:
            return model_input_images(store.url, sha256s, json.dumps(spec, sort_keys=True))
        st.caption("This run does not record its image preprocessing; showing the stored images.")
    return shown_images(store.url, sha256s)


def _render_gallery(detail: RunDetail, images: dict[str, bytes], key: str, pixelated: bool) -> None:
    queries = [item for item in detail.items if item.role == "query"]
    names = detail.class_names
    example_of: dict[int, bytes] = {}
    for item in detail.items:
        if item.role == "support" and item.label is not None:
            example_of.setdefault(item.label, images[item.image_sha256])
    wrong_any = [
        any(a.truths is not None and a.truths[i] is not None and a.predictions[i] != a.truths[i]
            for a in detail.adaptations)
        for i in range(len(queries))
    ]
    only_mistakes = st.toggle(
        f"Only queries some rule got wrong ({sum(wrong_any)})", key=f"{key}_mistakes", disabled=not any(wrong_any)
    )
    cells = []
    for index, item in enumerate(queries):
        if only_mistakes and not wrong_any[index]:
            continue
        truth = item.label
        predictions = []
        for adaptation in detail.adaptations:
            guess = adaptation.predictions[index]
            correct = None if truth is None else guess == truth
            predictions.append(gallery.Prediction(
                rule=adaptation.rule_label, guess=names[guess], confidence=adaptation.confidences[index],
                correct=correct, guess_example=example_of.get(guess) if correct is False else None,
            ))
        cells.append(gallery.QueryCell(images[item.image_sha256], _file(item.source_name),
                                       None if truth is None else names[truth], predictions))
    gallery.show(gallery.query_gallery_html(cells, pixelated=pixelated))
