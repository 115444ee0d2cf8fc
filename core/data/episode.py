"""Episodes and regression tasks: the unit every sampler, reader and adapter speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


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


@dataclass
class RegressionTask:
    """A few-shot regression task (ALFA section 4.5): fit y = f(x) from ``support_*``, score on ``query_*``."""

    support_x: torch.Tensor  # [k_shot, 1]
    support_y: torch.Tensor  # [k_shot, 1]
    query_x: torch.Tensor  # [n_query, 1]
    query_y: torch.Tensor  # [n_query, 1]
    params: dict[str, float] = field(default_factory=dict)
