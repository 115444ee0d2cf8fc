"""Runs and lab studies record who made them (``owner``), for the delete rule of ``core.store.permissions``.

Revision ID: 0006_owners
Revises: 0005_job_workers_and_evaluations
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_owners"
down_revision: str | None = "0005_job_workers_and_evaluations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added columns with a literal server default: SQLite adds them in place (no table copy), and rows stored
    # before get owner "" (no owner: only an admin, or the single-user dashboard, may delete them).
    for table in ("runs", "lab_studies"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("owner", sa.String(length=100), nullable=False, server_default=""))


def downgrade() -> None:
    # On SQLite this copies the tables; env.py keeps foreign keys off meanwhile so nothing cascades.
    for table in ("lab_studies", "runs"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("owner")
