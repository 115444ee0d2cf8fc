"""Run store of the few-shot dashboard: every run, its episode, adaptations, traces and predictions, and the Lab
page's studies (:class:`StudyTable`).

Only SQLAlchemy, Alembic and ``core.settings`` are imported here (no torch, numpy or other ``core`` modules),
so scripts and the dashboard can read the history cheaply. Start with :class:`Store`.
"""

from core.store.export import CSV_ROW_KINDS, PREDICTION_CSV_COLUMNS, TRACE_CSV_COLUMNS, run_detail_to_dict
from core.store.records import (
    JOB_STATUSES,
    MAX_NAME_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    ROLES,
    RUN_SOURCES,
    RUN_STATUSES,
    TAG_CHARACTERS,
    AdaptationDetail,
    AdaptationInput,
    CheckpointInfo,
    CheckpointInput,
    EpisodeItem,
    EpisodeItemInput,
    ImageInput,
    RunDetail,
    RunInput,
    RunSource,
    RunSummary,
)
from core.store.store import Store
from core.store.studies import MAX_STUDY_KIND_LENGTH, StoredStudy, StudyInput, StudySummary, StudyTable

__all__ = [
    "CSV_ROW_KINDS",
    "JOB_STATUSES",
    "MAX_NAME_LENGTH",
    "MAX_NOTE_LENGTH",
    "MAX_STUDY_KIND_LENGTH",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "PREDICTION_CSV_COLUMNS",
    "ROLES",
    "RUN_SOURCES",
    "RUN_STATUSES",
    "TAG_CHARACTERS",
    "TRACE_CSV_COLUMNS",
    "AdaptationDetail",
    "AdaptationInput",
    "CheckpointInfo",
    "CheckpointInput",
    "EpisodeItem",
    "EpisodeItemInput",
    "ImageInput",
    "RunDetail",
    "RunInput",
    "RunSource",
    "RunSummary",
    "Store",
    "StoredStudy",
    "StudyInput",
    "StudySummary",
    "StudyTable",
    "run_detail_to_dict",
]
