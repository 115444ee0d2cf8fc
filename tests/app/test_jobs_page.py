"""Jobs page (AppTest): bad form input is an error and creates no job, a good one queues a job with its arguments,
and the list shows what the store holds: progress and ETA, the log tail, an evaluation's result with its
histogram, a training run's checkpoint, and a Cancel button that sets the job's cancel flag."""

from __future__ import annotations

import pytest

from core.jobs.queue import stop_spawned_workers
from core.store.jobs import EvaluationInput
from tests.app.builders import save_sine_checkpoint, save_tiny_checkpoint
from tests.app.test_adapt_page import assert_clean, texts

JOBS = "screens/jobs.py"


@pytest.fixture(autouse=True)
def _no_worker_left_behind():
    # Submitting from the page starts the embedded worker (a real process): stop it after each test.
    yield
    stop_spawned_workers()


def test_an_empty_list_and_both_forms(dashboard):
    at = dashboard.app(JOBS).run()
    assert_clean(at)
    assert "No jobs yet" in " ".join(texts(at.info))
    assert {button.label for button in at.button} >= {"Start the evaluation", "Start training"}


def test_bad_input_is_an_error_and_creates_no_job(dashboard, with_checkpoint):
    at = dashboard.app(JOBS).run()
    at.text_input(key="jobs_eval_path").set_value(str(dashboard.tmp / "missing.safetensors"))
    at.button[0].click().run()  # Start the evaluation
    assert_clean(at)
    assert any("No job started" in e and "does not exist" in e for e in texts(at.error))
    # The tiny checkpoint records no training config, so it has no test classes to evaluate on.
    at.text_input(key="jobs_eval_path").set_value("")
    at.selectbox(key="jobs_eval_checkpoint").set_value(str(with_checkpoint))
    at.button[0].click().run()
    assert any("does not record its training config" in e for e in texts(at.error))
    train = next(b for b in at.button if b.label == "Start training")
    train.click().run()
    assert any("choose a config" in e for e in texts(at.error))
    assert dashboard.store().jobs.list() == []


def test_a_good_evaluation_is_queued_with_its_arguments_and_who_started_it(dashboard):
    sine = save_sine_checkpoint(dashboard.checkpoints / "sine.safetensors")
    at = dashboard.app(JOBS).run()
    at.text_input(key="jobs_started_by").set_value("ada")
    at.selectbox(key="jobs_eval_checkpoint").set_value(str(sine))
    at.number_input(key="jobs_eval_shot").set_value(5)
    at.number_input(key="jobs_eval_episodes").set_value(30)
    at.button[0].click().run()
    assert_clean(at)
    [job] = dashboard.store().jobs.list()
    assert (job.kind, job.started_by, job.payload["checkpoint"], job.payload["shot"], job.payload["episodes"]) == (
        "evaluate",
        "ada",
        str(sine),
        5,
        30,
    )
    assert any(f"Job #{job.id}" in s for s in texts(at.success))


def _running(store, kind="evaluate", payload=None):
    job_id = store.jobs.create(kind, payload or {"checkpoint": "/c.safetensors"}, started_by="bob")
    store.jobs.claim(job_id, "elsewhere:1")
    return job_id


def test_the_list_shows_progress_results_and_cancels(dashboard, tmp_path):
    store = dashboard.store()
    running = _running(store)
    store.jobs.report(running, progress=0.25, eta_seconds=75, message="150 of 600", log_line="started evaluate")
    done = _running(store)
    store.jobs.finish(
        done,
        "succeeded",
        result={"mean": 0.5},
        evaluation=EvaluationInput(
            checkpoint="/c.safetensors",
            device="cpu",
            metric="accuracy",
            mean=0.5,
            ci95=0.125,
            episodes=4,
            n_way=5,
            k_shot=1,
            n_query=15,
            steps=3,
            rule="alfa",
            head_init="zero",
            seed=1,
            protocol="any-classes",
            seconds=2.0,
            values=[0.25, 0.5, 0.5, 0.75],
        ),
    )
    best = save_tiny_checkpoint(dashboard.checkpoints / "run" / "best.safetensors")
    trained = _running(store, "train", {"config": "c.toml"})
    store.jobs.finish(trained, "succeeded", result={"iterations": 4, "best_score": -1.5, "best_checkpoint": str(best)})
    failed = _running(store)
    store.jobs.fail_if_running(failed, "worker elsewhere:1 is gone", "elsewhere:1")

    at = dashboard.app(JOBS).run()
    assert_clean(at)
    titles = [e.label for e in at.expander]
    assert titles[0].startswith("❌ #4 evaluate — failed — started by bob") and len(titles) == 4
    # Newest first: failed (no progress), trained, evaluated, running (a quarter); Streamlit keeps percents.
    assert [p.value for p in at.get("progress")] == [0, 100, 100, 25]
    markdown = " ".join(texts(at.markdown))
    assert "ETA: 1:15" in markdown and "best validation score -1.5" in markdown
    assert "worker elsewhere:1 is gone" in texts(at.error)
    assert [m.value for m in at.metric] == ["50.00 ± 12.50 %"]
    assert len(at.get("plotly_chart")) == 1
    [table] = at.dataframe  # the stored evaluations, browsable apart from their jobs
    assert table.value[["job", "mean", "95% CI ±", "episodes"]].values.tolist() == [[done, 0.5, 0.125, 4]]
    assert any("started evaluate" in c.value for c in at.code)
    assert [b.label for b in at.button if b.key and b.key.startswith("jobs_adapt_")] == ["Open on Adapt"]
    [cancel] = [b for b in at.button if b.label == "Cancel"]  # only the running job can be cancelled
    cancel.click().run()
    assert_clean(at)
    assert store.jobs.record(running).cancel_requested
    # Adapt has no query parameter for its checkpoint: the button chooses it in Adapt's selectbox and goes there.
    next(b for b in at.button if b.label == "Open on Adapt").click().run()
    assert_clean(at)
    assert at.selectbox(key="checkpoint").value.endswith("run/best.safetensors")


def test_an_unreachable_redis_queue_is_a_message_not_a_traceback(dashboard, monkeypatch):
    import socket

    # A port nothing listens on: bind, read its number, close.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("FEWSHOT_JOBS_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    sine = save_sine_checkpoint(dashboard.checkpoints / "sine.safetensors")
    at = dashboard.app(JOBS).run()
    at.selectbox(key="jobs_eval_checkpoint").set_value(str(sine))
    at.number_input(key="jobs_eval_shot").set_value(5)
    at.button[0].click().run()
    assert_clean(at)
    assert any("No job started" in e and "cannot be reached" in e for e in texts(at.error))
    # The job row says why it never ran (core.jobs.submit_job stores it failed, with the reason).
    [job] = dashboard.store().jobs.list()
    assert job.status == "failed" and "cannot be reached" in (job.error or job.message or "")
