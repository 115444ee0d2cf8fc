"""``python -m core tune`` on the tiny sine config: trials recorded, pruning, resuming, the best checkpoint, bad input;
and the ``Trainer.run`` callbacks it is built on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from alembic.script import ScriptDirectory

from core.checkpoint import TuningRecord, load_learner, read_metadata
from core.checkpoint.format import TRAINING_STATE
from core.checkpoint.training_state import read_state
from core.cli import main
from core.config import ConfigError, load_config
from core.store import Store
from core.store.database import alembic_config, current_revision
from core.train import Trainer
from core.tune import PRUNERS, TuneConfigError, TuneRequest, load_result, run_tune, ship_command
from core.tune_config import load_tune_setup

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "sine" / "tune_tiny.toml"
STORE_HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
SPACE_HEADER = "[tune.space]"


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def storage(tmp_path: Path) -> str:
    """A SQLite study storage, for the tests in which the storage plays no part (input checked before it is
    opened, samplers, pruners, stopping): they need not run twice."""
    return f"sqlite:///{tmp_path / 'db' / 'studies.sqlite3'}"


@pytest.fixture
def shared_storage(database_url: str) -> str:
    """A study storage on SQLite and on a real PostgreSQL server (``database_url``), for what the storage keeps:
    trials, their numbering across runs, the search space, what the command line reads back."""
    return database_url


def request(tmp_path: Path, storage: str, trials: int = 2, **changes) -> TuneRequest:
    values = {
        "config_path": str(TINY),
        "trials": trials,
        "study_name": "tiny",
        "storage_url": storage,
        "sampler": "random",
        "pruner": "none",
        "device": "cpu",
        "output_root": str(tmp_path / "tune"),
    }
    return TuneRequest(**{**values, **changes})


def history_mse(trial_dir: Path) -> list[tuple[int, float]]:
    lines = (trial_dir / "history.jsonl").read_text().splitlines()
    return [(row["iteration"], row["validation"]["mean"]) for row in map(json.loads, lines)]


def studies_in(storage: str) -> list[str]:
    return [summary.study_name for summary in optuna.get_all_study_summaries(storage)]


def with_space(tmp_path: Path, space: str) -> Path:
    """The tiny config with its [tune.space] replaced."""
    text = TINY.read_text()
    head = text[: text.index(SPACE_HEADER)]
    path = tmp_path / "space.toml"
    path.write_text(f"{head}{SPACE_HEADER}\n{space}\n")
    return path


# ----- Trainer.run callbacks ----------------------------------------------------------------------------------
def test_the_callbacks_see_every_iteration_and_every_validation_score(tmp_path: Path) -> None:
    config = load_tune_setup(TINY).trial_config({}, str(tmp_path / "run"), "callbacks")
    iterations, validations = [], []
    Trainer(config, device="cpu", progress=False).run(
        on_iteration=lambda done, total: iterations.append((done, total)),
        on_validation=lambda iteration, score: validations.append((iteration, score)),
    )
    assert iterations == [(i, 12) for i in range(1, 13)]
    # The score is what best-checkpoint selection uses: minus the validation MSE.
    assert validations == [(i, -mse) for i, mse in history_mse(tmp_path / "run")]
    assert [i for i, _ in validations] == [4, 8, 12]


def test_a_raising_callback_saves_the_state_and_the_run_resumes_there(tmp_path: Path) -> None:
    config = load_tune_setup(TINY).trial_config({}, str(tmp_path / "run"), "stopped")

    class Stop(Exception):
        pass

    def stop_at_six(done: int, total: int) -> None:
        if done == 6:
            raise Stop

    with pytest.raises(Stop):
        Trainer(config, device="cpu", progress=False).run(on_iteration=stop_at_six)
    assert read_state(tmp_path / "run" / "state.safetensors", TRAINING_STATE, device="cpu").progress.iteration == 6
    resumed: list[int] = []
    summary = Trainer(config, device="cpu", progress=False).run(
        resume=True, on_iteration=lambda d, t: resumed.append(d)
    )
    assert resumed == list(range(7, 13)) and summary["iterations"] == 12


def test_a_training_config_with_a_tune_section_still_trains(tmp_path: Path) -> None:
    config = load_config(TINY)  # [tune] is the search space, not a setting of the run
    assert config.meta.iterations == 1000 and "tune" not in config.to_dict()


# ----- studies ------------------------------------------------------------------------------------------------
def test_trials_are_recorded_with_their_values_and_checkpoints(tmp_path: Path, shared_storage: str) -> None:
    storage = shared_storage
    seen = []
    result = run_tune(request(tmp_path, storage, trials=3), on_trial=seen.append)
    assert (result.n_complete, result.n_pruned, result.n_failed) == (3, 0, 0)
    assert [t.number for t in seen] == [0, 1, 2] and studies_in(storage) == ["tiny"]
    for trial in result.trials:
        trial_dir = tmp_path / "tune" / "tiny" / f"trial_{trial.number}"
        # A trial's value is its best validation MSE, the one its best.safetensors holds.
        assert trial.value == pytest.approx(min(mse for _, mse in history_mse(trial_dir)))
        assert trial.checkpoint == str(trial_dir / "best.safetensors")
        config = read_metadata(trial_dir / "best.safetensors").training.config
        assert config["meta"]["outer_lr"] == trial.params["meta.outer_lr"]
        assert config["rule"]["lr"] == trial.params["rule.lr"]
        assert config["meta"]["inner_steps"] == trial.params["meta.inner_steps"] in (1, 2)
        assert config["meta"]["iterations"] == 12
    assert result.best_value == min(t.value for t in result.trials)
    stored = load_result("tiny", storage)
    assert stored.best_trial == result.best_trial and [t.value for t in stored.trials] == [
        t.value for t in result.trials
    ]


def test_the_best_trials_checkpoint_loads_with_its_parameters_in_its_metadata(tmp_path: Path, storage: str) -> None:
    result = run_tune(request(tmp_path, storage, trials=2))
    metadata = read_metadata(result.best_checkpoint)
    assert metadata.training.tuning == TuningRecord(study="tiny", trial=result.best_trial, params=result.best_params)
    learner, loaded = load_learner(result.best_checkpoint, device="cpu")
    assert learner.task_kind == "regression" and loaded.training.tuning.params == result.best_params
    assert loaded.training.config["meta"]["outer_lr"] == result.best_params["meta.outer_lr"]


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_a_pruner_that_says_prune_stops_each_trial_at_its_first_validation(
    tmp_path: Path, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PRUNERS, "median", lambda setup: AlwaysPrune())
    result = run_tune(request(tmp_path, storage, trials=2, pruner="median"))
    assert (result.n_complete, result.n_pruned, result.n_failed) == (0, 2, 0)
    assert [t.last_iteration for t in result.trials] == [4, 4]
    assert result.best_trial is None and result.best_checkpoint is None
    state = tmp_path / "tune" / "tiny" / "trial_0" / "state.safetensors"
    assert read_state(state, TRAINING_STATE, device="cpu").progress.iteration == 4  # stopped there, resumable


def test_continuing_a_study_continues_its_numbering_with_new_values(tmp_path: Path, shared_storage: str) -> None:
    storage = shared_storage
    first = run_tune(request(tmp_path, storage, trials=2))
    second = run_tune(request(tmp_path, storage, trials=2))
    assert [t.number for t in second.trials] == [0, 1, 2, 3]
    assert [t.params for t in second.trials[:2]] == [t.params for t in first.trials]
    assert second.trials[2].params != second.trials[0].params  # the sampler is not restarted from its first draw
    assert (tmp_path / "tune" / "tiny" / "trial_3" / "best.safetensors").is_file()


def test_workers_sharing_a_study_draw_apart_and_worker_0_draws_what_a_lone_run_draws(
    tmp_path: Path, storage: str
) -> None:
    # Three studies that each start empty, as workers started together all see no finished trial.
    lone = run_tune(request(tmp_path, storage, trials=1, study_name="lone"))
    first = run_tune(request(tmp_path, storage, trials=1, study_name="w0", worker=0))
    second = run_tune(request(tmp_path, storage, trials=1, study_name="w1", worker=1))
    assert first.trials[0].params == lone.trials[0].params
    assert second.trials[0].params != first.trials[0].params
    with pytest.raises(TuneConfigError, match="worker must be a whole number"):
        run_tune(request(tmp_path, storage, trials=1, study_name="bad", worker=-1))


def test_continuing_a_study_with_another_search_space_is_refused(tmp_path: Path, shared_storage: str) -> None:
    storage = shared_storage
    run_tune(request(tmp_path, storage, trials=1))
    other = with_space(tmp_path, "meta.outer_lr = { low = 1e-3, high = 1e-2, log = true }")
    with pytest.raises(ConfigError, match="another search space or budget"):
        run_tune(request(tmp_path, storage, trials=1, config_path=str(other)))


def test_without_a_storage_the_study_lives_beside_the_runs_in_the_store_database(
    tmp_path: Path, shared_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEWSHOT_DATABASE_URL", shared_storage)
    result = run_tune(request(tmp_path, None, trials=1))
    assert result.storage_url == shared_storage and result.n_complete == 1
    with Store(shared_storage) as store:  # the store's schema is there, and its own version table
        assert current_revision(store.engine) == STORE_HEAD and store.list_runs() == []
    assert studies_in(shared_storage) == ["tiny"]


def test_should_stop_ends_the_running_trial_and_the_study(tmp_path: Path, storage: str) -> None:
    calls = []

    def stop_on_the_fifth_poll() -> bool:
        calls.append(1)
        return len(calls) >= 5

    result = run_tune(request(tmp_path, storage, trials=3), should_stop=stop_on_the_fifth_poll)
    assert result.stopped and len(result.trials) == 1 and result.n_failed == 1
    assert result.trials[0].error == "the study was stopped at iteration 5 of 12"


# ----- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("meta.outer_lr = { low = 1e-2, high = 1e-2 }", "empty range: low"),
        ("meta.outer_lr = { low = 0.0, high = 1e-2, log = true }", "log range needs low > 0"),
        ("meta.outer_rate = { low = 1e-4, high = 1e-2 }", "unknown parameter 'meta.outer_rate'"),
        ("rule.beta = { low = 1e-4, high = 1e-2 }", "unknown parameter 'rule.beta'"),
        ("meta.inner_steps = { choices = [] }", "choices must be a non-empty list"),
        ("meta.inner_steps = { choices = [1, 0] }", "meta.inner_steps = 0 is rejected by the config"),
        ('meta.estimator = { choices = ["maml", "nope"] }', "meta.estimator = 'nope' is rejected by the config"),
        ("meta.proximal_lambda = { low = -1.0, high = 1.0 }", "proximal_lambda = -1.0 is rejected"),
        ("", r"\[tune.space\] must name at least one parameter"),
    ],
)
def test_a_bad_search_space_is_a_clear_error_and_creates_no_study(
    tmp_path: Path, storage: str, space: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_tune(request(tmp_path, storage, config_path=str(with_space(tmp_path, space))))
    assert not (tmp_path / "db").exists()  # not even the database file
    assert not (tmp_path / "tune").exists()


def test_cmaes_refuses_choices_and_a_direction_must_match_the_metric(tmp_path: Path, storage: str) -> None:
    with pytest.raises(ConfigError, match="cmaes sampler searches numeric ranges only; meta.inner_steps"):
        run_tune(request(tmp_path, storage, sampler="cmaes"))
    wrong = with_space(tmp_path, "rule.lr = { low = 1e-3, high = 0.3 }").read_text()
    path = tmp_path / "wrong.toml"
    path.write_text(wrong.replace('direction = "minimize"', 'direction = "maximize"'))
    with pytest.raises(ConfigError, match="tune.direction must be 'minimize' for this config"):
        run_tune(request(tmp_path, storage, config_path=str(path)))
    assert not (tmp_path / "db").exists()


def test_cmaes_searches_a_numeric_space(tmp_path: Path, storage: str) -> None:
    numeric = with_space(
        tmp_path, "meta.outer_lr = { low = 1e-4, high = 3e-2, log = true }\nrule.lr = { low = 1e-3, high = 0.3 }"
    )
    result = run_tune(request(tmp_path, storage, trials=2, sampler="cmaes", config_path=str(numeric)))
    assert result.n_complete == 2


def test_the_command_prints_the_trials_the_best_one_and_how_to_ship_it(
    tmp_path: Path, shared_storage: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = shared_storage
    monkeypatch.setattr("core.tune.default_output_root", lambda: tmp_path / "tune")
    code = main(
        [
            "tune",
            "--config",
            str(TINY),
            "--trials",
            "2",
            "--study",
            "cli",
            "--storage",
            storage,
            "--sampler",
            "random",
            "--pruner",
            "none",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    result = load_result("cli", storage)
    assert f"best: trial {result.best_trial}, value {result.best_value:.6g}" in out
    assert f"next: python -m core evaluate --checkpoint {result.best_checkpoint}\n" in out  # regression: no packaging
    assert len([line for line in out.splitlines() if " COMPLETE " in line]) == 2
    bad = with_space(tmp_path, "meta.outer_lr = { low = 1e-2, high = 1e-3 }")
    assert main(["tune", "--config", str(bad), "--trials", "1", "--storage", storage]) == 2
    assert "empty range" in capsys.readouterr().err


def test_an_image_classifiers_trial_checkpoint_is_packaged_with_its_tuning_record(tmp_path: Path) -> None:
    from core.packaging import package
    from tests.app.builders import save_tiny_checkpoint
    from tests.core.test_packaging import RESULT

    record = TuningRecord(study="omniglot study", trial=4, params={"rule.lr": 0.3, "meta.inner_steps": 3})
    trained = read_metadata(save_tiny_checkpoint(tmp_path / "plain.safetensors")).training
    source = save_tiny_checkpoint(
        tmp_path / "trial_4.safetensors", training=dataclasses.replace(trained, tuning=record)
    )
    assert ship_command(str(source), "omniglot study") == (
        f"python -m core package --checkpoint {source} --name 'omniglot study' --title 'best trial of omniglot study'"
    )
    shipped = package(source, tmp_path / "shipped", "tuned", "Tuned", [RESULT])
    assert read_metadata(shipped).training.tuning == record
