"""Row counts and direct SQL for the store tests."""

from __future__ import annotations

from sqlalchemy import text

from core.store import Store

TABLES = ("images", "checkpoints", "runs", "episode_items", "adaptations", "step_traces", "predictions")


def row_counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as connection:
        return {table: connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() for table in TABLES}
