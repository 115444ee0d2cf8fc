"""Row counts and direct SQL for the store tests."""

from __future__ import annotations

from sqlalchemy import Connection, inspect, text

from core.store import Store

TABLES = ("images", "checkpoints", "runs", "episode_items", "adaptations", "step_traces", "predictions")


def row_counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as connection:
        return {table: connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() for table in TABLES}


def continue_id_sequences(connection: Connection) -> None:
    """After rows inserted with explicit ids: PostgreSQL's id sequences continue after the largest id.

    A serial column's sequence only moves when it gives an id; the store never inserts explicit ids, but these tests
    write rows the way an old version of the store would have, ids and all. SQLite needs nothing: it derives the
    next id from the table (AUTOINCREMENT from ``sqlite_sequence``, which explicit ids update).
    """
    if connection.dialect.name != "postgresql":
        return
    for table in inspect(connection).get_table_names():
        if "id" in {column["name"] for column in inspect(connection).get_columns(table)}:
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
            ))
