"""Rendering of stored records: one view of a run serves both "just ran" (Adapt) and "browse" (Runs).

Everything here reads :class:`core.store.RunDetail` / checkpoint metadata and arranges widgets; the only
values it derives are counts and formatting.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import streamlit as st

from app import charts
from core.rules import RULE_LABELS
from core.store import RunDetail, RunSummary, Store, run_detail_to_dict

TRAIN_COMMAND = "python -m core train --config configs/omniglot/conv4_alfa_maml.toml"
RUNS_PAGE = "pages/runs.py"
ADAPT_PAGE = "pages/adapt.py"
GALLERY_COLUMNS = 5


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def when(moment: datetime) -> str:
    """A stored UTC time in the server's local time zone, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def rule_label(rule: str) -> str:
    return RULE_LABELS.get(rule, rule)


def is_image_classifier(metadata: dict[str, Any]) -> bool:
    return metadata.get("task_kind", "classification") == "classification" and bool(metadata.get("image"))


# ------------------------------------------------------------------------------------------- checkpoints


def _options(config: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in config.items() if k != "name")


def _image_text(image: dict[str, Any]) -> str:
    if not image:
        return "— (not an image model)"
    size = image.get("size")
    return f"{image.get('channels')}×{size}×{size}" + (", inverted" if image.get("invert") else "")


def checkpoint_rows(metadata: dict[str, Any]) -> list[dict[str, str]]:
    """The facts about a checkpoint worth reading before using it, as (field, value) rows."""
    backbone = metadata.get("backbone") or {}
    rule = metadata.get("rule") or {}
    image = metadata.get("image") or {}
    training = metadata.get("training") or {}
    data = training.get("data") or {}
    rows = [
        ("Backbone", f"{backbone.get('name', '?')} ({_options(backbone)})" if backbone else "—"),
        ("Inner-loop rule", f"{rule_label(str(rule.get('name')))} ({_options(rule)})" if rule else "—"),
        ("Task", str(metadata.get("task_kind", "classification"))
         + (f", {metadata['n_way']}-way" if metadata.get("n_way") else "")),
        ("Images", _image_text(image)),
        ("Inner steps", ", ".join(f"{k} {v}" for k, v in (metadata.get("inner_steps") or {}).items()) or "—"),
        ("Head", str(metadata.get("head_init", "—"))),
    ]
    if data:
        described = ", ".join(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items() if k != "root"
        )
        rows.append(("Trained on", described))
    if training:
        trained = (
            f"{training.get('iterations', '?')} iterations, {training.get('tasks_seen', '?')} tasks, "
            f"{training.get('wall_seconds', '?')} s on {training.get('device', '?')}"
        )
        rows.append(("Training", trained))
    for split, values in (metadata.get("metrics") or {}).items():
        if isinstance(values, dict) and "mean" in values:
            spread = f" ± {100 * values['ci95']:.1f}" if values.get("ci95") is not None else ""
            metric = values.get("metric", "accuracy")
            shown = percent(values["mean"]) + spread if metric == "accuracy" else f"{values['mean']:.4g}{spread}"
            rows.append((f"Measured {metric} ({split})", shown))
    heldout = metadata.get("heldout") or {}
    by_setting: dict[tuple[int, int], list[str]] = {}
    for result in heldout.get("results") or []:
        by_setting.setdefault((result["way"], result["shot"]), []).append(
            f"{rule_label(result['rule'])} {percent(result['accuracy'])} ± {100 * result['ci95']:.1f}"
        )
    for (way, shot), values in by_setting.items():
        rows.append((f"Measured on held-out classes, {way}-way {shot}-shot", " · ".join(values)))
    if heldout.get("classes"):
        rows.append(("Held-out classes", f"{', '.join(heldout['classes'])} ({heldout.get('protocol', '')})"))
    pretraining = training.get("pretraining")
    if pretraining:
        rows.append(("Pre-training", f"supervised, {pretraining.get('epochs')} epochs on {pretraining.get('classes')} "
                     f"training classes, {pretraining.get('wall_seconds')} s"))
    shipped = metadata.get("shipped") or {}
    if shipped.get("notes"):
        rows.append(("Notes", str(shipped["notes"])))
    if metadata.get("description"):
        rows.append(("Description", str(metadata["description"])))
    return [{"field": field, "value": value or "—"} for field, value in rows]


def heldout_table(checkpoints: list[tuple[str, dict[str, Any]]]) -> list[dict[str, str]]:
    """One row per checkpoint and rule, one column per measured setting (``heldout`` metadata of shipped files)."""
    rows = []
    for name, metadata in checkpoints:
        by_rule: dict[str, dict[str, str]] = {}
        for result in (metadata.get("heldout") or {}).get("results") or []:
            row = by_rule.setdefault(result["rule"], {"checkpoint": name, "rule": rule_label(result["rule"])})
            row[f"{result['way']}-way {result['shot']}-shot"] = (
                f"{100 * result['accuracy']:.2f} ± {100 * result['ci95']:.2f} ({result['head_init']} head)"
            )
        rows.extend(by_rule.values())
    return rows


def render_checkpoint_summary(metadata: dict[str, Any]) -> None:
    # A static table wraps long values (training data, description) instead of cutting them off.
    st.table(checkpoint_rows(metadata), hide_index=True, hide_header=True, border="horizontal")
    command = (metadata.get("training") or {}).get("command")
    if command:
        st.caption("Trained with:")
        st.code(command, language="bash")


# ------------------------------------------------------------------------------------------------ runs


def run_title(summary: RunSummary) -> str:
    where = summary.dataset or summary.source
    return (
        f"#{summary.id} · {when(summary.created_at)} · {where} · {summary.n_way}-way {summary.k_shot}-shot · "
        f"{summary.checkpoint_name} · {summary.status}"
    )


def accuracies_text(summary: RunSummary) -> str:
    return ", ".join(f"{rule_label(rule)} {percent(acc)}" for rule, acc in summary.accuracies.items()) or "—"


def run_config(detail: RunDetail) -> dict[str, Any]:
    """The settings of a run as flat (label -> value) pairs, for comparison tables."""
    provenance = detail.config.get("provenance") or {}
    values: dict[str, Any] = {
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


def comparison_rows(details: list[RunDetail], only_differences: bool) -> list[dict[str, str]]:
    configs = [run_config(detail) for detail in details]
    fields: list[str] = []
    for config in configs:
        fields.extend(field for field in config if field not in fields)
    rows = []
    for field in fields:
        values = [config.get(field, "—") for config in configs]
        if only_differences and len(set(values)) <= 1:
            continue
        rows.append({"setting": field, **{f"run #{d.id}": v for d, v in zip(details, values)}})
    return rows


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
