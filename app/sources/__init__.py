"""Where an Adapt-page episode comes from: a benchmark sample, or classes the user builds from their own images.

Each source renders its own widgets and returns a :class:`Prepared` episode (or ``None`` while it is not ready,
with the reason in ``Readiness``). The page never looks inside a source beyond these two types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.data.episode import Episode
from core.data.uploads import EpisodeImage

# Page choices (ids) and their labels. The ids are also what a run records as its source when they match the
# store's source values; "benchmark" covers both Omniglot and folder trees (the run says which in ``dataset``).
BENCHMARK, UPLOAD, DRAW, CAMERA = "benchmark", "upload", "drawing", "camera"
SOURCE_LABELS = {
    BENCHMARK: "Benchmark episode",
    UPLOAD: "Upload images",
    DRAW: "Draw",
    CAMERA: "Camera",
}


@dataclass
class Prepared:
    """An episode ready to run, with what the run record says about where it came from."""

    episode: Episode
    items: list[EpisodeImage]
    source: str
    dataset: str
    split: str | None = None
    seed: int | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Readiness:
    """What a source says about its episode: the problem that stops a run (if any) and things worth a look."""

    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
