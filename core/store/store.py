"""The run store: records every dashboard run and reads runs back as plain dataclasses.

Works on any SQLAlchemy URL; SQLite (the default, one file under ``data/``) gets foreign keys, WAL and a busy
timeout on every connection. The schema is owned by the Alembic migrations under ``migrations/``.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
import math
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

from sqlalchemy import ColumnElement, Engine, String, and_, bindparam, cast, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session, defer, joinedload, selectinload, sessionmaker

from core.settings import database_url
from core.store.database import create_store_engine, upgrade
from core.store.export import predictions_csv, runs_csv, runs_json
from core.store.jobs import JobTable
from core.store.models import (
    AdaptationRow,
    CheckpointRow,
    EpisodeItemRow,
    ImageRow,
    PredictionRow,
    RunRow,
    StepTraceRow,
    utcnow,
)
from core.store.permissions import LOCAL, MAX_IDENTITY_LENGTH, Actor, check_may_change
from core.store.records import (
    MAX_NAME_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    ROLES,
    RUN_SOURCES,
    STEP_LEVEL_LAYER,
    TAG_CHARACTERS,
    AdaptationDetail,
    AdaptationInput,
    CheckpointInfo,
    CheckpointInput,
    EpisodeItem,
    ImageInput,
    RunDetail,
    RunInput,
    RunSummary,
)

# Kept well under SQLite's limit on bound parameters per statement.
_IN_CHUNK = 500

_TAG_PATTERN = re.compile(r"[A-Za-z0-9_.:/+-]+")


class _Keep(enum.Enum):
    """Marks an argument of :meth:`Store.update_run` that was not given (None means "clear")."""

    KEEP = "keep"


KEEP = _Keep.KEEP

# Filter widgets' columns; "tag" is special: its values are the union of every run's tags.
_DISTINCT_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "source": RunRow.source,
    "dataset": RunRow.dataset,
    "split": RunRow.split,
    "checkpoint_name": RunRow.checkpoint_name,
    "status": RunRow.status,
    "device": RunRow.device,
    "n_way": RunRow.n_way,
    "k_shot": RunRow.k_shot,
    "rule": AdaptationRow.rule,
    "rule_label": AdaptationRow.rule_label,
    "head_init": AdaptationRow.head_init,
    "tag": RunRow.tags,
}

_DETAIL_OPTIONS = (
    joinedload(RunRow.checkpoint),
    selectinload(RunRow.items).joinedload(EpisodeItemRow.image),  # Image.data is deferred: no bytes loaded
    selectinload(RunRow.adaptations).selectinload(AdaptationRow.traces),
    selectinload(RunRow.adaptations).selectinload(AdaptationRow.predictions),
)
# A history line needs neither the run's config nor its class names (both can be long).
_SUMMARY_OPTIONS = (
    defer(RunRow.config, raiseload=True),
    defer(RunRow.class_names, raiseload=True),
    selectinload(RunRow.adaptations),
)


class Store:
    """Saves runs (atomically) and reads, filters, exports and deletes them.

    ``Store(url)`` connects to ``url`` (default: the ``FEWSHOT_DATABASE_URL`` setting) and, with
    ``migrate=True``, brings the schema to the latest Alembic revision: an empty database is created, an older
    one upgraded. The store is safe to share between threads; every method runs in its own session and
    transaction. Background jobs are in ``store.jobs`` (:class:`core.store.jobs.JobTable`).
    """

    def __init__(self, url: str | None = None, migrate: bool = True) -> None:
        # Read the environment now rather than at import, so a URL set after import still counts.
        self.url: str = url or database_url()
        self.engine: Engine = create_store_engine(self.url)
        try:
            if migrate:
                upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.jobs = JobTable(self._sessions)
        self.owner = ""  # recorded on the runs (and lab studies) saved through this object; see owned_by

    def owned_by(self, owner: str) -> Store:
        """This store, on the same connections, recording ``owner`` as who made the runs and lab studies saved
        through it (``core.store.permissions``: only the owner or an admin may delete them). A dashboard session
        saves through ``store.owned_by(identity)``; ``Store(url)`` itself records ``""`` (no owner).
        Closing either closes both."""
        if not isinstance(owner, str) or len(owner) > MAX_IDENTITY_LENGTH:
            raise ValueError(f"an owner is text of at most {MAX_IDENTITY_LENGTH} characters, not {owner!r}")
        view = copy.copy(self)
        view.owner = owner
        return view

    def close(self) -> None:
        """Close the pooled connections (an in-memory database is gone afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> Self:
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
        name, tags, note = _clean_name(run.name), _clean_tags(run.tags), _clean_note(run.note)
        with self._sessions.begin() as session:
            run_row = self._add_run(session, run, status=status, error=error, total_seconds=total_seconds)
            run_row.name, run_row.tags, run_row.note = name, tags, note  # as cleaned above, before writing
            self._add_adaptations(session, run_row, adaptations, query_positions)
            session.flush()
            return run_row.id

    def _add_run(
        self, session: Session, run: RunInput, *, status: str, error: str | None, total_seconds: float | None
    ) -> RunRow:
        hashes = [hashlib.sha256(item.image.data).hexdigest() for item in run.items]
        _insert_missing_images(session, zip(hashes, (item.image for item in run.items)))
        run_row = RunRow(
            created_at=utcnow(),
            source=run.source,
            dataset=run.dataset,
            split=run.split,
            n_way=run.n_way,
            k_shot=run.k_shot,
            n_query=run.n_query,
            seed=run.seed,
            checkpoint_id=_upsert_checkpoint(session, run.checkpoint) if run.checkpoint is not None else None,
            checkpoint_name=run.checkpoint_name,
            device=run.device,
            status=status,
            error=error,
            owner=self.owner,
            steps=run.steps,
            total_seconds=_none_if_nan(total_seconds),
            class_names=list(run.class_names),
            config=run.config,
            items=[
                EpisodeItemRow(
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
        self, session: Session, run_row: RunRow, adaptations: list[AdaptationInput], query_positions: list[int]
    ) -> None:
        run_row.adaptations = [
            AdaptationRow(
                position=position,
                rule=adaptation.rule,
                rule_label=adaptation.rule_label,
                steps=adaptation.steps,
                head_init=adaptation.head_init,
                accuracy=_none_if_nan(adaptation.accuracy),
                query_loss=_none_if_nan(adaptation.query_loss),
                seconds=adaptation.seconds,
                traces=_trace_rows(adaptation),
                predictions=_prediction_rows(adaptation, query_positions),
            )
            for position, adaptation in enumerate(adaptations)
        ]

    def update_run(
        self,
        run_id: int,
        *,
        name: str | None | _Keep = KEEP,
        tags: Iterable[str] | _Keep = KEEP,
        note: str | None | _Keep = KEEP,
    ) -> RunSummary:
        """Change the user's name, tags and/or note of a run; returns the updated summary.

        Only the given arguments change; ``None`` (or an empty string) clears a name or note, ``[]`` the tags.
        Names and notes are stripped of surrounding spaces; tags too, and repeated tags are kept once.
        ``ValueError`` (nothing changed) for a name over ``MAX_NAME_LENGTH`` characters, a note over
        ``MAX_NOTE_LENGTH``, more than ``MAX_TAGS`` tags, or a tag over ``MAX_TAG_LENGTH`` characters or with
        other characters than ``TAG_CHARACTERS``; ``TypeError`` for tags that are not a list of strings;
        ``KeyError`` if there is no such run.
        """
        changes: dict[str, Any] = {}
        if name is not KEEP:
            changes["name"] = _clean_name(name)
        if tags is not KEEP:
            changes["tags"] = _clean_tags(tags)
        if note is not KEEP:
            changes["note"] = _clean_note(note)
        with self._sessions.begin() as session:
            run_row = session.get(RunRow, run_id, options=_SUMMARY_OPTIONS)
            if run_row is None:
                raise KeyError(f"no run with id {run_id} in the store")
            for attribute, value in changes.items():
                setattr(run_row, attribute, value)
            session.flush()
            return RunSummary(**_summary_fields(run_row))

    # ----------------------------------------------------------------------------------------- reading

    def get_run(self, run_id: int) -> RunDetail:
        """The whole run as saved; ``KeyError`` if there is no run with this id."""
        return self.get_runs([run_id])[0]

    def get_runs(self, ids: Iterable[int]) -> list[RunDetail]:
        """Whole runs in the order of ``ids`` (``KeyError`` naming every absent id).

        One query per table whatever the number of runs (up to 500 ids per query), never one per run.
        """
        ids = list(ids)
        found: dict[int, RunDetail] = {}
        with self._sessions() as session:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                for run_row in session.scalars(select(RunRow).where(RunRow.id.in_(chunk)).options(*_DETAIL_OPTIONS)):
                    found[run_row.id] = _detail(run_row)
        missing = [run_id for run_id in ids if run_id not in found]
        if missing:
            raise KeyError(f"no run with id {', '.join(map(str, missing))} in the store")
        return [found[run_id] for run_id in ids]

    def get_image(self, sha256: str) -> tuple[bytes, str]:
        """``(bytes, mime)`` of a stored image; ``KeyError`` if absent."""
        found = self.get_images([sha256])
        if sha256 not in found:
            raise KeyError(f"no image with sha256 {sha256} in the store")
        return found[sha256]

    def get_images(self, sha256s: Iterable[str]) -> dict[str, tuple[bytes, str]]:
        """``{sha256: (bytes, mime)}`` of the stored images among ``sha256s`` (absent ones are left out).

        One query for up to 500 images (a whole episode), not one per image.
        """
        found: dict[str, tuple[bytes, str]] = {}
        with self._sessions() as session:
            for chunk in _chunks(list(dict.fromkeys(sha256s))):
                query = select(ImageRow.sha256, ImageRow.data, ImageRow.mime).where(ImageRow.sha256.in_(chunk))
                for row in session.execute(query):
                    found[row.sha256] = (row.data, row.mime)
        return found

    def get_previews(self, sha256s: Iterable[str]) -> dict[str, bytes | None]:
        """``{sha256: preview PNG}`` of the stored images among ``sha256s``; None where an image has none.

        Absent images are left out. One query for up to 500 images, and no image bytes are read.
        """
        found: dict[str, bytes | None] = {}
        with self._sessions() as session:
            for chunk in _chunks(list(dict.fromkeys(sha256s))):
                for row in session.execute(select(ImageRow.sha256, ImageRow.preview).where(ImageRow.sha256.in_(chunk))):
                    found[row.sha256] = row.preview
        return found

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
        tag: str | Collection[str] | None = None,
        name_contains: str | None = None,
        limit: int | None = 500,
    ) -> list[RunSummary]:
        """Runs matching every given filter, newest first (at most ``limit``; None for all).

        ``None`` leaves a filter out; a collection matches any of its values (an empty one matches nothing).
        ``since``/``until`` are inclusive bounds on ``created_at`` (naive datetimes are taken as UTC).
        ``min_accuracy``: some adaptation reached it; with ``rule`` too, an adaptation of that rule did.
        ``tag``: the run has that tag (any of them, for a collection). ``name_contains``: the run's name
        contains this text, ignoring case (an empty text leaves the filter out).
        """
        conditions: list[ColumnElement[bool]] = []
        if since is not None:
            conditions.append(RunRow.created_at >= since)
        if until is not None:
            conditions.append(RunRow.created_at <= until)
        for column, value in (
            (RunRow.source, source),
            (RunRow.dataset, dataset),
            (RunRow.n_way, n_way),
            (RunRow.k_shot, k_shot),
            (RunRow.checkpoint_name, checkpoint_name),
            (RunRow.status, status),
        ):
            if value is not None:
                conditions.append(_matches(column, value))
        adaptation_conditions: list[ColumnElement[bool]] = []
        if rule is not None:
            adaptation_conditions.append(_matches(AdaptationRow.rule, rule))
        if min_accuracy is not None:
            adaptation_conditions.append(AdaptationRow.accuracy >= min_accuracy)
        if adaptation_conditions:
            conditions.append(RunRow.adaptations.any(and_(*adaptation_conditions)))
        if tag is not None:
            conditions.append(_has_any_tag([tag] if isinstance(tag, str) else list(tag)))
        if name_contains:
            conditions.append(RunRow.name.icontains(name_contains, autoescape=True))
        newest_first = (RunRow.created_at.desc(), RunRow.id.desc())
        query = select(RunRow).where(*conditions).order_by(*newest_first).options(*_SUMMARY_OPTIONS)
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as session:
            return [RunSummary(**_summary_fields(run_row)) for run_row in session.scalars(query)]

    def distinct_values(self, column_name: str) -> list[Any]:
        """The distinct non-null values of a filterable column, sorted (for filter widgets).

        Columns: source, dataset, split, checkpoint_name, status, device, n_way, k_shot, rule, rule_label,
        head_init, and tag (every tag any run has).
        """
        column = _DISTINCT_COLUMNS.get(column_name)
        if column is None:
            raise ValueError(f"unknown column {column_name!r}; choose from {', '.join(_DISTINCT_COLUMNS)}")
        with self._sessions() as session:
            if column_name == "tag":
                # Tags live in one JSON list per run: the distinct lists, then their union. Distinct as text:
                # PostgreSQL's json type has no equality, so DISTINCT cannot compare the lists themselves.
                lists = session.scalars(select(cast(RunRow.tags, String)).distinct())
                return sorted({tag for text in lists for tag in json.loads(text) or []})
            return list(session.scalars(select(column).distinct().where(column.is_not(None)).order_by(column)))

    # ------------------------------------------------------------------------------ deleting, exporting

    def delete_runs(self, ids: Iterable[int], by: Actor = LOCAL) -> int:
        """Delete runs with everything that belongs to them; returns how many runs were deleted.

        Images that no episode item refers to any more are deleted too; unknown ids are ignored.
        ``by`` asks for it (default :data:`~core.store.permissions.LOCAL`, the single-user default that may delete
        everything): when some of the runs are not theirs to delete (``core.store.permissions.may_change``), the
        whole request is refused with ``NotPermitted`` naming those runs, and nothing is deleted, not even the
        runs that were theirs. Owners are read in the same transaction as the delete.
        """
        ids = list(dict.fromkeys(ids))
        deleted = 0
        with self._sessions.begin() as session:
            owners: dict[int, str] = {}
            for chunk in _chunks(ids):
                for run_id, owner in session.execute(select(RunRow.id, RunRow.owner).where(RunRow.id.in_(chunk))):
                    owners[run_id] = owner
            check_may_change(by, "run", owners)
            images: set[str] = set()
            for chunk in _chunks(ids):
                used = select(EpisodeItemRow.image_sha256).where(EpisodeItemRow.run_id.in_(chunk))
                images.update(session.scalars(used))
                # Children go through the database's ON DELETE CASCADE, without loading them.
                result = session.execute(
                    delete(RunRow).where(RunRow.id.in_(chunk)), execution_options={"synchronize_session": False}
                )
                deleted += result.rowcount
            still_used = select(EpisodeItemRow.id).where(EpisodeItemRow.image_sha256 == ImageRow.sha256).exists()
            for chunk in _chunks(sorted(images)):
                session.execute(
                    delete(ImageRow).where(ImageRow.sha256.in_(chunk), ~still_used),
                    execution_options={"synchronize_session": False},
                )
        return deleted

    def export_runs(self, ids: Iterable[int], fmt: Literal["json", "csv"] = "json") -> bytes:
        """Runs as UTF-8 bytes, in the order of ``ids`` (``KeyError`` if one is absent).

        ``json``: a list of :func:`run_detail_to_dict` objects (everything but image bytes; non-finite
        floats become null). ``csv``: one row per (run, adaptation, step, layer), columns
        ``TRACE_CSV_COLUMNS``, each row's ``row_kind`` saying what it is (see ``core.store.export``).
        """
        if fmt not in ("json", "csv"):
            raise ValueError(f"unknown export format {fmt!r}; use 'json' or 'csv'")
        details = self.get_runs(ids)
        return runs_json(details) if fmt == "json" else runs_csv(details)

    def export_predictions_csv(self, ids: Iterable[int]) -> bytes:
        """One CSV row per prediction of the given runs, columns ``PREDICTION_CSV_COLUMNS``."""
        return predictions_csv(self.get_runs(ids))


# ------------------------------------------------------------------------------------------------ helpers


def _validate(run: RunInput, adaptations: Sequence[AdaptationInput]) -> list[int]:
    """Check what the schema cannot; returns the query positions in order (predictions follow them)."""
    if run.source not in RUN_SOURCES:
        raise ValueError(f"unknown run source {run.source!r}; choose from {', '.join(RUN_SOURCES)}")
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


def _clean_name(name: str | None) -> str | None:
    name = (name or "").strip()
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a run name can have at most {MAX_NAME_LENGTH} characters; this one has {len(name)}")
    return name or None


def _clean_note(note: str | None) -> str | None:
    note = (note or "").strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise ValueError(f"a note can have at most {MAX_NOTE_LENGTH} characters; this one has {len(note)}")
    return note or None


def _clean_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        raise TypeError(f"tags must be a list of words, not one string ({tags!r})")
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"a tag must be text, not {tag!r}")
        tag = tag.strip()
        if not tag or tag in cleaned:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"tag {tag!r} is too long: at most {MAX_TAG_LENGTH} characters")
        if not _TAG_PATTERN.fullmatch(tag):
            raise ValueError(f"tag {tag!r} may only contain {TAG_CHARACTERS} (no spaces)")
        cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise ValueError(f"a run can have at most {MAX_TAGS} tags, not {len(cleaned)}")
    return cleaned


def _has_any_tag(tags: list[str]) -> ColumnElement[bool]:
    # Tags are plain ASCII words (_clean_tags), so a run has a tag exactly when its JSON list's text contains the
    # tag in quotes, on every database; LIKE wildcards in the tag are escaped.
    text = cast(RunRow.tags, String)
    return or_(*(text.contains(f'"{tag}"', autoescape=True) for tag in tags)) if tags else or_(False)


def _upsert_checkpoint(session: Session, checkpoint: CheckpointInput) -> int:
    """The id of this checkpoint file's row, created or refreshed with the latest name, path and metadata.

    One ``INSERT ... ON CONFLICT DO UPDATE`` where the database has it: with a read first and an insert after, two
    saves of runs of a new checkpoint at the same moment would both insert, and on PostgreSQL (whose writers do not
    wait for each other until they touch the same row) the second save would fail on the unique file hash.
    """
    columns = {
        "name": checkpoint.name,
        "path": checkpoint.path,
        "backbone": checkpoint.backbone,
        "rule": checkpoint.rule,
        "image_spec": checkpoint.image_spec,
        "metadata": checkpoint.metadata,
    }
    table = CheckpointRow.__table__
    dialect_insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(session.get_bind().dialect.name)
    if dialect_insert is not None:
        statement = dialect_insert(table).values(file_sha256=checkpoint.file_sha256, created_at=utcnow(), **columns)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.file_sha256], set_={name: statement.excluded[name] for name in columns}
        )
        return session.execute(statement.returning(table.c.id)).scalar_one()
    same_file = CheckpointRow.file_sha256 == checkpoint.file_sha256
    row = session.scalars(select(CheckpointRow).where(same_file)).one_or_none()
    if row is None:
        row = CheckpointRow(file_sha256=checkpoint.file_sha256, created_at=utcnow())
        session.add(row)
    row.name = checkpoint.name
    row.path = checkpoint.path
    row.backbone = checkpoint.backbone
    row.rule = checkpoint.rule
    row.image_spec = checkpoint.image_spec
    row.meta = checkpoint.metadata
    session.flush()
    return row.id


def _insert_missing_images(session: Session, images: Iterable[tuple[str, ImageInput]]) -> None:
    """Insert the images not stored yet; give a preview to a stored image that has none when one comes."""
    rows: dict[str, dict[str, Any]] = {}
    for sha256, image in images:
        row = rows.setdefault(
            sha256,
            {
                "sha256": sha256,
                "data": image.data,
                "mime": image.mime,
                "width": image.width,
                "height": image.height,
                "size_bytes": len(image.data),
                "created_at": utcnow(),
                "preview": image.preview,
            },
        )
        if row["preview"] is None:
            row["preview"] = image.preview
    if not rows:
        return
    # In hash order: two saves that insert the same new images then take their locks in the same order, so on
    # PostgreSQL one waits for the other instead of each waiting for an image the other holds (a deadlock).
    rows = dict(sorted(rows.items()))
    _insert_images(session, rows)
    previews = [{"key": sha256, "new_preview": row["preview"]} for sha256, row in rows.items() if row["preview"]]
    if previews:
        images_table = ImageRow.__table__
        session.execute(
            update(images_table)
            .where(images_table.c.sha256 == bindparam("key"), images_table.c.preview.is_(None))
            .values(preview=bindparam("new_preview")),
            previews,
        )


def _insert_images(session: Session, rows: dict[str, dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    # ON CONFLICT DO NOTHING where available: another process may store the same image at the same moment.
    if dialect == "sqlite":
        session.execute(sqlite.insert(ImageRow).on_conflict_do_nothing(index_elements=["sha256"]), list(rows.values()))
    elif dialect == "postgresql":
        session.execute(
            postgresql.insert(ImageRow).on_conflict_do_nothing(index_elements=["sha256"]), list(rows.values())
        )
    else:
        existing: set[str] = set()
        for chunk in _chunks(list(rows)):
            existing.update(session.scalars(select(ImageRow.sha256).where(ImageRow.sha256.in_(chunk))))
        missing = [row for sha256, row in rows.items() if sha256 not in existing]
        if missing:
            session.execute(insert(ImageRow), missing)


def _trace_rows(adaptation: AdaptationInput) -> list[StepTraceRow]:
    # Rows are inserted in dict order and read back ordered by (step, id): the layer order survives.
    rows = [
        StepTraceRow(step=step, layer=layer, alpha=values["alpha"], beta=values["beta"])
        for step, layers in enumerate(adaptation.traces)
        for layer, values in layers.items()
    ]
    rows += [
        StepTraceRow(step=step, layer=STEP_LEVEL_LAYER, support_loss=loss, support_accuracy=accuracy)
        for step, (loss, accuracy) in enumerate(zip(adaptation.support_loss, adaptation.support_accuracy))
    ]
    return rows


def _prediction_rows(adaptation: AdaptationInput, query_positions: list[int]) -> list[PredictionRow]:
    truths = adaptation.truths if adaptation.truths is not None else [None] * len(adaptation.predictions)
    return [
        PredictionRow(
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


def _none_if_nan(value: float | None) -> float | None:
    # An optional scalar's NaN is stored as NULL on every database, as SQLite does by itself (records.py): PostgreSQL
    # would keep it, and there a NaN sorts above every number, so ``min_accuracy`` would match a diverged run.
    return None if value is not None and math.isnan(value) else value


def _nan_if_none(value: float | None) -> float:
    # SQLite stores NaN as NULL, and JSON lists hold it as null (database.json_text); inside lists that are always
    # floats, NULL can only have been a NaN.
    return math.nan if value is None else value


def _summary_fields(run_row: RunRow) -> dict[str, Any]:
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
        "steps": run_row.steps,
        "name": run_row.name,
        "tags": list(run_row.tags or []),
        "owner": run_row.owner,
    }


def _detail(run_row: RunRow) -> RunDetail:
    checkpoint = run_row.checkpoint
    return RunDetail(
        **_summary_fields(run_row),
        seed=run_row.seed,
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
            EpisodeItem(
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


def _adaptation_detail(adaptation: AdaptationRow) -> AdaptationDetail:
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
        probabilities=[[_nan_if_none(p) for p in prediction.probabilities] for prediction in predictions],
        truths=None if all(truth is None for truth in truths) else truths,
        confidences=[_nan_if_none(prediction.confidence) for prediction in predictions],
        support_loss=support_loss,
        support_accuracy=support_accuracy,
        traces=traces,
    )
