"""Tuning meta-hyperparameters with Optuna: ``python -m core tune`` and the dashboard's tune jobs.

Meta-learning as hyperparameter optimisation (seed 000): the outer loop tunes what governs the inner one. Here
the meta-training's own hyperparameters (outer and inner rates, inner steps, proximal lambda, meta-batch, width,
rule, estimator) are searched black-box, by a sampler over whole training runs:

* each trial puts its sampled values into the config's ``[tune]`` search space (:mod:`core.tune_config`) and
  meta-trains for ``tune.iterations`` through :meth:`core.train.Trainer.run`, in ``<runs>/tune/<study>/trial_<n>``;
* at each validation it reports the validation accuracy (or MSE) as the trial's intermediate value, and the pruner
  (median: Optuna's median stopping rule; hyperband: Li et al. 2018, "Hyperband", JMLR) may stop it there;
* its value is its best validation score, the one its ``best.safetensors`` holds; that checkpoint records the
  study, the trial's number and parameters (``training.tuning`` in its metadata) and packages like any other.

Samplers: TPE (Bergstra et al. 2011, "Algorithms for hyper-parameter optimization"), CMA-ES (Hansen 2016, "The CMA
evolution strategy: a tutorial"; numeric spaces only) and random search. Studies live in Optuna's SQLAlchemy storage,
by default in the run store's database (``core.settings.database_url``); our migrations keep their Alembic revision
in their own table (``core.store.database.VERSION_TABLE``) so the two histories do not collide. Running a study
again (same name and storage) continues it: trial numbers go on.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from core.checkpoint import CheckpointMetadata, TuningRecord
from core.config import ConfigError
from core.tune_config import Choices, FloatRange, IntRange, TuneConfigError, TuneParameter, TuneSetup, load_tune_setup

SAMPLERS = ("tpe", "cmaes", "random")
PRUNERS: dict[str, Callable[[TuneSetup], optuna.pruners.BasePruner]] = {
    # Median stopping rule: prune a trial whose value at a step is worse than the median of earlier trials there.
    "median": lambda setup: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    # Hyperband over the trial's budget, counted in outer iterations (the steps the trials report at).
    "hyperband": lambda setup: optuna.pruners.HyperbandPruner(
        min_resource=setup.settings.validation_every or setup.base.validation.every,
        max_resource=setup.settings.iterations,
    ),
    "none": lambda setup: optuna.pruners.NopPruner(),
}
# Trial and study attributes kept in the storage, read back by the CLI's table and the Tune page.
CHECKPOINT_ATTR = "checkpoint"  # the trial's best.safetensors
PARAMS_ATTR = "params"  # the trial's values as the config takes them (a list choice as a list)
SPACE_ATTR = "space"  # the study's search space and budget, to refuse continuing it with another one
CONFIG_ATTR = "config_path"
METRIC_ATTR = "metric"
ERROR_ATTR = "error"  # why a trial failed (a combination the config rejects, a stopped study)
# A SQLite storage shared with the run store and the dashboard: wait for a writer instead of failing at once.
SQLITE_TIMEOUT_S = 30
# A trial whose process died (SIGKILL) stops beating; Optuna marks it failed at the study's next run.
HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120
# Workers started together on a new database all create Optuna's tables at once: see open_storage.
STORAGE_OPEN_ATTEMPTS = 3
WORKER_SEED_STRIDE = 1_000_003  # TuneRequest.worker


@dataclass(frozen=True)
class TuneRequest:
    config_path: str
    trials: int
    study_name: str | None = None  # None: the config's name
    storage_url: str | None = None  # None: the run store's database URL
    sampler: str = "tpe"
    pruner: str = "median"
    timeout_s: float | None = None  # no new trial starts after this many seconds
    device: str | None = None  # None: FEWSHOT_DEVICE / auto
    output_root: str | None = None  # None: <repo>/runs/tune; trials go in <output_root>/<study>/trial_<n>
    # This worker's index among the processes sharing the study (0, 1, ...). Workers that start together see the
    # same number of finished trials; seeded alike, their samplers would draw the same values and run each trial
    # twice. The index keeps their streams apart; worker 0 draws what a lone run draws.
    worker: int = 0


@dataclass(frozen=True)
class TrialReport:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    value: float | None
    params: dict[str, Any]
    checkpoint: str | None  # its best.safetensors, when written
    last_iteration: int | None  # the last validation it reported at
    error: str | None = None  # why it failed


@dataclass(frozen=True)
class TuneResult:
    study_name: str
    storage_url: str
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_checkpoint: str | None
    n_complete: int
    n_pruned: int
    n_failed: int
    stopped: bool = False  # should_stop ended the study before its trials or timeout were done
    trials: tuple[TrialReport, ...] = field(default=())


class StudyStopped(Exception):
    """``should_stop`` asked the study to stop (the job was cancelled); raised inside the running trial."""


# ----- storage ------------------------------------------------------------------------------------------------
def resolve_storage_url(storage_url: str | None) -> str:
    """The study storage: ``storage_url``, or the run store's database (``core.settings.database_url``), with an
    installed driver (``postgresql://`` means psycopg 3: ``core.store.database.with_installed_driver``)."""
    from core.settings import database_url
    from core.store.database import with_installed_driver

    return with_installed_driver(storage_url or database_url())


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage on ``url``; the run store's own database is migrated first (our version table moved out of
    Optuna's way, ``core.store.database.adopt_legacy_version_table``)."""
    from core.settings import database_url
    from core.store import Store
    from core.store.database import create_store_engine, is_sqlite, is_sqlite_memory

    if is_sqlite_memory(url):
        raise TuneConfigError(f"an in-memory database cannot hold a study beyond this process: {url!r}")
    if url == database_url():
        Store(url).close()
    elif is_sqlite(url):
        create_store_engine(url).dispose()  # creates the file's folder
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if is_sqlite(url) else {}
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(STORAGE_OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                # heartbeats: only to fail killed trials
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=HEARTBEAT_GRACE_S,
                )
        except (IntegrityError, ProgrammingError, optuna.exceptions.StorageInternalError):
            # Workers started together on a new database each create Optuna's tables (create_all); the losers fail
            # on a type or table the winner just made (PostgreSQL: "duplicate key value violates unique constraint
            # pg_type_typname_nsp_index" on CREATE TYPE, or "relation already exists"). Opening again finds the schema
            # complete. A connection error (wrong host or password) is not one of these and is raised at once.
            if attempt == STORAGE_OPEN_ATTEMPTS - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


# ----- the search ---------------------------------------------------------------------------------------------
def build_sampler(name: str, setup: TuneSetup, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        categorical = [p.path for p in setup.settings.parameters if not p.numeric]
        if categorical:
            raise TuneConfigError(
                f"the cmaes sampler searches numeric ranges only; {', '.join(categorical)} "
                "are choices: use --sampler tpe or random, or make them ranges"
            )
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise TuneConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, not {name!r}")


def suggest(trial: optuna.Trial, parameter: TuneParameter) -> Any:
    """The trial's value of one parameter, decoded as the config takes it."""
    space = parameter.space
    if isinstance(space, FloatRange):
        return trial.suggest_float(parameter.path, space.low, space.high, log=space.log)
    if isinstance(space, IntRange):
        return trial.suggest_int(parameter.path, space.low, space.high, step=space.step, log=space.log)
    assert isinstance(space, Choices)
    return space.decode(trial.suggest_categorical(parameter.path, space.encoded()))


def space_signature(setup: TuneSetup) -> str:
    """The search space and budget as JSON: a study continues only with the same ones."""
    settings = setup.settings
    return json.dumps(
        {
            "parameters": [[p.path, type(p.space).__name__, repr(p.space)] for p in settings.parameters],
            "iterations": settings.iterations,
            "validation_every": settings.validation_every,
            "validation_episodes": settings.validation_episodes,
            "direction": settings.direction,
        },
        sort_keys=True,
    )


def default_output_root() -> Path:
    from core.settings import RUNS_DIR

    return RUNS_DIR / "tune"


def _trial_trainer(config, device: str | None, command: str, tuning: TuningRecord):
    from core.train import Trainer

    class TrialTrainer(Trainer):
        """A trainer whose checkpoints record the trial they belong to (``training.tuning``)."""

        def checkpoint_metadata(self, validation: dict[str, Any] | None) -> CheckpointMetadata:
            metadata = super().checkpoint_metadata(validation)
            return replace(metadata, training=replace(metadata.training, tuning=tuning))

    return TrialTrainer(config, device=device, command=command, progress=False)


def validate_request(request: TuneRequest) -> TuneSetup:
    """Everything checkable before a study exists: the config and its [tune] section, the counts, sampler, pruner."""
    if isinstance(request.worker, bool) or not isinstance(request.worker, int) or request.worker < 0:
        raise TuneConfigError(f"worker must be a whole number of at least 0, not {request.worker!r}")
    if isinstance(request.trials, bool) or not isinstance(request.trials, int) or request.trials < 1:
        raise TuneConfigError(f"trials must be a whole number of at least 1, not {request.trials!r}")
    if request.timeout_s is not None and not (request.timeout_s > 0 and math.isfinite(request.timeout_s)):
        raise TuneConfigError(f"timeout_s must be a positive number of seconds, not {request.timeout_s!r}")
    if request.pruner not in PRUNERS:
        raise TuneConfigError(f"pruner must be one of {', '.join(PRUNERS)}, not {request.pruner!r}")
    if request.study_name is not None and not request.study_name.strip():
        raise TuneConfigError("the study name must not be empty")
    setup = load_tune_setup(request.config_path)
    build_sampler(request.sampler, setup, seed=0)  # refuses cmaes over choices
    return setup


def run_tune(
    request: TuneRequest,
    on_trial: Callable[[TrialReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TuneResult:
    """Run ``request.trials`` more trials of the study (created, or continued when it exists).

    ``on_trial`` gets each finished trial; ``should_stop`` is polled after every outer iteration, and when it says
    so the running trial ends (marked failed, its state saved) and the study stops. Bad input raises
    ``ConfigError`` (``TuneConfigError``) before any study is created.
    """
    setup = validate_request(request)
    study_name = (request.study_name or setup.base.name).strip()
    url = resolve_storage_url(request.storage_url)
    storage = open_storage(url)
    signature = space_signature(setup)
    existing = {summary.study_name for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    study_dir = Path(request.output_root) if request.output_root else default_output_root()
    study_dir = study_dir / study_name
    if study_name in existing:
        study = optuna.load_study(study_name=study_name, storage=storage)
        if study.user_attrs.get(SPACE_ATTR) != signature:
            raise TuneConfigError(
                f"study {study_name!r} was created with another search space or budget; "
                "continue it with the same [tune] section, or choose another --study name"
            )
    elif study_dir.exists() and any(study_dir.iterdir()):
        raise TuneConfigError(
            f"{study_dir} holds trials of an earlier study named {study_name!r} (not in {url}); "
            "choose another --study name or remove that folder"
        )
    # Seeded by the trials done so far: a continued study draws new values, not the first trials' again; and by
    # the worker's index, so that workers started together draw apart (a stride far above any trial count).
    done = 0 if study_name not in existing else len(study.trials)
    sampler = build_sampler(request.sampler, setup, seed=setup.base.seed + done + WORKER_SEED_STRIDE * request.worker)
    pruner = PRUNERS[request.pruner](setup)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=setup.settings.direction,
        load_if_exists=True,
    )
    if study_name not in existing:
        study.set_user_attr(SPACE_ATTR, signature)
        study.set_user_attr(CONFIG_ATTR, str(setup.path))
        study.set_user_attr(METRIC_ATTR, setup.metric)
    higher_is_better = setup.settings.direction == "maximize"
    command = shlex.join([sys.executable, "-m", "core", "tune", "--config", str(setup.path), "--study", study_name])

    def objective(trial: optuna.Trial) -> float:
        values = {parameter.path: suggest(trial, parameter) for parameter in setup.settings.parameters}
        output = study_dir / f"trial_{trial.number}"
        trial.set_user_attr(PARAMS_ATTR, values)
        trial.set_user_attr(CHECKPOINT_ATTR, str(output / "best.safetensors"))
        try:
            config = setup.trial_config(values, str(output), f"{study_name}-trial_{trial.number}")
        except ConfigError as error:
            trial.set_user_attr(ERROR_ATTR, str(error))
            raise
        trainer = _trial_trainer(config, request.device, command, TuningRecord(study_name, trial.number, values))

        def on_iteration(done: int, total: int) -> None:
            if should_stop is not None and should_stop():
                trial.set_user_attr(ERROR_ATTR, f"the study was stopped at iteration {done} of {total}")
                raise StudyStopped(f"stopped at iteration {done} of {total}")

        def on_validation(iteration: int, score: float) -> None:
            # The trainer's score is higher-is-better (minus the MSE); the study sees the metric itself.
            trial.report(score if higher_is_better else -score, iteration)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at iteration {iteration}")

        trainer.run(on_iteration=on_iteration, on_validation=on_validation)
        return trainer.best_score if higher_is_better else -trainer.best_score

    def report(_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial_report(trial))

    stopped = False
    try:
        study.optimize(
            objective,
            n_trials=request.trials,
            timeout=request.timeout_s,
            catch=(ConfigError,),  # a combination the config rejects fails that trial, not the study
            callbacks=[report],
            gc_after_trial=True,
        )
    except StudyStopped:
        stopped = True
    return tune_result(study, url, stopped)


# ----- reading a study back -----------------------------------------------------------------------------------
def trial_report(trial: optuna.trial.FrozenTrial) -> TrialReport:
    checkpoint = trial.user_attrs.get(CHECKPOINT_ATTR)
    steps = sorted(trial.intermediate_values)
    return TrialReport(
        number=trial.number,
        state=trial.state.name,
        value=trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
        params=dict(trial.user_attrs.get(PARAMS_ATTR, trial.params)),
        checkpoint=checkpoint if checkpoint and Path(checkpoint).is_file() else None,
        last_iteration=steps[-1] if steps else None,
        error=trial.user_attrs.get(ERROR_ATTR),
    )


def tune_result(study: optuna.Study, url: str, stopped: bool = False) -> TuneResult:
    trials = tuple(trial_report(t) for t in study.get_trials(deepcopy=False))
    states = [t.state for t in trials]
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    best = None
    if complete:
        pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        best = pick(complete, key=lambda t: t.value)
    return TuneResult(
        study_name=study.study_name,
        storage_url=url,
        best_trial=None if best is None else best.number,
        best_value=None if best is None else best.value,
        best_params={} if best is None else best.params,
        best_checkpoint=None if best is None else best.checkpoint,
        n_complete=states.count("COMPLETE"),
        n_pruned=states.count("PRUNED"),
        n_failed=states.count("FAIL"),
        stopped=stopped,
        trials=trials,
    )


def ship_command(checkpoint: str, study_name: str) -> str:
    """What to run next with a trial's checkpoint: ``python -m core package`` for an image classifier (packaging
    measures it on its held-out classes); a regression checkpoint has no held-out classes, and is measured with
    ``python -m core evaluate``."""
    from core.checkpoint import read_metadata

    quoted = shlex.quote(str(checkpoint))
    if read_metadata(checkpoint).is_image_classifier:
        title = shlex.quote(f"best trial of {study_name}")
        return f"python -m core package --checkpoint {quoted} --name {shlex.quote(study_name)} --title {title}"
    return f"python -m core evaluate --checkpoint {quoted}"


def load_result(study_name: str, storage_url: str | None = None) -> TuneResult:
    """A stored study's trials and best trial (the Tune page, ``python -m core tune`` afterwards)."""
    url = resolve_storage_url(storage_url)
    return tune_result(optuna.load_study(study_name=study_name, storage=open_storage(url)), url)
