"""Alembic environment of the run store.

Run programmatically by ``core.store`` (the connection to migrate is in ``config.attributes["connection"]``)
or from the command line: ``alembic -c core/store/alembic.ini upgrade head`` (URL from ``sqlalchemy.url``,
else ``$FEWSHOT_DATABASE_URL``, else ``data/fewshot.sqlite3``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from core.settings import database_url as configured_database_url
from core.store.database import VERSION_TABLE, adopt_legacy_version_table, create_store_engine
from core.store.models import Base

config = context.config
target_metadata = Base.metadata

# Only the command line configures logging: the app that migrates programmatically owns its logging.
if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or configured_database_url()


def run_migrations_offline() -> None:
    """Emit the SQL to a script instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def our_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in context.script.walk_revisions())


def run_migrations(connection: Connection) -> None:
    """Run the pending migrations on ``connection``, with SQLite foreign keys off while they run.

    SQLite alters most tables by copying them into a new one and dropping the old (Alembic batch mode);
    with foreign keys on, dropping ``runs`` would cascade and delete every episode item and adaptation.
    The pragma cannot change inside a transaction, so a connection with foreign keys on must come without
    an open transaction; references are checked once the migrations are done.
    """
    external_transaction = connection.in_transaction()
    guard_foreign_keys = False
    if connection.dialect.name == "sqlite":
        guard_foreign_keys = bool(connection.exec_driver_sql("PRAGMA foreign_keys").scalar())
        if guard_foreign_keys and external_transaction:
            raise RuntimeError(
                "migrating SQLite with foreign keys on needs a connection without an open transaction "
                "(they must be switched off, which SQLite ignores inside a transaction)"
            )
        if guard_foreign_keys:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        if not external_transaction:
            # End the transaction these statements auto-began, so that Alembic owns (and commits) its own.
            connection.commit()
    try:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True, version_table=VERSION_TABLE
        )
        with context.begin_transaction():
            # A database of the code before VERSION_TABLE: our revision moves out of Optuna's way first.
            adopt_legacy_version_table(connection, our_revisions())
            context.run_migrations()
        if guard_foreign_keys:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left rows referring to missing rows: {broken[:10]}")
    finally:
        if guard_foreign_keys:
            if connection.in_transaction():
                connection.rollback()  # only the foreign key check's read can be open here
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = create_store_engine(database_url())
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
