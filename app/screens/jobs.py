"""Jobs page: launch an evaluation (the 600-episode protocol) or a training run as a background job, and follow
every job live: status, progress, elapsed time, ETA, log tail, result, cancel.

Jobs run in worker processes (``core.jobs``), never in this script: the page submits them, starts the embedded
worker if none is alive, and reads everything it shows back from the run store, so a job is visible after a
reload, in another browser and after the dashboard restarts. The list refreshes itself (``st.fragment``).
"""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from app.auth import current_actor, refuse_in_demo, require_signed_in, sign_in_configured
from app.checkpoint_view import open_on_adapt_button
from app.resources import short_path
from core.checkpoint import find_checkpoints
from core.jobs import (
    EvaluateJobArguments,
    JobQueueUnreachable,
    JobRecord,
    StoredEvaluation,
    TrainJobArguments,
    cancel_job,
    command_defaults,
    ensure_worker,
    job_evaluation,
    list_evaluations,
    list_jobs,
    recover_orphaned_jobs,
    submit_job,
)
from core.objectives import HEAD_INITS
from core.rules import registered_rule_names
from core.settings import REPO_ROOT
from core.store.permissions import NotPermitted

REFRESH_S = 2.0
LISTED_JOBS = 50
OWN = "(the checkpoint's own)"
MESSAGE = "jobs_message"  # session state: (kind, text) shown once after a submit
STATUS_ICONS = {"queued": "🕒", "running": "⏳", "succeeded": "✅", "failed": "❌", "cancelled": "⏹️"}


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _optional(value: int) -> int | None:
    """A number input where 0 means "the command's default"."""
    return int(value) or None


def _submit(kind: str, arguments: EvaluateJobArguments | TrainJobArguments, started_by: str) -> None:
    try:
        job_id = submit_job(kind, arguments, started_by=started_by)
    except ValueError as error:
        st.error(f"No job started: {error}")
        return
    except JobQueueUnreachable as error:  # the job row says so too (failed, with this reason)
        st.error(f"No job started: {error}")
        return
    ensure_worker()
    st.session_state[MESSAGE] = ("success", f"Job #{job_id} ({kind}) is queued; it appears in the list below.")
    st.rerun()


def _evaluate_form(started_by: str) -> None:
    defaults = command_defaults("evaluate")
    entries = [entry for entry in find_checkpoints() if entry.error is None]
    paths = [str(entry.path) for entry in entries]
    with st.form("jobs_evaluate_form"):
        left, right = st.columns(2)
        chosen = left.selectbox(
            "Checkpoint",
            paths,
            format_func=short_path,
            index=None,
            key="jobs_eval_checkpoint",
            placeholder="Choose a checkpoint" if paths else "No checkpoint found",
        )
        typed = left.text_input("… or a checkpoint file path", key="jobs_eval_path")
        rule = left.selectbox("Rule", [OWN, *registered_rule_names()], key="jobs_eval_rule")
        head = left.selectbox("Head set-up", [OWN, *HEAD_INITS], key="jobs_eval_head")
        episodes = right.number_input(
            "Episodes", min_value=0, value=defaults.episodes, step=100, key="jobs_eval_episodes"
        )
        way = right.number_input("Way (0: the checkpoint's)", min_value=0, value=0, step=1, key="jobs_eval_way")
        shot = right.number_input("Shot (0: the default)", min_value=0, value=0, step=1, key="jobs_eval_shot")
        query = right.number_input("Query images per class", min_value=0, value=defaults.query, key="jobs_eval_query")
        seed = right.number_input("Seed", min_value=0, value=defaults.seed, step=1, key="jobs_eval_seed")
        within = left.checkbox("Within alphabet (Omniglot: every episode from one alphabet)", key="jobs_eval_within")
        folder = left.text_input(
            "Folder of class folders (instead of the checkpoint's test classes)", key="jobs_eval_folder"
        )
        if not st.form_submit_button("Start the evaluation", type="primary"):
            return
    arguments = EvaluateJobArguments(
        checkpoint=typed.strip() or chosen or "",
        rule=None if rule == OWN else rule,
        head_init=None if head == OWN else head,
        episodes=int(episodes),
        way=_optional(way),
        shot=_optional(shot),
        query=int(query),
        seed=int(seed),
        within_alphabet=within,
        folder=folder.strip() or None,
    )
    _submit("evaluate", arguments, started_by)


def _train_form(started_by: str) -> None:
    configs = sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "configs").rglob("*.toml"))
    with st.form("jobs_train_form"):
        chosen = st.selectbox("Config", configs, index=None, key="jobs_train_config", placeholder="Choose a config")
        typed = st.text_input("… or a config file path", key="jobs_train_path")
        iterations = st.number_input(
            "Outer iterations (0: the config's)", min_value=0, value=0, step=100, key="jobs_train_iterations"
        )
        resume = st.checkbox("Resume the run in the config's output folder", key="jobs_train_resume")
        if not st.form_submit_button("Start training", type="primary"):
            return
    config = typed.strip() or (str(REPO_ROOT / chosen) if chosen else "")
    _submit("train", TrainJobArguments(config=config, iterations=_optional(iterations), resume=resume), started_by)


def _histogram(evaluation: StoredEvaluation) -> go.Figure:
    accuracy = evaluation.metric == "accuracy"
    values = [100 * value for value in evaluation.values] if accuracy else evaluation.values
    figure = go.Figure(go.Histogram(x=values, nbinsx=30, marker_color="#4c78a8"))
    figure.update_layout(
        xaxis_title="episode accuracy (%)" if accuracy else "episode MSE",
        yaxis_title="episodes",
        height=280,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title=f"{evaluation.episodes} episodes",
    )
    return figure


def _evaluation_result(job: JobRecord) -> None:
    evaluation = job_evaluation(job.id)
    if evaluation is None:
        return
    if evaluation.metric == "accuracy":
        headline = f"{100 * evaluation.mean:.2f} ± {100 * evaluation.ci95:.2f} %"
    else:
        headline = f"{evaluation.mean:.4g} ± {evaluation.ci95:.2g}"
    shape = f"{evaluation.n_way}-way {evaluation.k_shot}-shot" if evaluation.n_way else f"{evaluation.k_shot}-shot"
    st.metric(f"{evaluation.metric} (95% CI)", headline)
    st.caption(
        f"{evaluation.rule}, {shape}, {evaluation.steps} steps, seed {evaluation.seed}, "
        f"{evaluation.protocol or 'sine tasks'}, {evaluation.seconds:.1f} s on {evaluation.device}"
    )
    st.plotly_chart(_histogram(evaluation), key=f"jobs_histogram_{job.id}")


def _train_result(job: JobRecord) -> None:
    best = job.result.get("best_checkpoint")
    st.write(f"{job.result.get('iterations')} iterations, best validation score {job.result.get('best_score')}")
    if best and Path(best).is_file():
        st.write(f"Best checkpoint: `{short_path(best)}`")
        open_on_adapt_button(best, "Open on Adapt", key=f"jobs_adapt_{job.id}")


def _job(job: JobRecord) -> None:
    elapsed = job.elapsed_seconds()
    title = (
        f"{STATUS_ICONS.get(job.status, '')} #{job.id} {job.kind} — {job.status} — started by {job.started_by or '?'}"
    )
    with st.expander(title, expanded=not job.finished):
        st.progress(job.progress, text=job.message or job.status)
        first, second, third = st.columns(3)
        first.write(f"Elapsed: {_duration(elapsed)}")
        second.write(f"ETA: {_duration(job.eta_seconds) if job.status == 'running' else '–'}")
        third.write(f"Created {job.created_at:%Y-%m-%d %H:%M:%S} UTC")
        st.write(
            "Arguments: "
            + ", ".join(f"{name} = {value}" for name, value in job.payload.items() if value not in (None, False))
        )
        if job.error:
            st.error(job.error)
        if job.status == "succeeded" and job.kind == "evaluate":
            _evaluation_result(job)
        elif job.status == "succeeded" and job.kind == "train":
            _train_result(job)
        elif job.status in ("succeeded", "cancelled") and job.kind == "tune" and job.result:
            st.write(
                f"Study `{job.result.get('study_name')}`: best value {job.result.get('best_value')}; see the Tune page."
            )
        if job.log_tail:
            st.code(job.log_tail, language=None)
        if not job.finished and st.button("Cancel", key=f"jobs_cancel_{job.id}"):
            try:
                cancel_job(job.id, by=current_actor())  # only its starter or an admin (core.store.permissions)
            except NotPermitted as refused:
                st.error(f"Not cancelled: {refused}")
            except ValueError as error:  # it finished meanwhile
                st.warning(str(error))


def _stored_evaluations() -> None:
    evaluations = list_evaluations(limit=LISTED_JOBS)
    if not evaluations:
        return
    st.subheader("Stored evaluations")
    rows = [
        {
            "job": evaluation.job_id,
            "finished (UTC)": evaluation.created_at,
            "checkpoint": short_path(evaluation.checkpoint),
            "rule": evaluation.rule,
            "way": evaluation.n_way,
            "shot": evaluation.k_shot,
            "episodes": evaluation.episodes,
            "metric": evaluation.metric,
            "mean": evaluation.mean,
            "95% CI ±": evaluation.ci95,
            "protocol": evaluation.protocol,
        }
        for evaluation in evaluations
    ]
    st.dataframe(rows, hide_index=True, key="jobs_evaluations")


@st.fragment(run_every=REFRESH_S)
def _job_list() -> None:
    recover_orphaned_jobs()
    jobs = list_jobs(limit=LISTED_JOBS)
    if not jobs:
        st.info("No jobs yet: start one above, or with `python -m core evaluate|train|tune` in a terminal.")
        return
    for job in jobs:
        _job(job)
    _stored_evaluations()


st.title("Jobs")
refuse_in_demo("The Jobs page (evaluation and training jobs)")
st.caption(
    "Evaluations and training runs in the background, in a worker process: the same work as "
    "`python -m core evaluate` / `train`. Progress is kept in the run store; close the page and come back."
)
queued = list_jobs(limit=1, statuses=("queued",))
if queued:
    ensure_worker()  # jobs left queued by an earlier dashboard get a worker too
message = st.session_state.pop(MESSAGE, None)
if message is not None:
    st.success(message[1])
if not sign_in_configured():  # the single-user dashboard: who started a job is a free label, as before sign-in
    started_by = st.text_input("Started by", value="dashboard", key="jobs_started_by", max_chars=100)
else:  # with sign-in, jobs are started by the signed-in user, who may then cancel them
    started_by = current_actor().identity
if started_by or require_signed_in("launch jobs"):
    if sign_in_configured():
        st.caption(f"Jobs you start are recorded as started by **{started_by}**.")
    evaluate_tab, train_tab = st.tabs(["Evaluate a checkpoint", "Train from a config"])
    with evaluate_tab:
        _evaluate_form(started_by)
    with train_tab:
        _train_form(started_by)
st.subheader("Jobs")
_job_list()
