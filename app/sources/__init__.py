"""Where an Adapt-page episode comes from: a benchmark sample, or classes the user builds from their own images.

Each source renders its own widgets and returns a :class:`Prepared` episode (or ``None`` while it is not ready,
with the reason in ``Readiness``). The page never looks inside a source beyond these two types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.data.task import Task
from core.data.uploads import EpisodeImage
from core.store import RunSource

# The page's episode choices (radio ids, UI state) and their labels. What a run records as its source is a
# separate thing, a ``core.store.RunSource`` that each source sets in ``Prepared.source``.
BENCHMARK, UPLOAD, DRAW, CAMERA = "benchmark", "upload", "drawing", "camera"
CHOICE_LABELS = {
    BENCHMARK: "Benchmark episode",
    UPLOAD: "Upload images",
    DRAW: "Draw",
    CAMERA: "Camera",
}


@dataclass
class Prepared:
    """An episode ready to run, with what the run record says about where it came from."""

    episode: Task
    items: list[EpisodeImage]
    source: RunSource  # stored with the run (benchmark, folder, upload, drawing, camera)
    dataset: str
    split: str | None = None
    seed: int | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Readiness:
    """What a source says about its episode: the problem that stops a run (if any) and things worth a look."""

    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
