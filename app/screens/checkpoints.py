"""Checkpoints page: every checkpoint found, what it was trained on and how well it measured (its α/β across
held-out episodes too, for a meta-learned rule); broken files."""

from __future__ import annotations

import streamlit as st

from app.checkpoint_view import (
    TRAIN_COMMAND,
    heldout_table,
    is_image_classifier,
    render_adaptivity,
    render_checkpoint_summary,
    validation_accuracy,
)
from app.formatting import rule_label
from app.resources import short_path
from core.checkpoint import find_checkpoints, search_dirs, supported_rules

DEFAULT_MEANING = (
    "the checkpoint the Adapt page offers first and the command line uses without --checkpoint "
    "(named in the MANIFEST.json beside it)"
)
VALIDATION_MEANING = (
    "mean accuracy ± 95% confidence interval over the validation episodes run during training, on the validation "
    "classes (never trained on); best.safetensors is the checkpoint that scored highest on it"
)

st.title("Checkpoints")
st.caption("Looked for in: " + " · ".join(short_path(folder) for folder in search_dirs()))

entries = find_checkpoints()
good = [entry for entry in entries if entry.metadata is not None]
broken = [entry for entry in entries if entry.metadata is None]

if not entries:
    st.warning(
        "No checkpoints found yet. Train one (it is written under `runs/`), or put a `.safetensors` checkpoint "
        "under `assets/checkpoints/`:"
    )
    st.code(TRAIN_COMMAND, language="bash")

if good:
    table = []
    for entry in good:
        metadata = entry.metadata
        validation = validation_accuracy(metadata)
        table.append({
            "default": entry.is_default,
            "name": entry.name,
            "backbone": metadata.backbone.name,
            "rule": rule_label(metadata.rule.name),
            "task": metadata.task_kind,
            "validation accuracy": validation.value if validation is not None else "—",
            "file": short_path(entry.path),
        })
    st.dataframe(
        table, hide_index=True, width="stretch", key="checkpoint_table",
        column_config={
            "default": st.column_config.CheckboxColumn("default", help=f"Default: {DEFAULT_MEANING}.", width="small"),
            "validation accuracy": st.column_config.TextColumn(
                "validation accuracy", help=f"Validation accuracy: {VALIDATION_MEANING}."
            ),
        },
    )
    st.caption(f"Validation accuracy: {VALIDATION_MEANING}.")
    accuracy = heldout_table([(entry.name, entry.metadata) for entry in good])
    if accuracy:
        st.subheader("Accuracy on held-out classes")
        st.caption("Test accuracy on classes never used for training or model selection (measured when the "
                   "checkpoint was packaged); 600 episodes, 15 queries per class, mean ± 95% confidence interval.")
        st.dataframe(accuracy, hide_index=True, width="stretch", key="heldout_table")

for entry in good:
    marked = " (default)" if entry.is_default else ""
    with st.expander(f"{entry.name}{marked} — {short_path(entry.path)}"):
        if entry.is_default:
            st.caption(f"Default checkpoint: {DEFAULT_MEANING}.")
        if not is_image_classifier(entry.metadata):
            st.info("Not an image classifier (e.g. a sine-regression model): the Adapt page does not offer it.")
        else:
            rules = ", ".join(rule_label(rule) for rule in supported_rules(entry.metadata))
            st.caption(f"Adapts with: {rules}")
        render_checkpoint_summary(entry.metadata)
        render_adaptivity(entry.path, entry.metadata, key=f"checkpoint_{entry.path}")
        st.json(entry.metadata.verbatim(), expanded=False)

if broken:
    st.subheader(f"Unreadable files ({len(broken)})")
    for entry in broken:
        st.error(f"{short_path(entry.path)}: {entry.error}")
