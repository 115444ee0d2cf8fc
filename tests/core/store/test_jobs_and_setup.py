"""Jobs, the default database location, and what importing the store pulls in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import core.store
from core.settings import database_url
from core.store import Store

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
        "JobRow", "LabStudyRow",
    }
    assert not tables & set(vars(records))
