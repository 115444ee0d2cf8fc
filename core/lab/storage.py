"""Lab studies to and from the run store's ``lab_studies`` table (:class:`core.store.StudyTable`)."""

from __future__ import annotations

from core.lab.study import STUDY_KIND, QuadraticStudy
from core.store import StudyInput, StudyTable


def save_study(table: StudyTable, study: QuadraticStudy, name: str) -> int:
    """Store ``study`` under ``name`` (one transaction); returns its id."""
    settings, results = study.to_json_data()
    return table.save(
        StudyInput(name=name, kind=STUDY_KIND, settings=settings, results=results, wall_seconds=study.wall_seconds)
    )


def load_study(table: StudyTable, study_id: int) -> QuadraticStudy:
    """The stored study ``study_id`` as it was computed (``KeyError``: no such study; ``ValueError``: not a quadratic
    study, or one this code cannot read)."""
    stored = table.get(study_id)
    if stored.kind != STUDY_KIND:
        raise ValueError(f"study {study_id} is a {stored.kind!r} study, not a {STUDY_KIND!r} one")
    try:
        return QuadraticStudy.from_json_data(stored.settings, stored.results, stored.wall_seconds)
    except TypeError as error:
        raise ValueError(f"study {study_id} cannot be read: {error}") from error
