"""Tune page: create or continue an Optuna study of a config's ``[tune]`` space as a background job, and watch it.

Tuning is ``core.tune.run_tune`` (the same function as ``python -m core tune``), run by a worker as a ``tune`` job
(``core.jobs``); the study lives in the run store's database, so what this page shows is read back from there:
the trials, Optuna's plotly figures, and the best trial's checkpoint. This page only arranges widgets.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import streamlit as st
from sqlalchemy import inspect

from app.auth import current_actor, refuse_in_demo, require_signed_in, sign_in_configured
from app.checkpoint_view import open_on_adapt_button
from app.resources import get_store
from core.config import TUNE_SECTION, ConfigError
from core.settings import REPO_ROOT, database_url
from core.tune import (
    CHECKPOINT_ATTR,
    CONFIG_ATTR,
    METRIC_ATTR,
    PRUNERS,
    SAMPLERS,
    TuneRequest,
    load_result,
    open_storage,
    ship_command,
    validate_request,
)

CONFIGS_DIR = REPO_ROOT / "configs"
OTHER_PATH = "Another file…"
REFRESH_S = 3.0  # how often the study view reads the storage again
STUDY = "tune_study"  # session state: the study shown
MESSAGE = "tune_message"  # session state: (kind, text) shown once after a rerun
OPTUNA_TABLE = "studies"  # Optuna's table: absent until a first study exists


def tune_configs() -> list[Path]:
    """The configs under ``configs/`` that have a ``[tune]`` section."""
    found = []
    for path in sorted(CONFIGS_DIR.rglob("*.toml")):
        try:
            if TUNE_SECTION in tomllib.loads(path.read_text()):
                found.append(path)
        except (OSError, tomllib.TOMLDecodeError):
            continue
    return found


@st.cache_resource(show_spinner=False)
def _storage(url: str) -> optuna.storages.RDBStorage:
    return open_storage(url)


def study_names(url: str) -> list[str]:
    """The studies in the run store's database; none (and no Optuna tables created) before a first one exists."""
    if OPTUNA_TABLE not in inspect(get_store().engine).get_table_names():
        return []
    return [summary.study_name for summary in optuna.get_all_study_summaries(_storage(url), include_best_trial=False)]


def tune_job_of(study_name: str):
    """The newest tune job of ``study_name``, if the jobs service knows one."""
    from core.jobs import list_jobs

    for job in list_jobs(limit=200, kinds=["tune"]):
        if job.payload.get("study_name") == study_name:
            return job
    return None


def launch(request: TuneRequest) -> tuple[int, str]:
    """Check everything ``run_tune`` checks before a study exists (bad input: ``ConfigError``/``ValueError`` and
    no job), then submit the tune job; returns the job's id and the study's name."""
    from core.jobs import TuneJobArguments, ensure_worker, submit_job

    setup = validate_request(request)
    name = request.study_name or setup.base.name  # named here, so that the page can follow the study
    arguments = TuneJobArguments(
        config_path=request.config_path,
        trials=request.trials,
        study_name=name,
        sampler=request.sampler,
        pruner=request.pruner,
        timeout_s=request.timeout_s,
    )
    # With sign-in, the signed-in user starts it (and may stop it); the single-user dashboard records "dashboard".
    started_by = current_actor().identity if sign_in_configured() else "dashboard"
    job_id = submit_job("tune", arguments, started_by=started_by)
    ensure_worker()
    return job_id, name


# ----- new trials ---------------------------------------------------------------------------------------------
st.title("Tune")
refuse_in_demo("The Tune page (tuning studies)")
st.caption(
    "Black-box tuning of meta-training's own hyperparameters (outer and inner rates, inner steps, λ, meta-batch, "
    "width, rule, estimator) with Optuna, over a config's `[tune]` search space. Each trial is a training run; "
    "the same as `python -m core tune --config FILE --trials N`."
)
url = database_url()

with st.form("tune_launch"):
    configs = tune_configs()
    labels = [str(path.relative_to(REPO_ROOT)) for path in configs] + [OTHER_PATH]
    chosen = st.selectbox("Config with a [tune] section", labels, key="tune_config")
    other = st.text_input("Config path (for another file)", key="tune_config_path")
    left, middle, right = st.columns(3)
    study_name = left.text_input(
        "Study name (empty: the config's name; an existing study is continued)", key="tune_name"
    )
    trials = left.number_input("Trials", min_value=1, max_value=1000, value=10, step=1, key="tune_trials")
    sampler = middle.selectbox("Sampler", SAMPLERS, key="tune_sampler")
    pruner = middle.selectbox("Pruner", list(PRUNERS), key="tune_pruner")
    timeout = right.number_input("Timeout (s, 0 = none)", min_value=0.0, value=0.0, step=60.0, key="tune_timeout")
    submitted = st.form_submit_button("Launch trials as a job", type="primary")

if submitted and require_signed_in("launch tuning trials"):
    config_path = other.strip() if chosen == OTHER_PATH else str(REPO_ROOT / chosen)
    try:
        if not config_path:
            raise ConfigError("give the config's path")
        request = TuneRequest(
            config_path=config_path,
            trials=int(trials),
            study_name=study_name.strip() or None,
            sampler=sampler,
            pruner=pruner,
            timeout_s=float(timeout) or None,
        )
        job_id, name = launch(request)
    except (ConfigError, ValueError, ConnectionError) as error:  # ConnectionError: the job queue's Redis is down
        st.error(str(error))
    else:
        st.session_state[STUDY] = name
        st.session_state[MESSAGE] = ("success", f"Job {job_id}: {int(trials)} trial(s) of study {name!r} queued.")

if MESSAGE in st.session_state:
    kind, text = st.session_state.pop(MESSAGE)
    getattr(st, kind)(text)


# ----- a study ------------------------------------------------------------------------------------------------
st.subheader("Studies")
names = study_names(url)
if not names:
    st.info("No study yet: launch trials above (or run `python -m core tune`); it appears here.")
    st.stop()
shown = st.session_state.get(STUDY)
index = names.index(shown) if shown in names else len(names) - 1
selected = st.selectbox("Study", names, index=index, key="tune_shown_study")
st.session_state[STUDY] = selected


@st.fragment(run_every=REFRESH_S)
def study_view(name: str) -> None:
    """The study as stored now: its job, its trials, Optuna's figures and its best trial; read again every few
    seconds while the page is open."""
    from optuna import visualization

    job = tune_job_of(name)
    if job is not None:
        st.progress(min(max(job.progress, 0.0), 1.0), text=f"job {job.id}: {job.status} · {job.message or ''}")
        if not job.finished and st.button("Stop the study", key=f"tune_stop_{job.id}"):
            from core.jobs import cancel_job
            from core.store.permissions import NotPermitted

            try:
                cancel_job(job.id, by=current_actor())  # only its starter or an admin (core.store.permissions)
            except NotPermitted as refused:
                st.error(f"Not stopped: {refused}")
            except ValueError as error:
                st.error(str(error))
            else:
                st.warning(f"Job {job.id}: stop requested; the running trial ends at its next iteration.")
    study = optuna.load_study(study_name=name, storage=_storage(url))
    result = load_result(name, url)
    metric = study.user_attrs.get(METRIC_ATTR, "value")
    st.caption(
        f"Config `{study.user_attrs.get(CONFIG_ATTR, '?')}` · {study.direction.name.lower()} validation {metric} · "
        f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed"
    )
    rows = [
        {"trial": t.number, "state": t.state, metric: t.value, "last validation at": t.last_iteration, **t.params}
        | ({"error": t.error} if t.error else {})
        for t in result.trials
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    if not result.trials:
        return
    complete = result.n_complete
    figures = {"Optimisation history": visualization.plot_optimization_history(study)}
    if complete:
        figures["Parallel coordinates"] = visualization.plot_parallel_coordinate(study)
    if complete >= 2:
        try:
            figures["Parameter importances"] = visualization.plot_param_importances(study)
        except (RuntimeError, ValueError) as error:  # e.g. every trial drew the same values
            st.info(f"Parameter importances: {error}")
    figures["Intermediate values"] = visualization.plot_intermediate_values(study)
    tabs = st.tabs(list(figures))
    for tab, (title, figure) in zip(tabs, figures.items()):
        with tab:
            st.plotly_chart(figure, width="stretch", key=f"tune_{name}_{title}")
    if result.best_trial is None:
        st.info("No trial has completed yet.")
        return
    best = study.best_trial
    st.markdown(f"**Best: trial {result.best_trial}**, validation {metric} {result.best_value:.6g}")
    st.json(result.best_params)
    checkpoint = result.best_checkpoint or best.user_attrs.get(CHECKPOINT_ATTR)
    if checkpoint and Path(checkpoint).is_file():
        st.code(ship_command(checkpoint, name), language="bash")
    if checkpoint:
        open_on_adapt_button(checkpoint, "Open the best trial on Adapt", key=f"tune_adapt_{name}")


study_view(selected)
