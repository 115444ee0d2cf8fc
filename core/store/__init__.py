"""Run store of the few-shot dashboard: every run, its episode, adaptations, traces and predictions.

Only SQLAlchemy and Alembic are imported here (no torch, numpy or other ``core`` modules), so scripts and
the dashboard can read the history cheaply. Start with :class:`Store`.
"""

from core.store.database import DATABASE_URL_ENV, default_database_url
from core.store.records import (
    JOB_STATUSES,
    ROLES,
    RUN_STATUSES,
    SOURCES,
    AdaptationDetail,
    AdaptationInput,
    CheckpointInfo,
    CheckpointInput,
    EpisodeItem,
    EpisodeItemInput,
    ImageInput,
    RunDetail,
    RunInput,
    RunSummary,
)
from core.store.store import (
    DEFAULT_DATABASE_URL,
    PREDICTION_CSV_COLUMNS,
    TRACE_CSV_COLUMNS,
    Store,
    run_detail_to_dict,
)

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "JOB_STATUSES",
    "PREDICTION_CSV_COLUMNS",
    "ROLES",
    "RUN_STATUSES",
    "SOURCES",
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
    "RunSummary",
    "Store",
    "default_database_url",
    "run_detail_to_dict",
]
