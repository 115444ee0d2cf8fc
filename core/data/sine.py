"""The sinusoid regression task family of MAML (Finn et al., 2017, section 5.1) and ALFA (section 4.5)."""

from __future__ import annotations

import math

import numpy as np
import torch

from core.data.task import Task

__all__ = ["SineTaskFamily"]


class SineTaskFamily:
    """Tasks ``y = amplitude * sin(frequency * x - phase)`` with x drawn uniformly from ``x_range``.

    The minus sign on the phase follows MAML's reference data generator. Amplitude, frequency and phase
    are drawn uniformly from their ranges per task. The defaults are ALFA's Table 8 setting: amplitude in
    [0.1, 5.0], frequency in [0.8, 1.2], phase in [0, pi], x in [-5, 5] (MAML's original family fixes the
    frequency at 1: pass ``frequency=(1.0, 1.0)``).

    Task ``index`` is a pure function of ``(seed, index)``, so tasks can be regenerated in any order.
    """

    def __init__(
        self,
        amplitude: tuple[float, float] = (0.1, 5.0),
        frequency: tuple[float, float] = (0.8, 1.2),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        for label, (low, high) in (
            ("amplitude", amplitude),
            ("frequency", frequency),
            ("phase", phase),
            ("x_range", x_range),
        ):
            if not low <= high:
                raise ValueError(f"{label} range must be (low, high) with low <= high, got ({low}, {high})")
        self.amplitude = (float(amplitude[0]), float(amplitude[1]))
        self.frequency = (float(frequency[0]), float(frequency[1]))
        self.phase = (float(phase[0]), float(phase[1]))
        self.x_range = (float(x_range[0]), float(x_range[1]))

    def task(self, index: int, k_shot: int, n_query: int, seed: int = 0) -> Task:
        """Task number ``index``: ``k_shot`` support and ``n_query`` query points, float32 ``[n, 1]``."""
        if k_shot < 1 or n_query < 1:
            raise ValueError(f"k_shot and n_query must be at least 1, got k_shot={k_shot}, n_query={n_query}")
        if index < 0 or seed < 0:
            raise ValueError(f"index and seed must be non-negative, got index={index}, seed={seed}")
        rng = np.random.default_rng([seed, index])
        # Fixed draw order (parameters, then support x, then query x) keeps tasks stable across versions
        # of this code that only change k_shot or n_query: the function itself does not move.
        amplitude = float(rng.uniform(*self.amplitude))
        frequency = float(rng.uniform(*self.frequency))
        phase = float(rng.uniform(*self.phase))
        support_x = rng.uniform(*self.x_range, size=(k_shot, 1))
        query_x = rng.uniform(*self.x_range, size=(n_query, 1))

        def curve(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(amplitude * np.sin(frequency * x - phase)).to(torch.float32)

        return Task(
            support_x=torch.from_numpy(support_x).to(torch.float32),
            support_y=curve(support_x),
            query_x=torch.from_numpy(query_x).to(torch.float32),
            query_y=curve(query_x),
            provenance={"amplitude": amplitude, "frequency": frequency, "phase": phase},
        )

    def batch(
        self, start_index: int, count: int, k_shot: int, n_query: int, seed: int = 0
    ) -> list[Task]:
        """Tasks ``start_index .. start_index + count - 1``."""
        return [self.task(index, k_shot, n_query, seed) for index in range(start_index, start_index + count)]
