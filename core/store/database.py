"""Database URL, engine set-up (SQLite connection settings) and Alembic migrations of the run store."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000


def is_sqlite(url: str | URL) -> bool:
    """True for any SQLite URL, whatever the driver."""
    return make_url(url).get_backend_name() == "sqlite"


def is_sqlite_memory(url: str | URL) -> bool:
    """True for ``sqlite://``, ``sqlite:///:memory:`` and URI-style ``mode=memory`` databases."""
    url = make_url(url)
    return is_sqlite(url) and (url.database in (None, "", ":memory:") or url.query.get("mode") == "memory")


def create_store_engine(url: str | URL) -> Engine:
    """An engine for ``url``; on SQLite every new connection gets foreign keys, a busy timeout and WAL.

    An in-memory SQLite database lives as long as its one connection, so it gets a ``StaticPool``: the
    migrations and every later session then see the same database. A file database gets its folder created.
    """
    url = make_url(url)
    if not is_sqlite(url):
        return create_engine(url)
    memory = is_sqlite_memory(url)
    options: dict[str, Any] = {}
    if memory:
        options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    elif url.database and not url.query.get("uri"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **options)
    event.listen(engine, "connect", partial(_configure_sqlite_connection, wal=not memory))
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _connection_record: Any, *, wal: bool) -> None:
    # SQLite ignores foreign keys unless asked, per connection; without this ON DELETE CASCADE/SET NULL and
    # the references themselves would silently not hold. WAL lets the dashboard read while a run is saved.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def alembic_config(connection: Connection | None = None, url: str | URL | None = None) -> Config:
    """An Alembic ``Config`` for the store's migrations, without any ini file.

    With ``connection`` the migrations run on it (the engine's connection settings apply); else ``env.py``
    connects to ``url`` (default: the ``FEWSHOT_DATABASE_URL`` setting, ``core.settings.database_url``).
    """
    config = Config()
    # Config values go through ConfigParser interpolation: a literal "%" must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        rendered = make_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` to ``revision`` (an empty database gets the whole schema)."""
    with engine.connect() as connection:
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at; None for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
