"""Outer steps for a meta-gradient estimate ``g`` (numpy, any float dtype): GD, clipped, normalized and SNGDM.

``shared/reference.md``, "The bilevel view", "Outer steps": the MAML objective is not globally smooth (its
smoothness constant grows with the norm of the meta-gradient, Chayti and Jaggi), which argues for steps whose
length does not grow with ``||g||``:

- ``gd``:         ``x <- x - eta g``
- ``clipped``:    ``x <- x - eta g min(1, c / ||g||)``             (norm clipping at the threshold ``c``)
- ``normalized``: ``x <- x - eta g / ||g||``                       (every step has length ``eta``)
- ``sngdm``:      ``m <- beta m + (1 - beta) g;  x <- x - eta m / ||m||``   (the paper's SNGDM, ``m`` starts at 0)

Every function works on a batch: the last axis is the parameter vector, the leading axes are independent runs
(for example one per outer rate of a grid), and ``rate`` may be an array broadcasting against them. A zero vector
is never divided by: its normalized direction is zero (the step leaves ``x`` where it is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "OUTER_KINDS",
    "OuterMethod",
    "OuterState",
    "apply_outer_step",
    "clip_to_norm",
    "clipped_step",
    "gd_step",
    "normalized_direction",
    "normalized_step",
    "sngdm_step",
]

OUTER_KINDS = ("gd", "clipped", "normalized", "sngdm")

Rate = float | np.ndarray


def _norm(v: np.ndarray) -> np.ndarray:
    return np.linalg.norm(v, axis=-1, keepdims=True)


def normalized_direction(v: np.ndarray) -> np.ndarray:
    """``v / ||v||`` along the last axis; zero where ``v`` is zero."""
    norm = _norm(v)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def clip_to_norm(g: np.ndarray, threshold: float) -> np.ndarray:
    """``g min(1, c / ||g||)``: ``g`` itself (the very same numbers) when ``||g|| <= c``, else rescaled to norm ``c``."""
    if not threshold > 0:
        raise ValueError(f"the clipping threshold must be positive, not {threshold}")
    norm = _norm(g)
    scale = np.divide(threshold, norm, out=np.ones_like(norm), where=norm > threshold)
    return np.where(norm > threshold, g * scale, g)


def gd_step(x: np.ndarray, g: np.ndarray, rate: Rate) -> np.ndarray:
    """Plain gradient descent: ``x - eta g``."""
    return x - rate * g


def clipped_step(x: np.ndarray, g: np.ndarray, rate: Rate, threshold: float) -> np.ndarray:
    """Clipped gradient descent: ``x - eta clip(g, c)``, with ``clip(g, c) = g min(1, c / ||g||)``."""
    return x - rate * clip_to_norm(g, threshold)


def normalized_step(x: np.ndarray, g: np.ndarray, rate: Rate) -> np.ndarray:
    """Normalized gradient descent: ``x - eta g / ||g||``; the step has length exactly ``eta`` (up to rounding)."""
    return x - rate * normalized_direction(g)


def sngdm_step(x: np.ndarray, momentum: np.ndarray, g: np.ndarray, rate: Rate,
               beta: float) -> tuple[np.ndarray, np.ndarray]:
    """SNGDM: ``m <- beta m + (1 - beta) g;  x <- x - eta m / ||m||``. Returns the new ``(x, m)``."""
    momentum = beta * momentum + (1 - beta) * g
    return x - rate * normalized_direction(momentum), momentum


@dataclass(frozen=True)
class OuterMethod:
    """Which outer step, with its settings other than the rate (the rate is tuned, so it is passed apart).

    ``clip_threshold`` is used by ``clipped`` only, ``beta`` by ``sngdm`` only.
    """

    kind: str = "gd"
    clip_threshold: float | None = None
    beta: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in OUTER_KINDS:
            raise ValueError(f"unknown outer step {self.kind!r}; choose one of {', '.join(OUTER_KINDS)}")
        if self.kind == "clipped" and not (self.clip_threshold is not None and self.clip_threshold > 0):
            raise ValueError("the clipped outer step needs a positive clip_threshold")
        if self.kind == "sngdm" and not 0 <= self.beta < 1:
            raise ValueError(f"sngdm needs 0 <= beta < 1, not {self.beta}")

    @property
    def label(self) -> str:
        if self.kind == "clipped":
            return f"clipped (c={self.clip_threshold:g})"
        if self.kind == "sngdm":
            return f"sngdm (beta={self.beta:g})"
        return self.kind


@dataclass(frozen=True, eq=False)
class OuterState:
    """Where an outer run stands: the point ``x`` and SNGDM's momentum ``m`` (zero until the first step)."""

    x: np.ndarray
    momentum: np.ndarray

    @classmethod
    def start(cls, x0: np.ndarray) -> OuterState:
        x0 = np.asarray(x0, dtype=float)
        return cls(x0.copy(), np.zeros_like(x0))


def apply_outer_step(method: OuterMethod, state: OuterState, g: np.ndarray, rate: Rate) -> OuterState:
    """One outer step of ``method`` from ``state`` with the estimate ``g``."""
    if method.kind == "gd":
        return OuterState(gd_step(state.x, g, rate), state.momentum)
    if method.kind == "clipped":
        assert method.clip_threshold is not None
        return OuterState(clipped_step(state.x, g, rate, method.clip_threshold), state.momentum)
    if method.kind == "normalized":
        return OuterState(normalized_step(state.x, g, rate), state.momentum)
    x, momentum = sngdm_step(state.x, state.momentum, g, rate, method.beta)
    return OuterState(x, momentum)
