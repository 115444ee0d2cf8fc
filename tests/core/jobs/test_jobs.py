"""Jobs through the real queue and a real worker process: same result as the command line, cancellation, a
SIGKILLed worker, two jobs at once, and arguments refused before any row exists."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
from sqlalchemy import text

from core.cli import main
from core.jobs import (
    EvaluateJobArguments,
    TrainJobArguments,
    TuneJobArguments,
    cancel_job,
    embedded_worker_pid,
    get_job,
    job_evaluation,
    list_evaluations,
    list_jobs,
    recover_orphaned_jobs,
    submit_job,
)
from core.jobs.queue import stop_spawned_workers
from core.jobs.runner import open_store

from .conftest import start_worker, wait_for, wait_until_finished

LONG = 100_000  # sine episodes: minutes of work, so the job is surely still running when it is cancelled or killed


def _cli_evaluation(capsys, checkpoint, *options: str) -> dict:
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--device", "cpu", "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)


def _running_with_progress(job_id: int) -> bool:
    job = get_job(job_id)
    return job.status == "running" and job.progress > 0


@pytest.mark.slow
def test_an_evaluate_job_gives_the_command_line_s_result_and_stores_it(sine_checkpoint, worker, capsys):
    expected = _cli_evaluation(capsys, sine_checkpoint, "--shot", "5", "--episodes", "40", "--seed", "2")
    job_id = submit_job(
        "evaluate",
        EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=40, seed=2, device="cpu"),
        started_by="tester",
    )
    job = wait_until_finished(job_id)
    assert job.status == "succeeded", job.error
    assert (job.kind, job.started_by, job.progress, job.eta_seconds) == ("evaluate", "tester", 1.0, 0.0)
    assert job.worker == f"{os.uname().nodename}:{worker}"
    assert job.payload["episodes"] == 40 and job.payload["checkpoint"] == str(sine_checkpoint)
    evaluation = job_evaluation(job_id)
    assert evaluation is not None and evaluation.job_id == job_id
    # The very same numbers, episode for episode: the job ran the command's function.
    assert (evaluation.mean, evaluation.ci95, evaluation.episodes, evaluation.metric) == (
        expected["mean"],
        expected["ci95"],
        40,
        "mse",
    )
    assert (job.result["mean"], job.result["evaluation_id"]) == (expected["mean"], evaluation.id)
    assert len(evaluation.values) == 40 and sum(evaluation.values) / 40 == pytest.approx(expected["mean"], rel=1e-12)
    assert [e.id for e in list_evaluations()] == [evaluation.id]
    assert "started evaluate" in job.log_tail and "succeeded" in job.log_tail
    assert job.started_at <= job.finished_at and job.elapsed_seconds() > 0


def test_bad_arguments_are_refused_and_create_no_job(sine_checkpoint, job_env):
    missing = str(job_env / "nowhere.safetensors")
    cases = [
        ("evaluate", EvaluateJobArguments(missing, shot=5), "does not exist"),
        ("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, rule="no-such-rule"), "cannot adapt with"),
        ("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=0), "episodes must be at least 1"),
        ("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=-2), "shot must be at least 1"),
        ("evaluate", EvaluateJobArguments(str(sine_checkpoint)), "give the shot"),
        ("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, within_alphabet=True), "has none"),
        ("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, head_init="nope"), "unknown head"),
        ("evaluate", EvaluateJobArguments(""), "choose a checkpoint"),
        ("train", TrainJobArguments(str(job_env / "missing.toml")), "does not exist"),
        ("train", EvaluateJobArguments(str(sine_checkpoint), shot=5), "takes TrainJobArguments"),
        ("bake", EvaluateJobArguments(str(sine_checkpoint), shot=5), "unknown job kind 'bake'"),
    ]
    for kind, arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            submit_job(kind, arguments, started_by="tester")
    with pytest.raises(ValueError, match="in-memory"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_DATABASE_URL", "sqlite://")
        submit_job("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5), started_by="tester")
    with pytest.raises(ValueError, match="who starts"):
        submit_job("evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5), started_by="  ")
    bad_config = job_env / "bad.toml"
    bad_config.write_text('name = "x"\n[meta]\niterations = "many"\n')
    with pytest.raises(ValueError, match="cannot be used"):
        submit_job("train", TrainJobArguments(str(bad_config)), started_by="tester")
    assert list_jobs() == []


@pytest.mark.slow
def test_a_running_job_is_cancelled_and_stores_no_evaluation(sine_checkpoint, worker):
    job_id = submit_job(
        "evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=LONG, device="cpu"), started_by="tester"
    )
    wait_for(lambda: _running_with_progress(job_id), "the job to make progress")
    cancel_job(job_id)
    job = wait_until_finished(job_id, timeout=30)
    assert job.status == "cancelled" and job.cancel_requested and job.progress < 1
    assert job_evaluation(job_id) is None and list_evaluations() == []
    with pytest.raises(ValueError, match="already finished"):
        cancel_job(job_id)


@pytest.mark.slow
def test_a_queued_job_is_cancelled_before_any_worker_runs_it(sine_checkpoint, job_env):
    job_id = submit_job(
        "evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=5, device="cpu"), started_by="tester"
    )
    cancel_job(job_id)  # no worker yet: the job is still queued
    after_cancel = get_job(job_id)
    assert after_cancel.status == "cancelled" and after_cancel.started_at is None
    later = submit_job(
        "evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=5, device="cpu"), started_by="tester"
    )
    start_worker()
    try:
        assert wait_until_finished(later).status == "succeeded"  # the queue went past the cancelled job ...
        job = get_job(job_id)
        assert (job.status, job.started_at, job.worker) == ("cancelled", None, None)  # ... without running it
    finally:
        stop_spawned_workers()


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_leaves_its_job_failed_and_the_store_consistent(sine_checkpoint, worker):
    job_id = submit_job(
        "evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=LONG, device="cpu"), started_by="tester"
    )
    wait_for(lambda: _running_with_progress(job_id), "the job to make progress")
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: embedded_worker_pid() is None, "the killed worker's lock to be released")
    assert get_job(job_id).status == "running"  # nobody has looked yet
    # The next start of a worker finds the job of the dead one and marks it failed, with the reason.
    start_worker()
    wait_for(lambda: get_job(job_id).status == "failed", "recovery at the worker's start")
    job = get_job(job_id)
    assert f"process {worker} no longer exists" in job.error and "killed or crashed" in job.error
    assert job.finished_at is not None and job_evaluation(job_id) is None and list_evaluations() == []
    assert recover_orphaned_jobs() == []  # nothing left to recover
    with open_store().engine.connect() as connection:
        if connection.dialect.name == "sqlite":  # SQLite's checks of its file (PostgreSQL always enforces references)
            assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            assert connection.execute(text("PRAGMA foreign_key_check")).fetchall() == []
        assert connection.execute(text("SELECT COUNT(*) FROM evaluations")).scalar() == 0
    # The new worker serves the queue as before.
    after = submit_job(
        "evaluate", EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=5, device="cpu"), started_by="tester"
    )
    assert wait_until_finished(after).status == "succeeded"


@pytest.mark.slow
def test_two_jobs_at_once_do_not_interfere(sine_checkpoint, worker, capsys):
    first = submit_job(
        "evaluate",
        EvaluateJobArguments(str(sine_checkpoint), shot=5, episodes=400, seed=3, device="cpu"),
        started_by="alice",
    )
    second = submit_job(
        "evaluate",
        EvaluateJobArguments(str(sine_checkpoint), shot=10, episodes=400, seed=4, device="cpu"),
        started_by="bob",
    )
    jobs = {job_id: wait_until_finished(job_id) for job_id in (first, second)}
    assert [job.status for job in jobs.values()] == ["succeeded", "succeeded"]
    a, b = jobs[first], jobs[second]
    assert a.started_at < b.finished_at and b.started_at < a.finished_at  # they ran at the same time
    for job_id, options in ((first, ("--shot", "5", "--seed", "3")), (second, ("--shot", "10", "--seed", "4"))):
        expected = _cli_evaluation(capsys, sine_checkpoint, *options, "--episodes", "400")
        evaluation = job_evaluation(job_id)
        assert (evaluation.mean, evaluation.ci95, evaluation.k_shot, evaluation.seed) == (
            expected["mean"],
            expected["ci95"],
            expected["k_shot"],
            expected["seed"],
        )
    assert {job.started_by for job in jobs.values()} == {"alice", "bob"}


TINY_SINE = """
name = "tiny-sine"
seed = 0
output_dir = "{out}"

[data]
kind = "sine"

[task]
k_shot = 5
n_query = 10

[model]
backbone = {{ name = "mlp", hidden = [8, 8] }}

[rule]
name = "sgd"
lr = 0.01

[meta]
estimator = "maml"
meta_batch = 2
iterations = 4
inner_steps = 1
eval_inner_steps = 1

[validation]
every = 2
episodes = 3

[checkpoint]
every = 2
"""


@pytest.mark.slow
def test_a_train_job_trains_like_the_command_line(job_env, worker, capsys):
    config = job_env / "tiny.toml"
    config.write_text(TINY_SINE.format(out=job_env / "job-run"))
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--output-dir",
                str(job_env / "cli-run"),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    expected = json.loads(capsys.readouterr().out)
    job_id = submit_job("train", TrainJobArguments(str(config), device="cpu"), started_by="tester")
    job = wait_until_finished(job_id)
    assert job.status == "succeeded", job.error
    assert (job.result["iterations"], job.result["best_score"]) == (4, expected["best_score"])
    assert job.result["best_checkpoint"] == str(job_env / "job-run" / "best.safetensors")
    assert (job_env / "job-run" / "best.safetensors").is_file()
    assert "validation at iteration 2" in job.log_tail and "validation at iteration 4" in job.log_tail
    # A second train job into the same folder without resume is refused before it exists.
    with pytest.raises(ValueError, match="already holds a training run"):
        submit_job("train", TrainJobArguments(str(config)), started_by="tester")
    assert len(list_jobs()) == 1


@pytest.mark.slow
def test_a_tune_job_runs_the_study_in_the_run_store(job_env, worker):
    import shutil

    from core.settings import REPO_ROOT
    from core.tune import default_output_root, load_result

    study = f"jobs-test-{job_env.name}"
    config = str(REPO_ROOT / "configs" / "sine" / "tune_tiny.toml")
    try:
        job_id = submit_job("tune", TuneJobArguments(config, trials=2, study_name=study), started_by="tester")
        job = wait_until_finished(job_id, timeout=300)
        assert job.status == "succeeded", job.error
        assert job.progress == 1.0 and job.result["study_name"] == study
        stored = load_result(study)  # the study is in the run store's database, as the job's result says
        assert stored.n_complete + stored.n_pruned + stored.n_failed == 2
        assert (job.result["n_complete"], job.result["best_value"]) == (stored.n_complete, stored.best_value)
        assert job.log_tail.count("trial ") == 2
    finally:
        shutil.rmtree(default_output_root() / study, ignore_errors=True)
    with pytest.raises(ValueError, match="trials"):
        submit_job("tune", TuneJobArguments(config, trials=0), started_by="tester")
    assert len(list_jobs()) == 1


@pytest.mark.slow
def test_a_cancelled_train_job_saves_its_state_and_a_resume_job_continues_it(job_env, worker):
    config = job_env / "tiny.toml"
    config.write_text(TINY_SINE.format(out=job_env / "run").replace("iterations = 4", "iterations = 1000000"))
    job_id = submit_job("train", TrainJobArguments(str(config), device="cpu"), started_by="tester")
    wait_for(lambda: _running_with_progress(job_id), "the training to make progress")
    cancel_job(job_id)
    job = wait_until_finished(job_id, timeout=60)
    assert job.status == "cancelled" and "state saved at iteration" in job.log_tail
    saved = int(re.search(r"state saved at iteration (\d+)", job.log_tail).group(1))
    assert saved >= 1 and (job_env / "run" / "state.safetensors").is_file()
    with pytest.raises(ValueError, match="already holds a training run"):  # without resume: refused
        submit_job("train", TrainJobArguments(str(config), device="cpu"), started_by="tester")
    resumed = submit_job("train", TrainJobArguments(str(config), resume=True, device="cpu"), started_by="tester")
    wait_for(lambda: _running_with_progress(resumed), "the resumed training to make progress")
    # Its first report counts from the saved iteration on, not from 0.
    assert int(get_job(resumed).message.split(" of ")[0]) > saved
    cancel_job(resumed)
    assert wait_until_finished(resumed, timeout=60).status == "cancelled"
