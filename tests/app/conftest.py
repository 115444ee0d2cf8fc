"""A dashboard with its own temporary database and checkpoint folder (no repository checkpoints or runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store import Store
from tests.app.builders import save_tiny_checkpoint

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
TIMEOUT = 180  # seconds per script run: the CI machine may be busy


@dataclass
class Dashboard:
    url: str
    checkpoints: Path
    tmp: Path

    def app(self, page: str | None = None, **query: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        if page:
            at.switch_page(page)
        for key, value in query.items():
            at.query_params[key] = value
        return at

    def store(self) -> Store:
        return Store(self.url)


@pytest.fixture
def dashboard(tmp_path, monkeypatch) -> Dashboard:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    url = f"sqlite:///{tmp_path / 'dashboard.sqlite3'}"
    monkeypatch.setenv("FEWSHOT_DATABASE_URL", url)
    monkeypatch.setenv("FEWSHOT_DEFAULT_CHECKPOINT_DIRS", "")
    monkeypatch.setenv("FEWSHOT_CHECKPOINT_DIRS", str(checkpoints))
    monkeypatch.setenv("FEWSHOT_DEVICE", "cpu")
    return Dashboard(url, checkpoints, tmp_path)


@pytest.fixture
def with_checkpoint(dashboard) -> Path:
    return save_tiny_checkpoint(dashboard.checkpoints / "tiny.safetensors")
