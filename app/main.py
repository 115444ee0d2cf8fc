"""Dashboard entry point (``streamlit run app/main.py``).

Until the full dashboard lands this page lists the checkpoints it can find and what each was trained on;
it only arranges widgets: everything it shows comes from ``core``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.checkpoints import find_checkpoints  # noqa: E402
from core.device import describe_device, pick_device  # noqa: E402

st.set_page_config(page_title="Few-shot adaptation with ALFA", layout="wide")
st.title("Few-shot adaptation with learned inner-loop rules")
st.caption(f"Device: {describe_device(pick_device())}")
st.info(
    "The interactive dashboard (upload images, compare inner-loop rules, browse stored runs) is being built. "
    "Meanwhile the command line does the work: `python -m core train | evaluate | adapt | info`."
)

checkpoints = find_checkpoints()
if not checkpoints:
    st.warning(
        "No checkpoints found yet. Train one with `python -m core train --config configs/omniglot/conv4_alfa_maml.toml`; "
        "it is written under `runs/`."
    )
for entry in checkpoints:
    with st.expander(f"{entry.name} — {entry.path}"):
        if entry.error:
            st.error(entry.error)
        else:
            st.json(entry.metadata, expanded=False)
