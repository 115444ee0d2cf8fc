from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import Store


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'runs.sqlite3'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store(db_url) as opened:
        yield opened


@pytest.fixture(params=["file", "memory"])
def any_store(request: pytest.FixtureRequest, db_url: str) -> Iterator[Store]:
    """The same behaviour on a file database and on an in-memory one."""
    with Store(db_url if request.param == "file" else "sqlite://") as opened:
        yield opened
