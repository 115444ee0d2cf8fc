"""Tune page (AppTest): it renders, bad input gives an error and no job, good input submits one tune job with the
form's arguments, and a stored study shows its trials, Optuna's figures and its best trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from sqlalchemy import text

from core.tune import TuneRequest, run_tune
from tests.app.test_adapt_page import assert_clean, texts

TUNE = "screens/tune.py"
TINY = Path(__file__).resolve().parents[2] / "configs" / "sine" / "tune_tiny.toml"
OTHER_PATH = "Another file…"


def job_count(dashboard) -> int:
    with dashboard.store() as store, store.engine.connect() as connection:
        return connection.execute(text("SELECT COUNT(*) FROM jobs")).scalar_one()


def submit(at, config_label: str, path: str = "", **values):
    at.selectbox(key="tune_config").set_value(config_label)
    at.text_input(key="tune_config_path").set_value(path)
    for key, value in values.items():
        widget = at.text_input(key=key) if key == "tune_name" else at.number_input(key=key)
        widget.set_value(value)
    next(b for b in at.button if b.label == "Launch trials as a job").click()
    return at.run()


def test_the_page_renders_and_offers_the_configs_with_a_tune_section(dashboard) -> None:
    at = dashboard.app(TUNE).run()
    assert_clean(at)
    assert "Tune" in texts(at.title)
    options = at.selectbox(key="tune_config").options
    assert "configs/sine/tune_tiny.toml" in options and options[-1] == OTHER_PATH
    assert not any(option.endswith("maml_5shot.toml") for option in options)  # no [tune] section
    assert any("No study yet" in message for message in texts(at.info))


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "config file not found"),
        ("[tune.space]\nmeta.outer_lr = { low = 1e-2, high = 1e-3 }\n", "empty range"),
        ("[tune.space]\nmeta.no_such_key = { choices = [1, 2] }\n", "unknown parameter 'meta.no_such_key'"),
    ],
)
def test_bad_input_is_an_error_and_creates_no_job(dashboard, tmp_path: Path, write: str | None, message: str) -> None:
    path = tmp_path / "bad.toml"
    if write is not None:
        tiny = TINY.read_text()
        path.write_text(tiny[: tiny.index("[tune.space]")] + write)
    at = dashboard.app(TUNE).run()
    at = submit(at, OTHER_PATH, str(path))
    assert_clean(at)
    assert any(message in error for error in texts(at.error)), texts(at.error)
    assert job_count(dashboard) == 0


def test_good_input_submits_one_tune_job_with_the_forms_arguments(dashboard, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.jobs

    submitted = []
    monkeypatch.setattr(
        core.jobs, "submit_job", lambda kind, arguments, started_by: submitted.append((kind, arguments)) or 7
    )
    monkeypatch.setattr(core.jobs, "ensure_worker", lambda: None)
    at = dashboard.app(TUNE).run()
    at.selectbox(key="tune_sampler").set_value("random")
    at = submit(at, "configs/sine/tune_tiny.toml", tune_trials=3)
    assert_clean(at)
    assert not at.error
    assert submitted == [
        (
            "tune",
            core.jobs.TuneJobArguments(
                config_path=str(TINY),
                trials=3,
                study_name="sine-maml-5shot-tune",
                sampler="random",
                pruner="median",
                timeout_s=None,
            ),
        )
    ]
    assert any("Job 7: 3 trial(s) of study 'sine-maml-5shot-tune' queued." in m for m in texts(at.success))


def test_a_stored_study_shows_its_trials_figures_and_best_trial(dashboard, tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = run_tune(
        TuneRequest(
            config_path=str(TINY),
            trials=3,
            study_name="stored",
            storage_url=dashboard.url,
            sampler="random",
            pruner="none",
            device="cpu",
            output_root=str(tmp_path / "tune"),
        )
    )
    at = dashboard.app(TUNE).run()
    assert_clean(at)
    assert at.selectbox(key="tune_shown_study").value == "stored"
    table = at.dataframe[0].value
    assert list(table["trial"]) == [0, 1, 2] and list(table["state"]) == ["COMPLETE"] * 3
    assert list(table["mse"]) == pytest.approx([t.value for t in result.trials])
    assert [tab.label for tab in at.tabs] == [
        "Optimisation history",
        "Parallel coordinates",
        "Parameter importances",
        "Intermediate values",
    ]
    assert len(at.get("plotly_chart")) == 4
    assert any(f"**Best: trial {result.best_trial}**" in m for m in texts(at.markdown))
    # A regression checkpoint has no held-out classes to package with: the page says how to measure it.
    assert f"python -m core evaluate --checkpoint {result.best_checkpoint}" in texts(at.code)
    assert any("Not in a checkpoint folder the dashboard searches" in c for c in texts(at.caption))


def test_the_best_trial_of_an_image_classifier_study_opens_on_adapt(dashboard, with_checkpoint: Path) -> None:
    """A study whose best trial wrote an image classifier (here the tiny Conv4 in the dashboard's checkpoint folder)."""
    from core.settings import database_url
    from core.tune import CHECKPOINT_ATTR, METRIC_ATTR, PARAMS_ATTR, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="images", storage=open_storage(database_url()), direction="maximize")
    study.set_user_attr(METRIC_ATTR, "accuracy")
    distribution = {"rule.lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
    for number, (rate, accuracy) in enumerate([(0.01, 0.5), (0.2, 0.75)]):
        study.add_trial(
            optuna.trial.create_trial(
                params={"rule.lr": rate},
                distributions=distribution,
                value=accuracy,
                intermediate_values={10: accuracy - 0.1, 20: accuracy},
                user_attrs={PARAMS_ATTR: {"rule.lr": rate}, CHECKPOINT_ATTR: str(with_checkpoint if number else "")},
            )
        )
    at = dashboard.app(TUNE).run()
    assert_clean(at)
    assert any("**Best: trial 1**, validation accuracy 0.75" in m for m in texts(at.markdown))
    assert any(f"python -m core package --checkpoint {with_checkpoint} --name images" in c for c in texts(at.code))
    next(b for b in at.button if b.label == "Open the best trial on Adapt").click()
    at = at.run()
    assert_clean(at)
    assert at.session_state["checkpoint"].endswith(str(with_checkpoint.name))
    assert at.selectbox(key="checkpoint").value == at.session_state["checkpoint"]  # the Adapt page, this checkpoint
