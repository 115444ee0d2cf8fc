"""Initial schema: images, checkpoints, runs, episode items, adaptations, step traces, predictions.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
        sa.Column("mime", sa.String(length=100), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_images")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("backbone", sa.JSON(), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("image_spec", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("file_sha256", name=op.f("uq_checkpoints_file_sha256")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("dataset", sa.String(length=255), nullable=True),
        sa.Column("split", sa.String(length=50), nullable=True),
        sa.Column("n_way", sa.Integer(), nullable=False),
        sa.Column("k_shot", sa.Integer(), nullable=False),
        sa.Column("n_query", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("checkpoint_name", sa.String(length=255), nullable=False),
        sa.Column("device", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("total_seconds", sa.Double(), nullable=True),
        sa.Column("class_names", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoints.id"], name=op.f("fk_runs_checkpoint_id_checkpoints"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sqlite_autoincrement=True,
    )
    for column in ("checkpoint_id", "checkpoint_name", "created_at", "dataset", "source", "status"):
        op.create_index(op.f(f"ix_runs_{column}"), "runs", [column], unique=False)
    op.create_table(
        "episode_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=True),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_sha256"], ["images.sha256"], name=op.f("fk_episode_items_image_sha256_images")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_episode_items_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episode_items")),
        sa.UniqueConstraint("run_id", "role", "position", name=op.f("uq_episode_items_run_id_role_position")),
    )
    op.create_index(op.f("ix_episode_items_image_sha256"), "episode_items", ["image_sha256"], unique=False)
    op.create_table(
        "adaptations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=50), nullable=False),
        sa.Column("rule_label", sa.String(length=255), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("head_init", sa.String(length=50), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=True),
        sa.Column("query_loss", sa.Double(), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_adaptations_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adaptations")),
        sa.UniqueConstraint("run_id", "position", name=op.f("uq_adaptations_run_id_position")),
    )
    op.create_index(op.f("ix_adaptations_rule"), "adaptations", ["rule"], unique=False)
    op.create_table(
        "step_traces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adaptation_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("layer", sa.String(length=255), nullable=False),
        sa.Column("alpha", sa.Double(), nullable=True),
        sa.Column("beta", sa.Double(), nullable=True),
        sa.Column("support_loss", sa.Double(), nullable=True),
        sa.Column("support_accuracy", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["adaptation_id"], ["adaptations.id"], name=op.f("fk_step_traces_adaptation_id_adaptations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_traces")),
        sa.UniqueConstraint("adaptation_id", "step", "layer", name=op.f("uq_step_traces_adaptation_id_step_layer")),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adaptation_id", sa.Integer(), nullable=False),
        sa.Column("query_position", sa.Integer(), nullable=False),
        sa.Column("predicted", sa.Integer(), nullable=False),
        sa.Column("truth", sa.Integer(), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["adaptation_id"], ["adaptations.id"], name=op.f("fk_predictions_adaptation_id_adaptations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        sa.UniqueConstraint(
            "adaptation_id", "query_position", name=op.f("uq_predictions_adaptation_id_query_position")
        ),
    )


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("step_traces")
    op.drop_index(op.f("ix_adaptations_rule"), table_name="adaptations")
    op.drop_table("adaptations")
    op.drop_index(op.f("ix_episode_items_image_sha256"), table_name="episode_items")
    op.drop_table("episode_items")
    for column in ("checkpoint_id", "checkpoint_name", "created_at", "dataset", "source", "status"):
        op.drop_index(op.f(f"ix_runs_{column}"), table_name="runs")
    op.drop_table("runs")
    op.drop_table("checkpoints")
    op.drop_table("images")
