"""Jobs, the default database location, and what importing the store pulls in."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

import core.store
from core.settings import database_url
from core.store import Store
from core.store.jobs import LOG_TAIL_LINES, EvaluationInput

REPO = Path(__file__).resolve().parents[3]


def test_jobs_record_progress(store: Store) -> None:
    job_id = store.jobs.create("rerun", {"run_ids": [1, 2]})
    job = store.jobs.get(job_id)
    assert (job["kind"], job["status"], job["progress"], job["payload"], job["result"]) == (
        "rerun", "queued", 0.0, {"run_ids": [1, 2]}, None
    )
    store.jobs.update(job_id, status="running", progress=0.5, message="1 of 2")
    store.jobs.update(job_id, status="succeeded", progress=1.0, result={"new_run_ids": [3, 4]})
    job = store.jobs.get(job_id)
    assert (job["status"], job["progress"], job["message"], job["result"], job["error"]) == (
        "succeeded", 1.0, "1 of 2", {"new_run_ids": [3, 4]}, None
    )
    assert job["updated_at"] >= job["created_at"] and job["created_at"].tzinfo is not None
    with pytest.raises(ValueError, match="between 0 and 1"):
        store.jobs.update(job_id, progress=1.5)
    with pytest.raises(ValueError, match="unknown job status"):
        store.jobs.update(job_id, status="done")
    with pytest.raises(KeyError, match="no job with id 99"):
        store.jobs.update(99, message="?")
    with pytest.raises(KeyError, match="no job with id 99"):
        store.jobs.get(99)


def _evaluation(mean: float = 0.5, values: tuple[float, ...] = (0.25, 0.75)) -> EvaluationInput:
    return EvaluationInput(checkpoint="/ckpt/a.safetensors", device="cpu", metric="accuracy", mean=mean, ci95=0.25,
                           episodes=2, n_way=5, k_shot=1, n_query=15, steps=3, rule="alfa", head_init="zero", seed=1,
                           protocol="any-classes", seconds=1.5, values=list(values))


def test_a_job_s_life_queued_running_succeeded_with_its_evaluation(store: Store) -> None:
    job_id = store.jobs.create("evaluate", {"episodes": 2}, started_by="alice")
    assert store.jobs.record(job_id).started_by == "alice"
    assert store.jobs.claim(job_id, "host:1") and not store.jobs.claim(job_id, "host:2")  # one worker only
    assert store.jobs.report(job_id, progress=0.5, eta_seconds=3.0, message="1 of 2", log_line="half") is False
    running = store.jobs.record(job_id)
    assert (running.status, running.worker, running.progress, running.eta_seconds, running.log_tail) == (
        "running", "host:1", 0.5, 3.0, "half")
    assert store.jobs.finish(job_id, "succeeded", result={"mean": 0.5}, evaluation=_evaluation())
    job = store.jobs.record(job_id)
    stored = store.jobs.evaluation_of_job(job_id)
    assert (job.status, job.progress, job.eta_seconds, job.result) == (
        "succeeded", 1.0, 0.0, {"mean": 0.5, "evaluation_id": stored.id})
    assert (stored.values, stored.mean, stored.ci95, stored.job_id) == ([0.25, 0.75], 0.5, 0.25, job_id)
    assert job.elapsed_seconds() == (job.finished_at - job.started_at).total_seconds()
    # A finished job never changes again: a second finish (a late recovery) writes nothing.
    assert not store.jobs.finish(job_id, "failed", error="late", evaluation=_evaluation())
    assert not store.jobs.fail_if_running(job_id, "late", "host:1")
    assert store.jobs.record(job_id).status == "succeeded" and len(store.jobs.evaluations()) == 1


def test_cancelling_a_queued_job_wins_over_a_worker_and_a_running_one_gets_the_flag(store: Store) -> None:
    queued = store.jobs.create("evaluate", {})
    assert store.jobs.cancel_queued(queued) and not store.jobs.claim(queued, "host:1")
    assert store.jobs.record(queued).status == "cancelled"
    running = store.jobs.create("evaluate", {})
    store.jobs.claim(running, "host:1")
    assert not store.jobs.cancel_queued(running) and store.jobs.request_cancel(running)
    assert store.jobs.report(running, progress=0.1) is True  # the worker learns it at its next report
    assert store.jobs.finish(running, "cancelled")
    assert not store.jobs.request_cancel(running)
    with pytest.raises(ValueError, match="a job finishes as"):
        store.jobs.finish(running, "running")


def test_recovery_fails_only_the_job_of_that_worker_and_a_nan_result_is_kept(store: Store) -> None:
    job_id = store.jobs.create("evaluate", {})
    store.jobs.claim(job_id, "host:1")
    assert not store.jobs.fail_if_running(job_id, "gone", "host:2")  # another worker's claim is left alone
    assert store.jobs.fail_if_running(job_id, "worker host:1 is gone", "host:1")
    assert (store.jobs.record(job_id).status, store.jobs.record(job_id).error) == ("failed", "worker host:1 is gone")
    diverged = store.jobs.create("evaluate", {})
    store.jobs.claim(diverged, "host:1")
    # JSON has no NaN (PostgreSQL's json refuses it): episode values keep it as null and read back NaN, a NaN
    # inside a job's result reads back None.
    store.jobs.finish(
        diverged, "succeeded", result={"loss": math.nan}, evaluation=_evaluation(mean=math.nan, values=(math.nan, 0.5))
    )
    stored = store.jobs.evaluation_of_job(diverged)
    assert math.isnan(stored.mean) and math.isnan(stored.values[0]) and stored.values[1:] == [0.5]
    assert store.jobs.record(diverged).result == {"loss": None, "evaluation_id": stored.id}


def test_the_log_tail_keeps_the_last_lines(store: Store) -> None:
    job_id = store.jobs.create("train", {})
    store.jobs.claim(job_id, "host:1")
    for line in range(LOG_TAIL_LINES + 5):
        store.jobs.report(job_id, log_line=f"line {line}")
    tail = store.jobs.record(job_id).log_tail.splitlines()
    assert tail == [f"line {line}" for line in range(5, LOG_TAIL_LINES + 5)]
    assert [job.id for job in store.jobs.list(statuses=("running",))] == [job_id]
    assert store.jobs.list(kinds=("evaluate",)) == []


def test_default_url_is_the_environment_or_the_repo_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FEWSHOT_DATABASE_URL", raising=False)
    assert database_url() == f"sqlite:///{REPO / 'data' / 'fewshot.sqlite3'}"
    url = f"sqlite:///{tmp_path / 'made' / 'here.sqlite3'}"
    monkeypatch.setenv("FEWSHOT_DATABASE_URL", url)
    with Store() as store:
        assert store.url == url
        assert (tmp_path / "made" / "here.sqlite3").is_file()


def test_importing_the_store_pulls_in_no_heavy_or_core_modules() -> None:
    """Only the settings (its URL) come with the store: no torch, numpy, streamlit, PIL or engine module."""
    code = (
        "import sys, core.store\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'streamlit', 'PIL'))\n"
        "core = sorted(m for m in sys.modules if m.startswith('core.') and not m.startswith('core.store'))\n"
        "print(heavy, core)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert completed.stdout.strip() == "[] ['core.settings']"


def test_the_public_api_is_exported() -> None:
    for name in core.store.__all__:
        assert getattr(core.store, name) is not None


def test_table_classes_are_named_apart_from_the_records_they_store() -> None:
    """ORM classes end in ``Row``: ``StepTraceRow`` is a table, ``core.rules.StepTrace`` a rule's trace."""
    from core.store import models, records

    tables = {mapper.class_.__name__ for mapper in models.Base.registry.mappers}
    assert tables == {
        "ImageRow", "CheckpointRow", "RunRow", "EpisodeItemRow", "AdaptationRow", "StepTraceRow", "PredictionRow",
        "JobRow", "LabStudyRow", "EvaluationRow",
    }
    assert not tables & set(vars(records))


def test_a_bare_postgresql_url_uses_psycopg_3_when_psycopg2_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.store.database import with_installed_driver

    monkeypatch.setitem(sys.modules, "psycopg2", None)  # import psycopg2 raises ImportError
    assert with_installed_driver("postgresql://ada:s%40cret@db:5433/runs") == (
        "postgresql+psycopg://ada:s%40cret@db:5433/runs"
    )
    for unchanged in ("postgresql+psycopg://u:p@h/d", "sqlite:///x/runs.sqlite3", "sqlite://"):
        assert with_installed_driver(unchanged) == unchanged


def test_a_store_opens_a_bare_postgresql_url_on_a_real_server(postgres_server, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    url = postgres_server.create_database("bare_url").replace("postgresql+psycopg://", "postgresql://", 1)
    with Store(url) as opened:
        assert opened.engine.url.drivername == "postgresql+psycopg"
        job_id = opened.jobs.create("rerun", {"run_ids": [1]})
        assert opened.jobs.get(job_id)["payload"] == {"run_ids": [1]}
