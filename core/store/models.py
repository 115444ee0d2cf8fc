"""SQLAlchemy ORM models of the run store: they describe the schema at the Alembic head revision.

Any change here needs a new migration under ``migrations/versions`` (``tests/core/store`` checks that the
migrated schema and these models agree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names: Alembic needs names to alter or drop constraints later (SQLite batch mode
# included), and migrations must produce exactly the names the models declare.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# MySQL's plain BLOB stops at 64 KiB, too small for photos; other databases have no such limit.
ImageBytes = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime that always comes back timezone-aware UTC.

    SQLite keeps no timezone and returns naive values; normalising here means comparisons and ``since``/
    ``until`` filters behave the same on every database. Naive values given to the store are taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ImageRow(Base):
    """An image file, stored once however many episodes use it."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Deferred: listing items needs the mime type, never the (possibly large) bytes.
    data: Mapped[bytes] = mapped_column("bytes", ImageBytes, deferred=True)
    mime: Mapped[str] = mapped_column(String(100))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A small display PNG (revision 0003), deferred like the bytes; None for images stored before it existed.
    preview: Mapped[bytes | None] = mapped_column(ImageBytes, deferred=True)


class CheckpointRow(Base):
    """A checkpoint file that some run used, identified by the hash of its contents."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    file_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    backbone: Mapped[dict[str, Any]] = mapped_column(JSON)
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    image_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # ``metadata`` is reserved on declarative classes, hence the different attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunRow(Base):
    """One episode adapted by one or more rules with one checkpoint."""

    __tablename__ = "runs"
    # AUTOINCREMENT stops SQLite from reusing the id of a deleted newest run: run ids appear in links/exports.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(20), index=True)
    dataset: Mapped[str | None] = mapped_column(String(255), index=True)
    split: Mapped[str | None] = mapped_column(String(50))
    n_way: Mapped[int] = mapped_column(Integer)
    k_shot: Mapped[int] = mapped_column(Integer)
    n_query: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL"), index=True
    )
    checkpoint_name: Mapped[str] = mapped_column(String(255), index=True)
    device: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    steps: Mapped[int] = mapped_column(Integer)
    total_seconds: Mapped[float | None] = mapped_column(Double)
    class_names: Mapped[list[str]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    # Revision 0003. The server default fills the tags of runs stored before it (and keeps ADD COLUMN cheap).
    name: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # Revision 0006: who made the run (core.store.permissions); "" for runs stored before it (no owner).
    owner: Mapped[str] = mapped_column(String(100), default="", server_default="")

    checkpoint: Mapped[CheckpointRow | None] = relationship(lazy="raise")
    # passive_deletes: the database's ON DELETE CASCADE removes children; the ORM need not load them first.
    items: Mapped[list[EpisodeItemRow]] = relationship(
        back_populates="run",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="[EpisodeItemRow.role.desc(), EpisodeItemRow.position]",  # "support" > "query": support first
        lazy="raise",
    )
    adaptations: Mapped[list[AdaptationRow]] = relationship(
        back_populates="run",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="AdaptationRow.position",
        lazy="raise",
    )


class EpisodeItemRow(Base):
    """One support or query image of a run's episode."""

    __tablename__ = "episode_items"
    __table_args__ = (UniqueConstraint("run_id", "role", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(10))
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[int | None] = mapped_column(Integer)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("images.sha256"), index=True)
    source_name: Mapped[str] = mapped_column(Text)

    run: Mapped[RunRow] = relationship(back_populates="items", lazy="raise")
    image: Mapped[ImageRow] = relationship(lazy="raise")


class AdaptationRow(Base):
    """One rule adapted on a run's episode."""

    __tablename__ = "adaptations"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(50), index=True)
    rule_label: Mapped[str] = mapped_column(String(255))
    steps: Mapped[int] = mapped_column(Integer)
    head_init: Mapped[str] = mapped_column(String(50))
    accuracy: Mapped[float | None] = mapped_column(Double)
    query_loss: Mapped[float | None] = mapped_column(Double)
    seconds: Mapped[float] = mapped_column(Double)

    run: Mapped[RunRow] = relationship(back_populates="adaptations", lazy="raise")
    traces: Mapped[list[StepTraceRow]] = relationship(
        back_populates="adaptation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        # Within a step, ids keep the layer order of the saved dict (rows are inserted in that order).
        order_by="[StepTraceRow.step, StepTraceRow.id]",
        lazy="raise",
    )
    predictions: Mapped[list[PredictionRow]] = relationship(
        back_populates="adaptation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="PredictionRow.query_position",
        lazy="raise",
    )


class StepTraceRow(Base):
    """Per step: one row per tensor (alpha, beta) and one step-level row (layer "") with support loss/accuracy."""

    __tablename__ = "step_traces"
    __table_args__ = (UniqueConstraint("adaptation_id", "step", "layer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adaptation_id: Mapped[int] = mapped_column(ForeignKey("adaptations.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    layer: Mapped[str] = mapped_column(String(255))
    alpha: Mapped[float | None] = mapped_column(Double)
    beta: Mapped[float | None] = mapped_column(Double)
    support_loss: Mapped[float | None] = mapped_column(Double)
    support_accuracy: Mapped[float | None] = mapped_column(Double)

    adaptation: Mapped[AdaptationRow] = relationship(back_populates="traces", lazy="raise")


class PredictionRow(Base):
    """The prediction of one adaptation for one query item."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("adaptation_id", "query_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adaptation_id: Mapped[int] = mapped_column(ForeignKey("adaptations.id", ondelete="CASCADE"))
    query_position: Mapped[int] = mapped_column(Integer)
    predicted: Mapped[int] = mapped_column(Integer)
    truth: Mapped[int | None] = mapped_column(Integer)
    probabilities: Mapped[list[float]] = mapped_column(JSON)
    # Nullable although always given: SQLite stores a NaN (diverged adaptation) as NULL, and such a run must
    # still be recorded.
    confidence: Mapped[float | None] = mapped_column(Double)

    adaptation: Mapped[AdaptationRow] = relationship(back_populates="predictions", lazy="raise")


class JobRow(Base):
    """A unit of background work and its progress (revision 0002; the worker columns: revision 0005)."""

    __tablename__ = "jobs"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    progress: Mapped[float] = mapped_column(Double)
    message: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Revision 0005: the worker side of a job (core.jobs). ``worker`` is "host:pid" of the process running it;
    # ``heartbeat_at`` moves every few seconds while it runs, so a job whose worker died is recognisable.
    started_by: Mapped[str] = mapped_column(String(100), default="", server_default="")
    worker: Mapped[str | None] = mapped_column(String(255))
    queue_task_id: Mapped[str | None] = mapped_column(String(64))  # the job library's id, to revoke a queued job
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    log_tail: Mapped[str | None] = mapped_column(Text)
    eta_seconds: Mapped[float | None] = mapped_column(Double)


class EvaluationRow(Base):
    """A many-episode evaluation (``core.evaluate.EvaluationResult``) run as a job (revision 0005).

    Its own table rather than the job's JSON result: evaluations are browsed and compared by checkpoint and rule
    with typed columns, and they outlive the job list (deleting a job keeps its evaluation, ``job_id`` NULL).
    Written in the same transaction that marks the job succeeded, so a killed worker leaves no partial row.
    """

    __tablename__ = "evaluations"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    checkpoint: Mapped[str] = mapped_column(Text)
    device: Mapped[str] = mapped_column(String(50))
    metric: Mapped[str] = mapped_column(String(20))  # "accuracy" or "mse"
    # Nullable: SQLite stores a NaN (a diverged evaluation) as NULL, and such a result must still be kept.
    mean: Mapped[float | None] = mapped_column(Double)
    ci95: Mapped[float | None] = mapped_column(Double)
    episodes: Mapped[int] = mapped_column(Integer)
    n_way: Mapped[int | None] = mapped_column(Integer)
    k_shot: Mapped[int] = mapped_column(Integer)
    n_query: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(50))
    head_init: Mapped[str | None] = mapped_column(String(50))
    seed: Mapped[int] = mapped_column(BigInteger)
    protocol: Mapped[str | None] = mapped_column(String(50))
    seconds: Mapped[float] = mapped_column(Double)
    episode_values: Mapped[list[float]] = mapped_column(JSON)  # per-episode accuracy (or MSE), in episode order


class LabStudyRow(Base):
    """A study of the dashboard's Lab page (revision 0004): its settings and results as JSON text.

    Text rather than a JSON column: the store keeps exactly the text it was given (``core.store.studies`` writes it
    with ``allow_nan=False``), so a study reads back float for float on every database.
    """

    __tablename__ = "lab_studies"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(50), index=True)
    settings: Mapped[str] = mapped_column(Text)
    results: Mapped[str] = mapped_column(Text)
    wall_seconds: Mapped[float] = mapped_column(Double)
    # Revision 0006: who saved the study (core.store.permissions); "" for studies stored before it.
    owner: Mapped[str] = mapped_column(String(100), default="", server_default="")
