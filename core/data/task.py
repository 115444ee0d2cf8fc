"""The unit the meta-learning engine works on: a support set to adapt on and a query set to score on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Task"]


@dataclass
class Task:
    """One few-shot task, for any task kind.

    Classification: ``support_x`` / ``query_x`` are images ``[n, C, H, W]``, the targets class indices
    ``0..n_classes-1``. Regression (the sine family): inputs and targets are ``[n, d]`` float tensors and
    ``n_classes`` is ``None``. ``provenance`` says where the task came from (the sine family's amplitude, frequency
    and phase; an episode's sampler and index).
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    n_classes: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Task:
        return Task(
            self.support_x.to(device), self.support_y.to(device), self.query_x.to(device), self.query_y.to(device),
            self.n_classes, dict(self.provenance),
        )
