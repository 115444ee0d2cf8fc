"""The one task type: a support set to adapt on and a query set to score on, for every task kind.

Samplers, folder readers and uploads produce classification tasks (few-shot "episodes"); the sine family produces
regression tasks; training, evaluation, the meta-gradient estimators and the dashboard all take this type.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

__all__ = ["Task"]


@dataclass
class Task:
    """One few-shot task.

    Classification: ``support_x`` / ``query_x`` are images ``[n, C, H, W]`` (float32, already normalised), the
    targets ``support_y`` / ``query_y`` int64 indices into ``class_names``; ``query_y`` is ``None`` when the user
    brought unlabelled queries. Regression (the sine family): inputs and targets are ``[n, d]`` float tensors and
    ``class_names`` is empty. ``*_sources`` name where each example came from (file path, ``dataset:class:index``,
    an upload name) so that a stored run can say what it saw; ``provenance`` says how the task was made (the
    sampler and its seed, the sine curve's amplitude, frequency and phase).
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor | None
    class_names: list[str] = field(default_factory=list)
    support_sources: list[str] = field(default_factory=list)
    query_sources: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_way(self) -> int:
        """The number of classes (0 for a regression task)."""
        return len(self.class_names)

    @property
    def n_classes(self) -> int | None:
        """The class count a classification head needs, ``None`` for a regression task."""
        return len(self.class_names) or None

    @property
    def shots_per_class(self) -> list[int]:
        counts = torch.bincount(self.support_y, minlength=self.n_way)
        return [int(c) for c in counts]

    @property
    def is_labelled(self) -> bool:
        return self.query_y is not None

    def to(self, device: torch.device | str) -> Task:
        return replace(
            self,
            support_x=self.support_x.to(device),
            support_y=self.support_y.to(device),
            query_x=self.query_x.to(device),
            query_y=None if self.query_y is None else self.query_y.to(device),
            class_names=list(self.class_names),
            support_sources=list(self.support_sources),
            query_sources=list(self.query_sources),
            provenance=dict(self.provenance),
        )
