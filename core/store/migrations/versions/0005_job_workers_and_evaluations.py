"""Background jobs get a worker: who started them, which worker runs them, a heartbeat, cancellation, a log tail,
an ETA; evaluations started as jobs are stored in their own table.

Revision ID: 0005_job_workers_and_evaluations
Revises: 0004_lab_studies
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_job_workers_and_evaluations"
down_revision: str | None = "0004_lab_studies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Only added columns (nullable, or with a literal server default): SQLite adds them in place, no table copy,
    # and jobs stored before keep their rows (started_by "" and cancel_requested false).
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("started_by", sa.String(length=100), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("worker", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("queue_task_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("log_tail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("eta_seconds", sa.Double(), nullable=True))
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("device", sa.String(length=50), nullable=False),
        sa.Column("metric", sa.String(length=20), nullable=False),
        sa.Column("mean", sa.Double(), nullable=True),
        sa.Column("ci95", sa.Double(), nullable=True),
        sa.Column("episodes", sa.Integer(), nullable=False),
        sa.Column("n_way", sa.Integer(), nullable=True),
        sa.Column("k_shot", sa.Integer(), nullable=False),
        sa.Column("n_query", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=50), nullable=False),
        sa.Column("head_init", sa.String(length=50), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("protocol", sa.String(length=50), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("episode_values", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_evaluations_job_id_jobs"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint("job_id", name=op.f("uq_evaluations_job_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_evaluations_created_at"), "evaluations", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_evaluations_created_at"), table_name="evaluations")
    op.drop_table("evaluations")
    # On SQLite this copies ``jobs``; env.py keeps foreign keys off meanwhile.
    with op.batch_alter_table("jobs") as batch_op:
        for column in (
            "eta_seconds",
            "log_tail",
            "cancel_requested",
            "heartbeat_at",
            "finished_at",
            "started_at",
            "queue_task_id",
            "worker",
            "started_by",
        ):
            batch_op.drop_column(column)
