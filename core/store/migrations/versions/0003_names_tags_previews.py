"""Run names and tags; a small display preview per image.

Revision ID: 0003_names_tags_previews
Revises: 0002_notes_and_jobs
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003_names_tags_previews"
down_revision: str | None = "0002_notes_and_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _empty_list_default() -> str | sa.TextClause:
    # MySQL only accepts an expression default on a JSON column; SQLite's ADD COLUMN refuses expressions, and a
    # plain literal also keeps Alembic's SQLite batch mode from copying the table.
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        return sa.text("('[]')")
    return "[]"


def upgrade() -> None:
    # Only added columns: no table is copied, existing runs get name NULL and tags [] (the server default).
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default=_empty_list_default()))
    with op.batch_alter_table("images") as batch_op:
        batch_op.add_column(
            sa.Column("preview", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=True)
        )


def downgrade() -> None:
    # On SQLite these copy the tables; env.py keeps foreign keys off meanwhile so nothing cascades.
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("preview")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("tags")
        batch_op.drop_column("name")
