from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import postgres

REPO = Path(__file__).resolve().parent.parent


def omniglot_root() -> Path | None:
    from core import settings
    from core.data.omniglot import list_alphabets

    root = settings.omniglot_root()
    try:
        return root if list_alphabets(root) else None
    except (FileNotFoundError, ValueError):
        return None


@pytest.fixture(scope="session")
def real_omniglot() -> Path:
    root = omniglot_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have the real Omniglot data at ../shared/datasets/omniglot (or $FEWSHOT_OMNIGLOT_ROOT)")
        pytest.skip("real Omniglot data not found")
    return root


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One real PostgreSQL server for the whole session (tests/support/postgres.py); each test gets its own database
    on it (``database_url``)."""
    reason = postgres.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests on a real server: {reason}")
        pytest.skip(reason)
    with postgres.running_postgres() as server:
        yield server


DATABASE_KINDS = ("sqlite", "postgresql")
_database_numbers = itertools.count(1)


@contextmanager
def fresh_database(kind: str, request: pytest.FixtureRequest, sqlite_file: Path) -> Iterator[str]:
    """The URL of a fresh, empty database of ``kind``: the SQLite file ``sqlite_file``, or a new database on the
    session's PostgreSQL server (dropped on exit, whatever connections the test left open)."""
    if kind == "sqlite":
        yield f"sqlite:///{sqlite_file}"
        return
    if kind != "postgresql":
        raise ValueError(f"database kind {kind!r}: use one of {', '.join(DATABASE_KINDS)}")
    server: postgres.PostgresServer = request.getfixturevalue("postgres_server")
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty run-store database for this test, once on SQLite (a file under ``tmp_path``) and once on the
    session's real PostgreSQL server: ids ``[sqlite]`` and ``[postgresql]``."""
    with fresh_database(request.param, request, tmp_path / "store" / "runs.sqlite3") as url:
        yield url


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (CI runs it)")
    config.addinivalue_line("markers", "browser: drives a real headless Chromium (CI runs it)")
