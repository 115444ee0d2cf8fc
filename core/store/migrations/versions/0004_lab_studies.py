"""Lab studies: the dashboard's Lab page stores its studies (settings and results as JSON text).

Revision ID: 0004_lab_studies
Revises: 0003_names_tags_previews
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_lab_studies"
down_revision: str | None = "0003_names_tags_previews"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A new table only: no existing table is touched.
    op.create_table(
        "lab_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("wall_seconds", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_studies")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_lab_studies_created_at"), "lab_studies", ["created_at"], unique=False)
    op.create_index(op.f("ix_lab_studies_kind"), "lab_studies", ["kind"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_lab_studies_kind"), table_name="lab_studies")
    op.drop_index(op.f("ix_lab_studies_created_at"), table_name="lab_studies")
    op.drop_table("lab_studies")
