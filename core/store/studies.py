"""Lab studies in the run store (table ``lab_studies``, revision 0004): save, list, read, rename, delete.

A study is what the dashboard's Lab page computed (``core.lab``): a ``kind`` (``"quadratic"``), a name, its settings
and results as plain JSON-able data, and how long it took. The store does not know what is inside: it keeps the JSON
text exactly (``allow_nan=False``, so a NaN or an infinity is refused, not silently rewritten) and gives the same
dicts back. Like the rest of ``core.store`` it imports neither torch nor numpy: callers pass plain data.

``StudyTable(store)`` works on an open :class:`core.store.Store`; every method is its own session and transaction.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.store.models import LabStudyRow
from core.store.permissions import LOCAL, Actor, check_may_change
from core.store.records import MAX_NAME_LENGTH
from core.store.store import Store

MAX_STUDY_KIND_LENGTH = 50
_KIND_PATTERN = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class StudyInput:
    """A study to save. ``settings`` and ``results`` must be JSON objects of plain data with finite numbers."""

    name: str
    kind: str
    settings: dict[str, Any]
    results: dict[str, Any]
    wall_seconds: float


@dataclass(frozen=True)
class StudySummary:
    """A line of the study list: everything but the (long) settings and results."""

    id: int
    created_at: datetime
    name: str
    kind: str
    wall_seconds: float
    owner: str  # who saved it (revision 0006; core.store.permissions), "" when nobody is recorded


@dataclass(frozen=True)
class StoredStudy:
    id: int
    created_at: datetime
    name: str
    kind: str
    settings: dict[str, Any]
    results: dict[str, Any]
    wall_seconds: float
    owner: str


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a study needs a name (some text)")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a study name has at most {MAX_NAME_LENGTH} characters, not {len(name)}")
    return name


def _json_text(value: Any, what: str) -> str:
    if not isinstance(value, dict):
        raise TypeError(f"a study's {what} must be a JSON object (a dict), not {type(value).__name__}")
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"a study's {what} must be plain JSON data with finite numbers: {error}") from error


class StudyTable:
    """Saves, lists, reads, renames and deletes lab studies of ``store``."""

    def __init__(self, store: Store) -> None:
        self._sessions = sessionmaker(store.engine, expire_on_commit=False)
        self._owner = store.owner  # a store from Store.owned_by(identity) records who saves

    def save(self, study: StudyInput) -> int:
        """Store ``study`` in one transaction (a failure leaves no row); returns its id. ValueError (TypeError for
        settings or results that are not dicts) for bad input, raised before anything is written."""
        name = _clean_name(study.name)
        if not (
            isinstance(study.kind, str)
            and _KIND_PATTERN.fullmatch(study.kind)
            and len(study.kind) <= MAX_STUDY_KIND_LENGTH
        ):
            raise ValueError(
                f"a study kind is 1 to {MAX_STUDY_KIND_LENGTH} characters a-z, 0-9 or _, not {study.kind!r}"
            )
        seconds = study.wall_seconds
        if not (
            isinstance(seconds, int | float)
            and not isinstance(seconds, bool)
            and math.isfinite(seconds)
            and seconds >= 0
        ):
            raise ValueError(f"a study's wall_seconds must be a finite number >= 0, not {seconds!r}")
        row = LabStudyRow(
            name=name,
            kind=study.kind,
            settings=_json_text(study.settings, "settings"),
            results=_json_text(study.results, "results"),
            wall_seconds=float(seconds),
            owner=self._owner,
        )
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return row.id

    def list_studies(
        self, kind: str | None = None, name_contains: str | None = None, limit: int | None = None
    ) -> list[StudySummary]:
        """Newest first; ``kind`` exactly, ``name_contains`` case-insensitively (``%`` and ``_`` taken literally)."""
        query = select(
            LabStudyRow.id,
            LabStudyRow.created_at,
            LabStudyRow.name,
            LabStudyRow.kind,
            LabStudyRow.wall_seconds,
            LabStudyRow.owner,
        ).order_by(LabStudyRow.created_at.desc(), LabStudyRow.id.desc())
        if kind is not None:
            query = query.where(LabStudyRow.kind == kind)
        if name_contains:
            escaped = name_contains.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(LabStudyRow.name.ilike(f"%{escaped}%", escape="\\"))
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as session:
            return [StudySummary(*row) for row in session.execute(query)]

    def get(self, study_id: int) -> StoredStudy:
        """The study with its settings and results (``KeyError`` if there is none)."""
        with self._sessions() as session:
            row = self._row(session, study_id)
            return StoredStudy(
                row.id,
                row.created_at,
                row.name,
                row.kind,
                json.loads(row.settings),
                json.loads(row.results),
                row.wall_seconds,
                row.owner,
            )

    def rename(self, study_id: int, name: str) -> None:
        name = _clean_name(name)
        with self._sessions.begin() as session:
            self._row(session, study_id).name = name

    def delete(self, study_id: int, by: Actor = LOCAL) -> None:
        """Delete a study; ``NotPermitted`` (nothing deleted) when ``by`` may not (see ``core.store.permissions``)."""
        with self._sessions.begin() as session:
            row = self._row(session, study_id)
            check_may_change(by, "lab study", {row.id: row.owner})
            session.delete(row)

    @staticmethod
    def _row(session: Session, study_id: int) -> LabStudyRow:
        row = session.get(LabStudyRow, study_id)
        if row is None:
            raise KeyError(f"no lab study with id {study_id} in the store")
        return row
