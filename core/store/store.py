"""The run store: records every dashboard run and reads runs back as plain dataclasses.

Works on any SQLAlchemy URL; SQLite (the default, one file under ``data/``) gets foreign keys, WAL and a busy
timeout on every connection. The schema is owned by the Alembic migrations under ``migrations/``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, and_, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session, joinedload, selectinload, sessionmaker

from core.store.database import create_store_engine, default_database_url, upgrade
from core.store.models import (
    Adaptation,
    Checkpoint,
    EpisodeItem,
    Image,
    Job,
    Prediction,
    Run,
    StepTrace,
    utcnow,
)
from core.store.records import (
    JOB_STATUSES,
    ROLES,
    SOURCES,
    STEP_LEVEL_LAYER,
    AdaptationDetail,
    AdaptationInput,
    CheckpointInfo,
    CheckpointInput,
    EpisodeItem as EpisodeItemRecord,
    ImageInput,
    RunDetail,
    RunInput,
    RunSummary,
)

DEFAULT_DATABASE_URL = default_database_url()

# Columns of ``export_runs(ids, "csv")``: one row per (run, adaptation, step, layer). A row whose ``layer`` is
# empty is the step-level row carrying support_loss/support_accuracy (steps + 1 of them per adaptation);
# the other rows carry one tensor's alpha/beta at that step. A run without adaptations gets one row with
# only its run columns. ``adaptation`` is the adaptation's position within the run.
TRACE_CSV_COLUMNS: tuple[str, ...] = (
    "run_id", "created_at", "source", "dataset", "split", "n_way", "k_shot", "n_query", "checkpoint_name",
    "device", "status", "adaptation", "rule", "rule_label", "steps", "head_init", "accuracy", "query_loss",
    "seconds", "step", "layer", "alpha", "beta", "support_loss", "support_accuracy",
)
# Columns of ``export_predictions_csv``: one row per (run, adaptation, query). ``probabilities`` is a JSON
# list in class order; ``truth``/``truth_class``/``correct`` are empty for an unlabelled query.
PREDICTION_CSV_COLUMNS: tuple[str, ...] = (
    "run_id", "adaptation", "rule", "rule_label", "query_position", "source_name", "predicted",
    "predicted_class", "truth", "truth_class", "correct", "confidence", "probabilities",
)

# Kept well under SQLite's limit on bound parameters per statement.
_IN_CHUNK = 500

_DISTINCT_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "source": Run.source,
    "dataset": Run.dataset,
    "split": Run.split,
    "checkpoint_name": Run.checkpoint_name,
    "status": Run.status,
    "device": Run.device,
    "n_way": Run.n_way,
    "k_shot": Run.k_shot,
    "rule": Adaptation.rule,
    "rule_label": Adaptation.rule_label,
    "head_init": Adaptation.head_init,
}

_DETAIL_OPTIONS = (
    joinedload(Run.checkpoint),
    selectinload(Run.items).joinedload(EpisodeItem.image),  # Image.data is deferred: no bytes loaded
    selectinload(Run.adaptations).selectinload(Adaptation.traces),
    selectinload(Run.adaptations).selectinload(Adaptation.predictions),
)


class Store:
    """Saves runs (atomically) and reads, filters, exports and deletes them; also tracks background jobs.

    ``Store(url)`` connects to ``url`` (default ``DEFAULT_DATABASE_URL``) and, with ``migrate=True``, brings
    the schema to the latest Alembic revision: an empty database is created, an older one upgraded. The
    store is safe to share between threads; every method runs in its own session and transaction.
    """

    def __init__(self, url: str | None = None, migrate: bool = True) -> None:
        # Read the environment now rather than at import, so a URL set after import still counts.
        self.url: str = url or default_database_url()
        self.engine: Engine = create_store_engine(self.url)
        try:
            if migrate:
                upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Close the pooled connections (an in-memory database is gone afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    # ------------------------------------------------------------------------------------------ saving

    def save_run(self, run: RunInput, adaptations: list[AdaptationInput], total_seconds: float | None) -> int:
        """Record a succeeded run with its episode, checkpoint and adaptations; returns the new run id.

        Everything is written in one transaction: on any error nothing is kept and the error is re-raised.
        Invalid input (unknown source or role, lengths that do not match the episode, ...) raises
        ``ValueError`` before anything is written.
        """
        return self._save(run, adaptations, status="succeeded", error=None, total_seconds=total_seconds)

    def save_failed_run(
        self,
        run: RunInput,
        error: str,
        adaptations_done: list[AdaptationInput] | None = None,
        *,
        total_seconds: float | None = None,
    ) -> int:
        """Record a failed run with the error text, its episode (so it can be re-run) and what did finish.

        Independent of any earlier attempt: a ``save_run`` that failed half-way left nothing behind.
        """
        return self._save(run, adaptations_done or [], status="failed", error=error, total_seconds=total_seconds)

    def _save(
        self,
        run: RunInput,
        adaptations: list[AdaptationInput],
        *,
        status: str,
        error: str | None,
        total_seconds: float | None,
    ) -> int:
        query_positions = _validate(run, adaptations)
        with self._sessions.begin() as session:
            run_row = self._add_run(session, run, status=status, error=error, total_seconds=total_seconds)
            self._add_adaptations(session, run_row, adaptations, query_positions)
            session.flush()
            return run_row.id

    def _add_run(
        self, session: Session, run: RunInput, *, status: str, error: str | None, total_seconds: float | None
    ) -> Run:
        hashes = [hashlib.sha256(item.image.data).hexdigest() for item in run.items]
        _insert_missing_images(session, zip(hashes, (item.image for item in run.items)))
        run_row = Run(
            created_at=utcnow(),
            source=run.source,
            dataset=run.dataset,
            split=run.split,
            n_way=run.n_way,
            k_shot=run.k_shot,
            n_query=run.n_query,
            seed=run.seed,
            checkpoint=_upsert_checkpoint(session, run.checkpoint) if run.checkpoint is not None else None,
            checkpoint_name=run.checkpoint_name,
            device=run.device,
            status=status,
            error=error,
            steps=run.steps,
            total_seconds=total_seconds,
            class_names=list(run.class_names),
            config=run.config,
            note=run.note,
            items=[
                EpisodeItem(
                    role=item.role,
                    position=item.position,
                    label=item.label,
                    image_sha256=sha256,
                    source_name=item.image.source_name,
                )
                for item, sha256 in zip(run.items, hashes)
            ],
        )
        session.add(run_row)
        return run_row

    def _add_adaptations(
        self, session: Session, run_row: Run, adaptations: list[AdaptationInput], query_positions: list[int]
    ) -> None:
        run_row.adaptations = [
            Adaptation(
                position=position,
                rule=adaptation.rule,
                rule_label=adaptation.rule_label,
                steps=adaptation.steps,
                head_init=adaptation.head_init,
                accuracy=adaptation.accuracy,
                query_loss=adaptation.query_loss,
                seconds=adaptation.seconds,
                traces=_trace_rows(adaptation),
                predictions=_prediction_rows(adaptation, query_positions),
            )
            for position, adaptation in enumerate(adaptations)
        ]

    def set_note(self, run_id: int, note: str | None) -> None:
        """Replace the free-text note of a run (KeyError if there is no such run)."""
        with self._sessions.begin() as session:
            run_row = session.get(Run, run_id)
            if run_row is None:
                raise KeyError(f"no run with id {run_id} in the store")
            run_row.note = note

    # ----------------------------------------------------------------------------------------- reading

    def get_run(self, run_id: int) -> RunDetail:
        """The whole run as saved; ``KeyError`` if there is no run with this id."""
        return self._details([run_id])[0]

    def get_image(self, sha256: str) -> tuple[bytes, str]:
        """``(bytes, mime)`` of a stored image; ``KeyError`` if absent."""
        with self._sessions() as session:
            found = session.execute(select(Image.data, Image.mime).where(Image.sha256 == sha256)).one_or_none()
        if found is None:
            raise KeyError(f"no image with sha256 {sha256} in the store")
        return found.data, found.mime

    def list_runs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | Collection[str] | None = None,
        dataset: str | Collection[str] | None = None,
        n_way: int | Collection[int] | None = None,
        k_shot: int | Collection[int] | None = None,
        checkpoint_name: str | Collection[str] | None = None,
        rule: str | Collection[str] | None = None,
        min_accuracy: float | None = None,
        status: str | Collection[str] | None = None,
        limit: int | None = 500,
    ) -> list[RunSummary]:
        """Runs matching every given filter, newest first (at most ``limit``; None for all).

        ``None`` leaves a filter out; a collection matches any of its values (an empty one matches nothing).
        ``since``/``until`` are inclusive bounds on ``created_at`` (naive datetimes are taken as UTC).
        ``min_accuracy``: some adaptation reached it; with ``rule`` too, an adaptation of that rule did.
        """
        conditions: list[ColumnElement[bool]] = []
        if since is not None:
            conditions.append(Run.created_at >= since)
        if until is not None:
            conditions.append(Run.created_at <= until)
        for column, value in (
            (Run.source, source),
            (Run.dataset, dataset),
            (Run.n_way, n_way),
            (Run.k_shot, k_shot),
            (Run.checkpoint_name, checkpoint_name),
            (Run.status, status),
        ):
            if value is not None:
                conditions.append(_matches(column, value))
        adaptation_conditions: list[ColumnElement[bool]] = []
        if rule is not None:
            adaptation_conditions.append(_matches(Adaptation.rule, rule))
        if min_accuracy is not None:
            adaptation_conditions.append(Adaptation.accuracy >= min_accuracy)
        if adaptation_conditions:
            conditions.append(Run.adaptations.any(and_(*adaptation_conditions)))
        query = (
            select(Run)
            .where(*conditions)
            .order_by(Run.created_at.desc(), Run.id.desc())
            .options(selectinload(Run.adaptations))
        )
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as session:
            return [RunSummary(**_summary_fields(run_row)) for run_row in session.scalars(query)]

    def distinct_values(self, column_name: str) -> list[Any]:
        """The distinct non-null values of a filterable column, sorted (for filter widgets).

        Columns: source, dataset, split, checkpoint_name, status, device, n_way, k_shot, rule, rule_label,
        head_init.
        """
        column = _DISTINCT_COLUMNS.get(column_name)
        if column is None:
            raise ValueError(f"unknown column {column_name!r}; choose from {', '.join(_DISTINCT_COLUMNS)}")
        with self._sessions() as session:
            return list(session.scalars(select(column).distinct().where(column.is_not(None)).order_by(column)))

    # ------------------------------------------------------------------------------ deleting, exporting

    def delete_runs(self, ids: Iterable[int]) -> int:
        """Delete runs with everything that belongs to them; returns how many runs were deleted.

        Images that no episode item refers to any more are deleted too; unknown ids are ignored.
        """
        ids = list(dict.fromkeys(ids))
        deleted = 0
        with self._sessions.begin() as session:
            images: set[str] = set()
            for chunk in _chunks(ids):
                images.update(session.scalars(select(EpisodeItem.image_sha256).where(EpisodeItem.run_id.in_(chunk))))
                # Children go through the database's ON DELETE CASCADE, without loading them.
                result = session.execute(
                    delete(Run).where(Run.id.in_(chunk)), execution_options={"synchronize_session": False}
                )
                deleted += result.rowcount
            still_used = select(EpisodeItem.id).where(EpisodeItem.image_sha256 == Image.sha256).exists()
            for chunk in _chunks(sorted(images)):
                session.execute(
                    delete(Image).where(Image.sha256.in_(chunk), ~still_used),
                    execution_options={"synchronize_session": False},
                )
        return deleted

    def export_runs(self, ids: Iterable[int], fmt: Literal["json", "csv"] = "json") -> bytes:
        """Runs as UTF-8 bytes, in the order of ``ids`` (``KeyError`` if one is absent).

        ``json``: a list of :func:`run_detail_to_dict` objects (everything but image bytes; non-finite
        floats become null). ``csv``: one row per (run, adaptation, step, layer), columns
        ``TRACE_CSV_COLUMNS``.
        """
        if fmt not in ("json", "csv"):
            raise ValueError(f"unknown export format {fmt!r}; use 'json' or 'csv'")
        details = self._details(list(ids))
        if fmt == "json":
            return json.dumps([run_detail_to_dict(d) for d in details], indent=2, allow_nan=False).encode()
        return _csv_bytes(TRACE_CSV_COLUMNS, (row for detail in details for row in _trace_csv_rows(detail)))

    def export_predictions_csv(self, ids: Iterable[int]) -> bytes:
        """One CSV row per prediction of the given runs, columns ``PREDICTION_CSV_COLUMNS``."""
        details = self._details(list(ids))
        return _csv_bytes(
            PREDICTION_CSV_COLUMNS, (row for detail in details for row in _prediction_csv_rows(detail))
        )

    def _details(self, ids: list[int]) -> list[RunDetail]:
        found: dict[int, RunDetail] = {}
        with self._sessions() as session:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                for run_row in session.scalars(select(Run).where(Run.id.in_(chunk)).options(*_DETAIL_OPTIONS)):
                    found[run_row.id] = _detail(run_row)
        missing = [run_id for run_id in ids if run_id not in found]
        if missing:
            raise KeyError(f"no run with id {', '.join(map(str, missing))} in the store")
        return [found[run_id] for run_id in ids]

    # -------------------------------------------------------------------------------------------- jobs

    def create_job(self, kind: str, payload: dict[str, Any] | None = None) -> int:
        """A new job in status ``queued`` with progress 0; returns its id."""
        with self._sessions.begin() as session:
            job = Job(kind=kind, status="queued", progress=0.0, payload=payload or {}, result=None)
            session.add(job)
            session.flush()
            return job.id

    def update_job(
        self,
        job_id: int,
        *,
        status: str | None = None,
        progress: float | None = None,
        message: str | None = None,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        """Change the given fields of a job (None leaves a field as it is); ``updated_at`` moves on."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}; choose from {', '.join(JOB_STATUSES)}")
        if progress is not None and not 0.0 <= progress <= 1.0:
            raise ValueError(f"job progress must be between 0 and 1, got {progress}")
        with self._sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise KeyError(f"no job with id {job_id} in the store")
            changes = {"status": status, "progress": progress, "message": message, "result": result, "error": error}
            for name, value in changes.items():
                if value is not None:
                    setattr(job, name, value)
            # Set explicitly: onupdate only fires when some column changed, and a heartbeat counts too.
            job.updated_at = utcnow()

    def get_job(self, job_id: int) -> dict[str, Any]:
        """The job's columns as a dict (``KeyError`` if absent)."""
        with self._sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise KeyError(f"no job with id {job_id} in the store")
            return {column.key: getattr(job, column.key) for column in Job.__mapper__.column_attrs}


# ------------------------------------------------------------------------------------------------ helpers


def run_detail_to_dict(detail: RunDetail) -> dict[str, Any]:
    """A JSON-ready dict of a run: datetimes as ISO 8601 strings, NaN and infinities as None."""
    return _json_ready(asdict(detail))


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _validate(run: RunInput, adaptations: Sequence[AdaptationInput]) -> list[int]:
    """Check what the schema cannot; returns the query positions in order (predictions follow them)."""
    if run.source not in SOURCES:
        raise ValueError(f"unknown run source {run.source!r}; choose from {', '.join(SOURCES)}")
    seen: set[tuple[str, int]] = set()
    for item in run.items:
        if item.role not in ROLES:
            raise ValueError(f"unknown episode item role {item.role!r}; choose from {', '.join(ROLES)}")
        if (item.role, item.position) in seen:
            raise ValueError(f"two {item.role} items at position {item.position}")
        seen.add((item.role, item.position))
        if item.label is None and item.role == "support":
            raise ValueError(f"support item {item.position} has no label")
        if item.label is not None and not 0 <= item.label < len(run.class_names):
            raise ValueError(
                f"{item.role} item {item.position} has label {item.label}, "
                f"but there are {len(run.class_names)} class names"
            )
    query_positions = sorted(position for role, position in seen if role == "query")
    for adaptation in adaptations:
        _validate_adaptation(adaptation, len(query_positions))
    return query_positions


def _validate_adaptation(adaptation: AdaptationInput, n_queries: int) -> None:
    name = adaptation.rule_label or adaptation.rule
    lengths = {"predictions": len(adaptation.predictions), "probabilities": len(adaptation.probabilities)}
    if adaptation.truths is not None:
        lengths["truths"] = len(adaptation.truths)
    for field_name, length in lengths.items():
        if length != n_queries:
            raise ValueError(f"adaptation {name}: {length} {field_name} for {n_queries} query items")
    for index, (predicted, row) in enumerate(zip(adaptation.predictions, adaptation.probabilities)):
        if not 0 <= predicted < len(row):
            raise ValueError(f"adaptation {name}: query {index} predicts class {predicted} of {len(row)}")
    # Both lists are stored on the same step-level rows and read back from them.
    if len(adaptation.support_loss) != len(adaptation.support_accuracy):
        raise ValueError(
            f"adaptation {name}: {len(adaptation.support_loss)} support losses but "
            f"{len(adaptation.support_accuracy)} support accuracies"
        )
    # The number of trace steps is read back as ``steps`` (a step may have no layers at all).
    if len(adaptation.traces) != adaptation.steps:
        raise ValueError(f"adaptation {name}: {len(adaptation.traces)} trace steps for {adaptation.steps} steps")
    for step, layers in enumerate(adaptation.traces):
        for layer, values in layers.items():
            if layer == STEP_LEVEL_LAYER:
                raise ValueError(f"adaptation {name}: step {step} has a layer with an empty name")
            if set(values) != {"alpha", "beta"}:
                raise ValueError(f"adaptation {name}: step {step} layer {layer} needs exactly alpha and beta")


def _upsert_checkpoint(session: Session, checkpoint: CheckpointInput) -> Checkpoint:
    """The row of this checkpoint file, created or refreshed with the latest name, path and metadata."""
    row = session.scalars(select(Checkpoint).where(Checkpoint.file_sha256 == checkpoint.file_sha256)).one_or_none()
    if row is None:
        row = Checkpoint(file_sha256=checkpoint.file_sha256, created_at=utcnow())
        session.add(row)
    row.name = checkpoint.name
    row.path = checkpoint.path
    row.backbone = checkpoint.backbone
    row.rule = checkpoint.rule
    row.image_spec = checkpoint.image_spec
    row.meta = checkpoint.metadata
    return row


def _insert_missing_images(session: Session, images: Iterable[tuple[str, ImageInput]]) -> None:
    rows: dict[str, dict[str, Any]] = {}
    for sha256, image in images:
        rows.setdefault(
            sha256,
            {
                "sha256": sha256,
                "data": image.data,
                "mime": image.mime,
                "width": image.width,
                "height": image.height,
                "size_bytes": len(image.data),
                "created_at": utcnow(),
            },
        )
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    # ON CONFLICT DO NOTHING where available: another process may store the same image at the same moment.
    if dialect == "sqlite":
        session.execute(sqlite.insert(Image).on_conflict_do_nothing(index_elements=["sha256"]), list(rows.values()))
    elif dialect == "postgresql":
        session.execute(
            postgresql.insert(Image).on_conflict_do_nothing(index_elements=["sha256"]), list(rows.values())
        )
    else:
        existing: set[str] = set()
        for chunk in _chunks(list(rows)):
            existing.update(session.scalars(select(Image.sha256).where(Image.sha256.in_(chunk))))
        missing = [row for sha256, row in rows.items() if sha256 not in existing]
        if missing:
            session.execute(insert(Image), missing)


def _trace_rows(adaptation: AdaptationInput) -> list[StepTrace]:
    # Rows are inserted in dict order and read back ordered by (step, id): the layer order survives.
    rows = [
        StepTrace(step=step, layer=layer, alpha=values["alpha"], beta=values["beta"])
        for step, layers in enumerate(adaptation.traces)
        for layer, values in layers.items()
    ]
    rows += [
        StepTrace(step=step, layer=STEP_LEVEL_LAYER, support_loss=loss, support_accuracy=accuracy)
        for step, (loss, accuracy) in enumerate(zip(adaptation.support_loss, adaptation.support_accuracy))
    ]
    return rows


def _prediction_rows(adaptation: AdaptationInput, query_positions: list[int]) -> list[Prediction]:
    truths = adaptation.truths if adaptation.truths is not None else [None] * len(adaptation.predictions)
    return [
        Prediction(
            query_position=position,
            predicted=predicted,
            truth=truth,
            probabilities=list(probabilities),
            confidence=probabilities[predicted],
        )
        for position, predicted, probabilities, truth in zip(
            query_positions, adaptation.predictions, adaptation.probabilities, truths
        )
    ]


def _matches(column: InstrumentedAttribute[Any], value: Any) -> ColumnElement[bool]:
    if isinstance(value, (str, int)):
        return column == value
    return column.in_(list(value))


def _chunks(values: list[Any], size: int = _IN_CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _nan_if_none(value: float | None) -> float:
    # SQLite stores NaN as NULL; inside lists that are always floats, NULL can only have been a NaN.
    return math.nan if value is None else value


def _summary_fields(run_row: Run) -> dict[str, Any]:
    return {
        "id": run_row.id,
        "created_at": run_row.created_at,
        "source": run_row.source,
        "dataset": run_row.dataset,
        "split": run_row.split,
        "n_way": run_row.n_way,
        "k_shot": run_row.k_shot,
        "n_query": run_row.n_query,
        "checkpoint_name": run_row.checkpoint_name,
        "status": run_row.status,
        "rules": [adaptation.rule for adaptation in run_row.adaptations],
        "accuracies": {adaptation.rule: adaptation.accuracy for adaptation in run_row.adaptations},
        "total_seconds": run_row.total_seconds,
        "device": run_row.device,
        "error": run_row.error,
        "note": run_row.note,
    }


def _detail(run_row: Run) -> RunDetail:
    checkpoint = run_row.checkpoint
    return RunDetail(
        **_summary_fields(run_row),
        seed=run_row.seed,
        steps=run_row.steps,
        class_names=list(run_row.class_names),
        config=run_row.config,
        checkpoint=None
        if checkpoint is None
        else CheckpointInfo(
            id=checkpoint.id,
            name=checkpoint.name,
            path=checkpoint.path,
            file_sha256=checkpoint.file_sha256,
            backbone=checkpoint.backbone,
            rule=checkpoint.rule,
            image_spec=checkpoint.image_spec,
            metadata=checkpoint.meta,
            created_at=checkpoint.created_at,
        ),
        items=[
            EpisodeItemRecord(
                role=item.role,
                position=item.position,
                label=item.label,
                image_sha256=item.image_sha256,
                source_name=item.source_name,
                mime=item.image.mime,
            )
            for item in run_row.items
        ],
        adaptations=[_adaptation_detail(adaptation) for adaptation in run_row.adaptations],
    )


def _adaptation_detail(adaptation: Adaptation) -> AdaptationDetail:
    traces: list[dict[str, dict[str, float]]] = [{} for _ in range(adaptation.steps)]
    support_loss: list[float] = []
    support_accuracy: list[float] = []
    for row in adaptation.traces:  # ordered by (step, id)
        if row.layer == STEP_LEVEL_LAYER:
            support_loss.append(_nan_if_none(row.support_loss))
            support_accuracy.append(_nan_if_none(row.support_accuracy))
        else:
            traces[row.step][row.layer] = {"alpha": _nan_if_none(row.alpha), "beta": _nan_if_none(row.beta)}
    predictions = adaptation.predictions  # ordered by query_position
    truths = [prediction.truth for prediction in predictions]
    return AdaptationDetail(
        rule=adaptation.rule,
        rule_label=adaptation.rule_label,
        steps=adaptation.steps,
        head_init=adaptation.head_init,
        accuracy=adaptation.accuracy,
        query_loss=adaptation.query_loss,
        seconds=adaptation.seconds,
        predictions=[prediction.predicted for prediction in predictions],
        probabilities=[list(prediction.probabilities) for prediction in predictions],
        truths=None if all(truth is None for truth in truths) else truths,
        confidences=[_nan_if_none(prediction.confidence) for prediction in predictions],
        support_loss=support_loss,
        support_accuracy=support_accuracy,
        traces=traces,
    )


def _csv_bytes(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _trace_csv_rows(detail: RunDetail) -> Iterator[dict[str, Any]]:
    run_columns = {
        "run_id": detail.id,
        "created_at": detail.created_at.isoformat(),
        "source": detail.source,
        "dataset": detail.dataset,
        "split": detail.split,
        "n_way": detail.n_way,
        "k_shot": detail.k_shot,
        "n_query": detail.n_query,
        "checkpoint_name": detail.checkpoint_name,
        "device": detail.device,
        "status": detail.status,
    }
    if not detail.adaptations:
        yield run_columns
        return
    for position, adaptation in enumerate(detail.adaptations):
        columns = {
            **run_columns,
            "adaptation": position,
            "rule": adaptation.rule,
            "rule_label": adaptation.rule_label,
            "steps": adaptation.steps,
            "head_init": adaptation.head_init,
            "accuracy": adaptation.accuracy,
            "query_loss": adaptation.query_loss,
            "seconds": adaptation.seconds,
        }
        for step in range(max(len(adaptation.support_loss), len(adaptation.traces))):
            if step < len(adaptation.support_loss):
                yield {
                    **columns,
                    "step": step,
                    "layer": STEP_LEVEL_LAYER,
                    "support_loss": adaptation.support_loss[step],
                    "support_accuracy": adaptation.support_accuracy[step],
                }
            if step < len(adaptation.traces):
                for layer, values in adaptation.traces[step].items():
                    yield {**columns, "step": step, "layer": layer, "alpha": values["alpha"], "beta": values["beta"]}


def _prediction_csv_rows(detail: RunDetail) -> Iterator[dict[str, Any]]:
    query_names = {item.position: item.source_name for item in detail.items if item.role == "query"}
    query_positions = sorted(query_names)  # predictions were stored in this order

    def class_name(index: int | None) -> str | None:
        if index is None or not 0 <= index < len(detail.class_names):
            return None
        return detail.class_names[index]

    for position, adaptation in enumerate(detail.adaptations):
        truths = adaptation.truths or [None] * len(adaptation.predictions)
        for query_position, predicted, probabilities, truth, confidence in zip(
            query_positions, adaptation.predictions, adaptation.probabilities, truths, adaptation.confidences
        ):
            yield {
                "run_id": detail.id,
                "adaptation": position,
                "rule": adaptation.rule,
                "rule_label": adaptation.rule_label,
                "query_position": query_position,
                "source_name": query_names[query_position],
                "predicted": predicted,
                "predicted_class": class_name(predicted),
                "truth": truth,
                "truth_class": class_name(truth),
                "correct": None if truth is None else int(predicted == truth),
                "confidence": confidence,
                "probabilities": json.dumps(probabilities),
            }
