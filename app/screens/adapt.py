"""Adapt page: pick a checkpoint, build an episode (benchmark, upload, drawing, camera), adapt with chosen rules.

A run adapts in a worker thread (``core.runs.start_run``) and is stored whatever the user does meanwhile: a click
elsewhere reruns this script, which finds the run still going (or done) in the session and shows it again. The
result view is rendered from the stored run, the same view the Runs page uses.
"""

from __future__ import annotations

import json

import streamlit as st

from app.auth import owned_store
from app.checkpoint_view import (
    ADAPT_CHECKPOINT_KEY,
    TRAIN_COMMAND,
    adapt_choice_label,
    is_image_classifier,
    render_checkpoint_summary,
)
from app.formatting import rule_label
from app.resources import cached_loader, get_store, run_executor, short_path
from app.run_progress import follow
from app.sources import BENCHMARK, CHOICE_LABELS, Prepared, Readiness, benchmark, own_images
from app.views import RUNS_PAGE, render_run
from core.checkpoint import find_checkpoints, supported_rules
from core.data.domain import stroke_domain_of
from core.device import describe_device, pick_device
from core.rules import default_selection
from core.runs import RunTicket, start_run

TICKET = "adapt_ticket"
HEAD_LABELS = {
    "auto": "Automatic",
    "learned": "Meta-learned head",
    "prototype": "Class prototypes",
    "zero": "Zero head",
}
HEAD_HELP = (
    "The classifier head at step 0. Automatic: the meta-learned head when the episode has as many classes as "
    "the checkpoint was trained with, else class prototypes (a zero head for ALFA, whose generator reads the head "
    "weights). The meta-learned head is offered only when the class counts match."
)


def _forget_finished_run() -> None:
    """A new checkpoint or source makes the last result (or its error) stale; a run still going stays followed."""
    ticket: RunTicket | None = st.session_state.get(TICKET)
    if ticket is not None and ticket.done:
        st.session_state.pop(TICKET)


st.title("Adapt to a new episode")

try:
    device = pick_device()
except ValueError as error:  # an unavailable or malformed device (core.device, core.settings)
    st.error(f"Cannot choose a device: {error}")
    st.stop()
st.caption(f"Device: {describe_device(device)}")

# ------------------------------------------------------------------------------------------ checkpoint

entries = find_checkpoints()
usable = [entry for entry in entries if entry.error is None and is_image_classifier(entry.metadata)]
if not usable:
    st.warning(
        "No image-classification checkpoint found yet. Train one (it is written under `runs/`), or put a "
        "`.safetensors` checkpoint under `assets/checkpoints/`:"
    )
    st.code(TRAIN_COMMAND, language="bash")
    if len(entries) > len(usable):
        st.page_link("screens/checkpoints.py", label="See the files that were found but cannot be used")
    st.stop()

labels = [adapt_choice_label(entry) for entry in usable]
chosen_label = st.selectbox("Checkpoint", labels, key=ADAPT_CHECKPOINT_KEY, on_change=_forget_finished_run)
checkpoint = usable[labels.index(chosen_label)]
metadata = checkpoint.metadata
with st.expander("About this checkpoint"):
    render_checkpoint_summary(metadata)
if len(entries) > len(usable):
    st.caption(f"{len(entries) - len(usable)} other file(s) cannot be used here; see the Checkpoints page.")
try:
    spec = metadata.image
    if spec is None:
        raise ValueError("it records no image preprocessing")
    rule_options = supported_rules(metadata)
    trained_classes = metadata.trained_way or 0
except ValueError as error:
    st.error(f"{checkpoint.path}: its metadata is incomplete ({error})")
    st.stop()
spec_json = json.dumps(spec.to_dict(), sort_keys=True)

# ------------------------------------------------------------------------------------------------ episode

sources = list(CHOICE_LABELS)
# Without benchmark data the page opens on uploads, not on a benchmark that cannot run.
default_source = sources.index(BENCHMARK) if benchmark.omniglot_available() else sources.index(own_images.UPLOAD)
source = st.radio("Task", sources, index=default_source, format_func=CHOICE_LABELS.get, horizontal=True,
                  key="source", on_change=_forget_finished_run)
model_view = st.toggle(
    "Show images as the model sees them", key="input_model_view",
    help=f"Resized to {spec.size}×{spec.size}" + (", in grey" if spec.channels == 1 else "")
    + (", inverted" if spec.invert else "") + ": exactly the checkpoint's preprocessing.",
)
prepared: Prepared | None
readiness: Readiness
if source == BENCHMARK:
    prepared, readiness = benchmark.render(metadata, spec, spec_json, model_view)
else:
    prepared, readiness = own_images.render(source, spec, stroke_domain_of(spec, metadata.dataset_kind), model_view)
if readiness.warnings:
    st.warning("Worth a look before running:\n" + "\n".join(f"- {w}" for w in readiness.warnings))

# ---------------------------------------------------------------------------------------------- rules

st.divider()
left, middle, right = st.columns([3, 2, 2])
rules = left.multiselect(
    "Inner-loop rules", rule_options, default=default_selection(rule_options), format_func=rule_label, key=f"rules_{checkpoint.path}",
)
trained_steps = metadata.inner_steps.eval
steps = middle.slider(
    "Inner steps", min_value=0, max_value=max(20, 4 * trained_steps), value=trained_steps, key="steps",
    help=f"Trained with {trained_steps}; steps beyond the learned ones reuse the last step's learned values.",
)
n_way = prepared.episode.n_way if prepared is not None else None
heads = ["auto", *(["learned"] if n_way is None or n_way == trained_classes else []), "prototype", "zero"]
head = right.selectbox("Classifier head at step 0", heads, format_func=HEAD_LABELS.get, key="head_init",
                       help=HEAD_HELP)

ticket: RunTicket | None = st.session_state.get(TICKET)
running = ticket is not None and not ticket.done
problem = readiness.problem or (None if rules else "Choose at least one inner-loop rule.")
if running:
    problem = "A run is in progress; it is shown below."
if st.button("Run", type="primary", key="run", disabled=problem is not None):
    st.session_state[TICKET] = ticket = start_run(
        run_executor(),
        store=owned_store(), checkpoint_path=checkpoint.path, rules=list(rules), episode=prepared.episode,
        items=prepared.items, steps=int(steps), device=device, source=prepared.source, dataset=prepared.dataset,
        split=prepared.split, seed=prepared.seed, head_init=None if head == "auto" else head, loader=cached_loader,
        extra_config=prepared.extra_config,
    )
elif problem and not running:
    st.caption(f"Not ready to run: {problem}")

# ----------------------------------------------------------------------------------------------- result


if ticket is not None:
    if not ticket.done:
        follow(ticket)
    run_id, error = ticket.outcome()
    if ticket.checkpoint_path != str(checkpoint.path):
        where = f"run #{run_id}" if run_id is not None else "the run"
        st.info(f"The last run used another checkpoint ({short_path(ticket.checkpoint_path)}); {where} is on the "
                "Runs page.")
        if run_id is not None:
            st.page_link(RUNS_PAGE, label=f"Open run #{run_id}", query_params={"run": str(run_id)})
    elif run_id is None:
        st.error(error)
    else:
        st.divider()
        try:
            detail = get_store().get_run(run_id)
        except KeyError:
            st.session_state.pop(TICKET, None)
            st.info(f"Run #{run_id} was deleted.")
        else:
            render_run(get_store(), detail, key="adapt_result")
