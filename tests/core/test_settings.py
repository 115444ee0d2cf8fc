"""The settings module: every FEWSHOT_* variable read at call time, malformed values refused, one README table."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from core import settings
from core.settings import SETTINGS, SettingError

ROOT = Path(__file__).resolve().parents[2]


def test_paths_are_the_checkout_s():
    assert settings.REPO_ROOT == ROOT
    assert settings.SHIPPED_CHECKPOINT_DIR == ROOT / "assets" / "checkpoints"
    assert (settings.SHIPPED_CHECKPOINT_DIR / "MANIFEST.json").is_file()
    assert settings.DEFAULT_DATABASE_FILE == ROOT / "data" / "fewshot.sqlite3"


def test_values_are_read_on_every_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("FEWSHOT_DEVICE", raising=False)
    assert settings.device_name() == "auto"
    monkeypatch.setenv("FEWSHOT_DEVICE", " CUDA:1 ")
    assert settings.device_name() == "cuda:1"

    monkeypatch.delenv("FEWSHOT_MAX_UPLOAD_MB", raising=False)
    assert settings.max_upload_bytes() == 20 * 1024 * 1024
    monkeypatch.setenv("FEWSHOT_MAX_UPLOAD_MB", "0.5")
    assert settings.max_upload_bytes() == 512 * 1024

    monkeypatch.delenv("FEWSHOT_DATABASE_URL", raising=False)
    assert settings.database_url() == f"sqlite:///{ROOT / 'data' / 'fewshot.sqlite3'}"
    monkeypatch.setenv("FEWSHOT_DATABASE_URL", "sqlite://")
    assert settings.database_url() == "sqlite://"

    monkeypatch.setenv("FEWSHOT_TUNE_MALLOC", "off")
    assert settings.tune_malloc() is False
    monkeypatch.setenv("FEWSHOT_TUNE_MALLOC", "")
    assert settings.tune_malloc() is True


def test_omniglot_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("FEWSHOT_OMNIGLOT_ROOT", str(tmp_path / "missing"))
    # A configured folder is the only place looked in, even when missing (the error then names it).
    assert settings.omniglot_search_order() == (tmp_path / "missing",)
    assert settings.omniglot_root() == tmp_path / "missing"
    monkeypatch.delenv("FEWSHOT_OMNIGLOT_ROOT")
    assert settings.omniglot_search_order() == (
        ROOT.parent / "shared" / "datasets" / "omniglot",
        ROOT / "data" / "omniglot",
    )
    expected = next((p for p in settings.omniglot_search_order() if p.is_dir()), ROOT / "data" / "omniglot")
    assert settings.omniglot_root() == expected


def test_checkpoint_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("FEWSHOT_DEFAULT_CHECKPOINT_DIRS", raising=False)
    monkeypatch.setenv("FEWSHOT_CHECKPOINT_DIRS", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert settings.checkpoint_search_dirs() == [
        ROOT / "assets" / "checkpoints", ROOT / "runs", tmp_path / "a", tmp_path / "b",
    ]
    monkeypatch.setenv("FEWSHOT_DEFAULT_CHECKPOINT_DIRS", "")  # set to nothing: no default folder at all
    assert settings.checkpoint_search_dirs() == [tmp_path / "a", tmp_path / "b"]


@pytest.mark.parametrize(
    ("name", "value", "read", "message"),
    [
        ("FEWSHOT_MAX_UPLOAD_MB", "abc", settings.max_upload_bytes, "a number of megabytes, got 'abc'"),
        ("FEWSHOT_MAX_UPLOAD_MB", "lots", settings.max_upload_bytes, "a number of megabytes, got 'lots'"),
        ("FEWSHOT_MAX_UPLOAD_MB", "0", settings.max_upload_bytes, "positive"),
        ("FEWSHOT_MAX_UPLOAD_MB", "-3", settings.max_upload_bytes, "positive"),
        ("FEWSHOT_MAX_UPLOAD_MB", "nan", settings.max_upload_bytes, "positive"),
        ("FEWSHOT_MAX_UPLOAD_MB", "inf", settings.max_upload_bytes, "positive"),
        ("FEWSHOT_TUNE_MALLOC", "maybe", settings.tune_malloc, "must be 1 or 0"),
        ("FEWSHOT_DEVICE", "gpu 0", settings.device_name, "auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_a_malformed_value_names_its_variable(monkeypatch, name, value, read, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=name) as raised:
        read()
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)  # callers that catch ValueError keep working


def test_the_readme_table_lists_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {
        match["name"]: match["default"].strip()
        for match in re.finditer(r"^\| `(?P<name>FEWSHOT_[A-Z_]+)` \|(?P<default>[^|]*)\|", readme, re.MULTILINE)
    }
    assert rows == {setting.name: setting.default for setting in SETTINGS}


def test_no_other_module_reads_a_fewshot_variable():
    """One place: the engine, the dashboard and the networks reach the environment only through core.settings."""
    readers = []
    for package in ("core", "app", "models"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "core" / "settings.py":
                continue
            text = path.read_text(encoding="utf-8")
            if re.search(r"[\"']FEWSHOT_", text):  # a variable's name as a string: someone reads it
                readers.append(str(path.relative_to(ROOT)))
    assert readers == []


def test_the_job_queue_file_follows_the_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("FEWSHOT_DATABASE_URL", f"sqlite:///{tmp_path / 'runs.sqlite3'}")
    assert settings.job_queue_file() == tmp_path / "runs.jobs.sqlite3"
    # Any other store: a file per store URL, so two databases never share a queue.
    queues = set()
    for url in ("postgresql+psycopg://u:p@h/one", "postgresql+psycopg://u:p@h/two", "sqlite://"):
        monkeypatch.setenv("FEWSHOT_DATABASE_URL", url)
        path = settings.job_queue_file()
        assert path.parent == settings.DATA_DIR and path.name.startswith("jobs-") and path.suffix == ".sqlite3"
        assert settings.job_queue_file() == path  # the same store, the same queue
        queues.add(path)
    assert len(queues) == 3
