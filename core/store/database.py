"""Database URL, engine set-up (SQLite connection settings) and Alembic migrations of the run store."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
# Our migrations' own version table. Optuna's storage (``python -m core tune``) lives in the same database and runs
# its own Alembic migrations, which keep their revision in Alembic's default table, ``alembic_version``: sharing it,
# each history would read the other's revision as its own. Databases written before this table existed hold our
# revision in ``alembic_version``; ``adopt_legacy_version_table`` moves it here.
VERSION_TABLE = "fewshot_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"


def is_sqlite(url: str | URL) -> bool:
    """True for any SQLite URL, whatever the driver."""
    return make_url(url).get_backend_name() == "sqlite"


def is_sqlite_memory(url: str | URL) -> bool:
    """True for ``sqlite://``, ``sqlite:///:memory:`` and URI-style ``mode=memory`` databases."""
    url = make_url(url)
    return is_sqlite(url) and (url.database in (None, "", ":memory:") or url.query.get("mode") == "memory")


def json_text(value: Any) -> str:
    """The JSON text stored for a JSON column's ``value``, with every NaN or infinity written as ``null``.

    JSON (RFC 8259) has no such numbers: PostgreSQL's ``json`` type refuses the whole value, and on SQLite Python
    would write ``NaN``, which no standard JSON reader accepts. The float lists that may hold them (a diverged
    adaptation's probabilities, an evaluation's episode values) read ``null`` back as NaN.
    """
    return json.dumps(_finite_or_null(value), allow_nan=False)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def with_installed_driver(url: str | URL) -> str:
    """``url`` with a driver that is installed: a bare ``postgresql://`` means psycopg2 to SQLAlchemy, which the
    requirements do not install; psycopg 3 (``postgresql+psycopg://``) is used instead. Other URLs are unchanged."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        try:
            import psycopg2  # noqa: F401  (SQLAlchemy's default PostgreSQL driver, when someone installed it)
        except ImportError:
            parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_store_engine(url: str | URL) -> Engine:
    """An engine for ``url``; on SQLite every new connection gets foreign keys, a busy timeout and WAL.

    On every database JSON columns are written by :func:`json_text`. An in-memory SQLite database lives as long
    as its one connection, so it gets a ``StaticPool``: the migrations and every later session then see the same
    database. A file database gets its folder created.
    """
    url = make_url(with_installed_driver(url))
    if not is_sqlite(url):
        return create_engine(url, json_serializer=json_text)
    memory = is_sqlite_memory(url)
    options: dict[str, Any] = {"json_serializer": json_text}
    if memory:
        options |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
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
    """Our Alembic revision the database is at; None for a database never migrated.

    A database not yet upgraded since the version table moved holds it in ``alembic_version``: that one is read
    when it names one of our revisions (not Optuna's).
    """
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
        if revision is not None:
            return revision
        legacy = legacy_revisions(connection, our_revision_ids())
        return legacy[0] if legacy else None


def our_revision_ids() -> frozenset[str]:
    """Every revision id of the store's migrations (``migrations/versions``)."""
    from alembic.script import ScriptDirectory

    return frozenset(script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def legacy_revisions(connection: Connection, ours: frozenset[str]) -> list[str]:
    """Our revision ids held in ``alembic_version`` (where this store kept them before ``VERSION_TABLE``)."""
    if not inspect(connection).has_table(LEGACY_VERSION_TABLE):
        return []
    rows = connection.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalars().all()
    return [revision for revision in rows if revision in ours]


def adopt_legacy_version_table(connection: Connection, ours: frozenset[str]) -> None:
    """Move our revision from ``alembic_version`` to ``VERSION_TABLE``, on ``connection``'s open transaction.

    Only our own revision ids move (an Optuna revision stays where Optuna reads it); the old table is dropped
    when nothing is left in it, so that Optuna can create its own. Nothing happens once ``VERSION_TABLE`` exists.
    """
    if inspect(connection).has_table(VERSION_TABLE):
        return
    moving = legacy_revisions(connection, ours)
    if not moving:
        return
    # The table Alembic itself would create (alembic.runtime.migration: version_num VARCHAR(32), primary key).
    connection.execute(
        text(
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
            f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    for revision in moving:
        connection.execute(
            text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)"), {"revision": revision}
        )
        connection.execute(
            text(f"DELETE FROM {LEGACY_VERSION_TABLE} WHERE version_num = :revision"), {"revision": revision}
        )
    if connection.execute(text(f"SELECT COUNT(*) FROM {LEGACY_VERSION_TABLE}")).scalar_one() == 0:
        connection.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))
