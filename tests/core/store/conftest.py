from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import Store


@pytest.fixture
def db_url(database_url: str) -> str:
    """A fresh store database: a SQLite file, and a database on a real PostgreSQL server (``tests/conftest.py``)."""
    return database_url


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A store on a SQLite file, for the tests of SQLite's own behaviour (pragmas, table copies)."""
    with Store(f"sqlite:///{tmp_path / 'store' / 'runs.sqlite3'}") as opened:
        yield opened


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store(db_url) as opened:
        yield opened


@pytest.fixture(params=["file", "memory"])
def any_store(request: pytest.FixtureRequest, db_url: str) -> Iterator[Store]:
    """The same behaviour on a database server or file and on an in-memory SQLite one."""
    with Store(db_url if request.param == "file" else "sqlite://") as opened:
        yield opened
