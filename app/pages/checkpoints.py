"""Checkpoints page: every checkpoint found, what it was trained on and how well it measured; broken files."""

from __future__ import annotations

import streamlit as st

from app.checkpoint_view import (
    TRAIN_COMMAND,
    checkpoint_rows,
    heldout_table,
    is_image_classifier,
    render_checkpoint_summary,
)
from app.resources import short_path
from core.checkpoints import find_checkpoints, search_dirs
from core.model_io import supported_rules

st.title("Checkpoints")
st.caption("Looked for in: " + " · ".join(short_path(folder) for folder in search_dirs()))

entries = find_checkpoints()
good = [entry for entry in entries if entry.error is None]
broken = [entry for entry in entries if entry.error is not None]

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
        measured = [row["value"] for row in checkpoint_rows(metadata) if row["field"].startswith("Measured ")
                    and "held-out" not in row["field"]]
        table.append({
            "name": entry.name,
            "backbone": (metadata.get("backbone") or {}).get("name"),
            "rule": (metadata.get("rule") or {}).get("name"),
            "task": metadata.get("task_kind", "classification"),
            "measured": "; ".join(measured) or "—",
            "file": short_path(entry.path),
        })
    st.dataframe(table, hide_index=True, width="stretch", key="checkpoint_table")
    accuracy = heldout_table([(entry.name, entry.metadata) for entry in good])
    if accuracy:
        st.subheader("Accuracy on held-out classes")
        st.caption("Classes never used for training or model selection; 600 episodes, 15 queries per class, "
                   "mean ± 95% confidence interval.")
        st.dataframe(accuracy, hide_index=True, width="stretch", key="heldout_table")

for entry in good:
    with st.expander(f"{entry.name} — {short_path(entry.path)}"):
        if not is_image_classifier(entry.metadata):
            st.info("Not an image classifier (e.g. a sine-regression model): the Adapt page does not offer it.")
        else:
            rules = ", ".join(supported_rules(entry.metadata))
            st.caption(f"Adapts with: {rules}")
        render_checkpoint_summary(entry.metadata)
        st.json(entry.metadata, expanded=False)

if broken:
    st.subheader(f"Unreadable files ({len(broken)})")
    for entry in broken:
        st.error(f"{short_path(entry.path)}: {entry.error}")
