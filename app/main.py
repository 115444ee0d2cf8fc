"""Dashboard entry point: ``streamlit run app/main.py``.

Pages (``app/screens``): Adapt (run an episode through inner-loop rules), Runs (browse, compare, export,
delete stored runs; ``?run=<id>`` opens one), Checkpoints and Lab (the bilevel quadratic study live, stored
studies, the bilevel bench results), Tune (Optuna studies of a config's ``[tune]`` space, launched as jobs and
watched live), Jobs (evaluate and train in background workers, every job's progress, log, result and cancel).
Pages only arrange widgets: adapting happens
in ``core.runs``, every result shown is read back from the run store. Sign-in (optional) and the read-only demo
mode: ``app.auth``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run app/main.py` puts app/ on the path, not the checkout: the one path computed outside
# core.settings, because core cannot be imported before it.
_CHECKOUT = str(Path(__file__).resolve().parent.parent)
if _CHECKOUT not in sys.path:
    sys.path.insert(0, _CHECKOUT)

st.set_page_config(page_title="Few-shot adaptation with ALFA", layout="wide")

# Imported once the checkout is on the path.
from app.auth import demo_banner, render_sign_in
from core.settings import demo_mode

# In the read-only demo, Tune and Jobs (training, tuning, evaluation jobs) leave the navigation; they stay
# registered, hidden, so that their URL shows why they are off rather than silently landing on Adapt.
off_in_demo = "hidden" if demo_mode() else "visible"
navigation = st.navigation(
    [
        st.Page("screens/adapt.py", title="Adapt", icon=":material/science:", url_path="adapt", default=True),
        st.Page("screens/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
        st.Page("screens/checkpoints.py", title="Checkpoints", icon=":material/inventory_2:", url_path="checkpoints"),
        st.Page("screens/lab.py", title="Lab", icon=":material/biotech:", url_path="lab"),
        st.Page("screens/tune.py", title="Tune", icon=":material/tune:", url_path="tune", visibility=off_in_demo),
        st.Page(
            "screens/jobs.py", title="Jobs", icon=":material/work_history:", url_path="jobs", visibility=off_in_demo
        ),
    ]
)
render_sign_in()
demo_banner()
navigation.run()
