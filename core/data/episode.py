"""Classification episodes: what every sampler, folder reader and upload produces, and what the dashboard shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from core.data.task import Task


@dataclass
class Episode:
    """One few-shot classification episode.

    ``support_labels`` / ``query_labels`` index into ``class_names`` (0..n_way-1). ``query_labels`` is
    ``None`` when the user brought unlabelled queries. ``*_sources`` name where each image came from
    (file path, ``dataset:class:index``, or an upload name) so a stored run can say what it saw.
    """

    support_images: torch.Tensor  # [n_support, C, H, W] float32, already normalised
    support_labels: torch.Tensor  # [n_support] int64
    query_images: torch.Tensor  # [n_query, C, H, W]
    query_labels: torch.Tensor | None  # [n_query] int64 or None
    class_names: list[str]
    support_sources: list[str] = field(default_factory=list)
    query_sources: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_way(self) -> int:
        return len(self.class_names)

    @property
    def shots_per_class(self) -> list[int]:
        counts = torch.bincount(self.support_labels, minlength=self.n_way)
        return [int(c) for c in counts]

    @property
    def is_labelled(self) -> bool:
        return self.query_labels is not None

    def task(self) -> Task:
        """The engine's view of this episode (labelled queries required): tensors and the class count."""
        if self.query_labels is None:
            raise ValueError("a task for meta-training or evaluation needs labelled queries")
        return Task(
            self.support_images, self.support_labels, self.query_images, self.query_labels, self.n_way,
            dict(self.provenance),
        )

    def to(self, device: torch.device | str) -> Episode:
        return Episode(
            support_images=self.support_images.to(device),
            support_labels=self.support_labels.to(device),
            query_images=self.query_images.to(device),
            query_labels=None if self.query_labels is None else self.query_labels.to(device),
            class_names=list(self.class_names),
            support_sources=list(self.support_sources),
            query_sources=list(self.query_sources),
            provenance=dict(self.provenance),
        )
