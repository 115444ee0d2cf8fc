"""Plain dataclasses that go into and come out of the run store.

The app only ever sees these: ORM objects stay inside :mod:`core.store.store`, so nothing outside the store
depends on sessions, lazy loading or SQLAlchemy at all.

Floats come back exactly as they were saved, with one exception imposed by SQLite, which stores NaN as NULL:
a NaN inside a list (losses, accuracies, alpha/beta, confidences) reads back as NaN, a NaN optional scalar
(``accuracy``, ``query_loss``, ``total_seconds``) reads back as ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

RunSource = Literal["benchmark", "upload", "folder", "drawing", "camera"]  # where a run's episode came from
Role = Literal["support", "query"]
RunStatus = Literal["succeeded", "failed"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

RUN_SOURCES: tuple[str, ...] = get_args(RunSource)
ROLES: tuple[str, ...] = ("support", "query")
RUN_STATUSES: tuple[str, ...] = ("succeeded", "failed")
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED_JOB_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")  # a job in these never changes

# Layer name of the step-level trace rows (support loss/accuracy); real tensor names are never empty.
STEP_LEVEL_LAYER = ""

# Limits on what users give runs (``Store.update_run``, ``RunInput``). Tags are plain ASCII words so that a tag
# is stored in the JSON list exactly as ``"tag"`` on every database (the tag filter relies on that).
MAX_NAME_LENGTH = 100
MAX_NOTE_LENGTH = 10_000
MAX_TAG_LENGTH = 40
MAX_TAGS = 20
TAG_CHARACTERS = "letters A-Z and a-z, digits and - _ . : / +"


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class ImageInput:
    """One image file as uploaded or read from disk; the store keys it by the SHA-256 of ``data``."""

    data: bytes
    mime: str
    width: int
    height: int
    source_name: str  # file name or dataset-relative path, kept per episode item
    # A small display PNG of the image, made by ``core.data``; the store keeps the bytes and never decodes them.
    preview: bytes | None = None


@dataclass
class EpisodeItemInput:
    """One support or query image of the episode; ``label`` indexes ``RunInput.class_names``."""

    role: Role
    position: int  # order within its role; query predictions refer to it
    label: int | None  # None only for an unlabelled query
    image: ImageInput


@dataclass
class CheckpointInput:
    """The checkpoint a run used; runs share one row per distinct file (``file_sha256``)."""

    name: str
    path: str
    file_sha256: str
    backbone: dict[str, Any]
    rule: dict[str, Any]
    image_spec: dict[str, Any]
    metadata: dict[str, Any]


@dataclass
class AdaptationInput:
    """One inner-loop rule adapted on the run's episode: the fields of ``core.adapt.AdaptationResult``.

    ``predictions``/``probabilities``/``truths`` follow the query items in ``position`` order.
    ``support_loss`` and ``support_accuracy`` hold ``steps + 1`` values (before each step, then after the
    last); ``traces[step][layer] == {"alpha": ..., "beta": ...}`` for each of the ``steps`` updates.
    """

    rule: str
    rule_label: str
    steps: int
    head_init: str
    accuracy: float | None
    query_loss: float | None
    seconds: float
    predictions: list[int]
    probabilities: list[list[float]]
    truths: list[int | None] | None
    support_loss: list[float]
    support_accuracy: list[float]
    traces: list[dict[str, dict[str, float]]]

    @classmethod
    def from_result(cls, result: Any, rule_label: str | None = None) -> AdaptationInput:
        """Build from a ``core.adapt.AdaptationResult`` (duck-typed: the store must not import ``core.adapt``)."""
        return cls(
            rule=result.rule,
            rule_label=rule_label if rule_label is not None else result.rule,
            steps=result.steps,
            head_init=result.head_init,
            accuracy=result.accuracy,
            query_loss=result.query_loss,
            seconds=result.seconds,
            predictions=list(result.predictions),
            probabilities=[list(row) for row in result.probabilities],
            truths=None if result.query_labels is None else list(result.query_labels),
            support_loss=list(result.support_loss),
            support_accuracy=list(result.support_accuracy),
            traces=[{layer: dict(values) for layer, values in step.items()} for step in result.traces],
        )


@dataclass
class RunInput:
    """Everything about a run except its adaptations (which may not all exist when a run fails)."""

    source: RunSource
    dataset: str | None
    split: str | None
    n_way: int
    k_shot: int  # the smallest number of support shots of any class
    n_query: int
    seed: int | None
    checkpoint: CheckpointInput | None
    checkpoint_name: str  # kept on the run even if the checkpoint row is deleted later
    device: str
    steps: int
    class_names: list[str]
    config: dict[str, Any]  # anything else worth keeping (head_init, ...); must be JSON-serialisable
    items: list[EpisodeItemInput]
    note: str | None = None
    name: str | None = None  # a short name the user gives the run (at most MAX_NAME_LENGTH characters)
    tags: list[str] = field(default_factory=list)  # see MAX_TAGS, MAX_TAG_LENGTH, TAG_CHARACTERS


# -------------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class CheckpointInfo:
    """A stored checkpoint row."""

    id: int
    name: str
    path: str
    file_sha256: str
    backbone: dict[str, Any]
    rule: dict[str, Any]
    image_spec: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class RunSummary:
    """One line of the run history. ``created_at`` is timezone-aware UTC.

    ``rules`` lists the adaptations in run order; ``accuracies`` maps each rule to its accuracy (if a rule
    was adapted twice in one run, the later adaptation wins there; ``RunDetail.adaptations`` has both).
    ``steps`` is the number of inner steps the run asked for; ``name``/``tags``/``note`` are the user's;
    ``owner`` who made it.
    """

    id: int
    created_at: datetime
    source: str
    dataset: str | None
    split: str | None
    n_way: int
    k_shot: int
    n_query: int
    checkpoint_name: str
    status: str
    rules: list[str]
    accuracies: dict[str, float | None]
    total_seconds: float | None
    device: str
    error: str | None
    note: str | None
    steps: int
    name: str | None
    tags: list[str]
    # Who made the run (revision 0006; see core.store.permissions): "" for a run with no owner, stored before
    # sign-in existed or by a visitor who had not signed in. Keyword-only so that RunDetail's fields can follow.
    owner: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class EpisodeItem:
    """A stored episode item; fetch its bytes with ``Store.get_image(image_sha256)``."""

    role: str
    position: int
    label: int | None
    image_sha256: str
    source_name: str
    mime: str


@dataclass(frozen=True)
class AdaptationDetail:
    """A stored adaptation, in the shape it was saved (see :class:`AdaptationInput`).

    ``confidences[i]`` is the probability of the predicted class of query ``i``.
    """

    rule: str
    rule_label: str
    steps: int
    head_init: str
    accuracy: float | None
    query_loss: float | None
    seconds: float
    predictions: list[int]
    probabilities: list[list[float]]
    truths: list[int | None] | None  # None when no query had a label
    confidences: list[float]
    support_loss: list[float]
    support_accuracy: list[float]
    traces: list[dict[str, dict[str, float]]]


@dataclass(frozen=True)
class RunDetail(RunSummary):
    """A whole run: the summary plus the episode and every adaptation with its traces and predictions."""

    seed: int | None
    class_names: list[str]
    config: dict[str, Any]
    checkpoint: CheckpointInfo | None  # None when the run had none or its row was deleted
    items: list[EpisodeItem] = field(default_factory=list)  # support items, then query items, by position
    adaptations: list[AdaptationDetail] = field(default_factory=list)
