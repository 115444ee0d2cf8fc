"""The spread of a rule's alpha/beta across episodes: the records, and the arithmetic that makes them from traces.

:func:`core.rule_spread.rule_spread` adapts held-out episodes and summarises their traces with
:func:`spread_of_traces`; a checkpoint's metadata keeps the summary of its own rule (``adaptivity``,
:mod:`core.checkpoint.metadata`), which is why these records live here, apart from the adaptation (this module
needs numpy only, so the checkpoint package can import it without an import cycle).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "QUANTITIES",
    "LayerSpread",
    "RuleSpread",
    "StepSpread",
    "VarianceShares",
    "spread_of_traces",
    "variance_shares",
]

QUANTITIES = ("alpha", "beta")


@dataclass(frozen=True)
class StepSpread:
    """One quantity of one layer across episodes, one value per inner step (population std, ``ddof = 0``)."""

    mean: list[float]
    std: list[float]
    minimum: list[float]
    maximum: list[float]

    def relative_spread(self) -> list[float]:
        """``std / |mean|`` per step: how much the episodes move the value, relative to it (0 where nothing
        varies, ``inf`` where a zero mean varies)."""
        return [sd / abs(m) if m else (0.0 if sd == 0 else math.inf) for m, sd in zip(self.mean, self.std)]


@dataclass(frozen=True)
class VarianceShares:
    """Shares of the variation of one layer's values (episodes x steps) explained by the episode, by the step, and
    left to their interaction; they sum to 1. All ``None`` when the values do not vary at all."""

    episode: float | None
    step: float | None
    interaction: float | None


@dataclass(frozen=True)
class LayerSpread:
    """alpha and beta of one tensor across the episodes: per-step spread and variance shares."""

    layer: str
    alpha: StepSpread
    beta: StepSpread
    alpha_shares: VarianceShares
    beta_shares: VarianceShares

    def departure(self, alpha: Sequence[float], beta: Sequence[float]) -> float:
        """How far one episode's per-step values lie from the mean of the spread, at worst: the largest
        ``|x - mean| / std`` over steps and over alpha and beta (``inf`` where the spread has no width but the
        episode differs; steps the spread does not have are ignored)."""
        worst = 0.0
        for values, spread in ((alpha, self.alpha), (beta, self.beta)):
            for x, mean, std in zip(values, spread.mean, spread.std):
                if not (np.isfinite(x) and np.isfinite(mean)):
                    continue
                gap = abs(x - mean)
                worst = max(worst, gap / std if std > 0 else (0.0 if gap == 0 else float("inf")))
        return worst


@dataclass(frozen=True)
class RuleSpread:
    """A rule's alpha/beta over ``episodes`` seeded episodes of a checkpoint's held-out classes."""

    # The file measured, by name and hash. Stored in that checkpoint's own metadata (core.packaging), the hash is
    # the file's without the record, as packaged: the header cannot hold the hash of the bytes that contain it.
    checkpoint: str
    checkpoint_sha256: str
    rule: str
    steps: int
    n_way: int
    k_shot: int
    n_query: int
    episodes: int
    seed: int
    head_init: str
    data: str  # which held-out classes, in words ("omniglot: Japanese_(katakana), Tagalog")
    accuracies: list[float]  # query accuracy of each episode
    layers: list[LayerSpread]

    def layer(self, name: str) -> LayerSpread | None:
        return next((layer for layer in self.layers if layer.layer == name), None)

    def largest_relative_alpha_spread(self) -> float:
        """The largest ``std / |mean|`` of alpha over layers and steps (0 when alpha never varies)."""
        return max((value for layer in self.layers for value in layer.alpha.relative_spread()), default=0.0)

    def largest_alpha_episode_share(self) -> float | None:
        """The largest share of a layer's alpha variation that the episode explains; ``None`` when alpha does not
        vary in any layer (a fixed rule)."""
        shares = [layer.alpha_shares.episode for layer in self.layers if layer.alpha_shares.episode is not None]
        return max(shares, default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RuleSpread:
        """The inverse of :meth:`to_dict`, checked: ``TypeError`` for a part that is not a JSON object,
        ``ValueError`` naming the first key that is missing, unknown, mistyped, or a per-step list whose length is
        not ``steps`` (and accuracies not one per episode)."""
        top = _Record(data, "")
        steps, episodes = top.whole("steps"), top.whole("episodes")
        spread = cls(
            checkpoint=top.text("checkpoint"), checkpoint_sha256=top.text("checkpoint_sha256"), rule=top.text("rule"),
            steps=steps, n_way=top.whole("n_way"), k_shot=top.whole("k_shot"), n_query=top.whole("n_query"),
            episodes=episodes, seed=top.whole("seed"), head_init=top.text("head_init"), data=top.text("data"),
            accuracies=top.numbers("accuracies", episodes),
            layers=[_layer(item, f"layers[{index}]", steps) for index, item in enumerate(top.items("layers"))],
        )
        top.done(cls)
        return spread


def _layer(data: Any, where: str, steps: int) -> LayerSpread:
    record = _Record(data, where)

    def per_step(key: str) -> StepSpread:
        values = _Record(record.raw(key), record.where(key))
        spread = StepSpread(**{name: values.numbers(name, steps) for name in _names(StepSpread)})
        values.done(StepSpread)
        return spread

    def shares(key: str) -> VarianceShares:
        values = _Record(record.raw(key), record.where(key))
        result = VarianceShares(**{name: values.number_or_none(name) for name in _names(VarianceShares)})
        values.done(VarianceShares)
        return result

    layer = LayerSpread(layer=record.text("layer"), alpha=per_step("alpha"), beta=per_step("beta"),
                        alpha_shares=shares("alpha_shares"), beta_shares=shares("beta_shares"))
    record.done(LayerSpread)
    return layer


def _names(cls: type) -> list[str]:
    return [item.name for item in fields(cls)]


class _Record:
    """One JSON object of a stored spread, read key by key with type checks (``where`` names it in messages)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise TypeError(f"{where or 'the spread'} must be a JSON object, found {data!r}")
        self.data, self.path = data, where

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise ValueError(f"{self.where(key)} is missing")
        return self.data[key]

    def _typed(self, key: str, check: Callable[[Any], bool], wanted: str) -> Any:
        value = self.raw(key)
        if not check(value):
            raise ValueError(f"{self.where(key)} must be {wanted}, found {value!r}")
        return value

    def text(self, key: str) -> str:
        return self._typed(key, lambda v: isinstance(v, str), "a string")

    def whole(self, key: str) -> int:
        return self._typed(key, _is_whole, "a whole number")

    def number_or_none(self, key: str) -> float | None:
        value = self._typed(key, lambda v: v is None or _is_number(v), "a finite number or null")
        return None if value is None else float(value)

    def numbers(self, key: str, length: int) -> list[float]:
        values = self._typed(key, lambda v: isinstance(v, list) and all(map(_is_number, v)), "a list of finite numbers")
        if len(values) != length:
            raise ValueError(f"{self.where(key)} must hold {length} values, found {len(values)}")
        return [float(v) for v in values]

    def items(self, key: str) -> list[Any]:
        return self._typed(key, lambda v: isinstance(v, list), "a list")

    def done(self, cls: type) -> None:
        unknown = sorted(set(self.data) - set(_names(cls)))
        if unknown:
            raise ValueError(f"{self.path or 'the spread'} has unknown field(s) {', '.join(unknown)}")


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def variance_shares(values: np.ndarray) -> VarianceShares:
    """Two-way decomposition of a complete episodes x steps table ``x[e, j]`` (E episodes, J steps).

    With the grand mean ``m``, episode means ``x[e, .]`` and step means ``x[., j]``:

        SS_total       = sum_e sum_j (x[e, j] - m)^2
        SS_episode     = J * sum_e (x[e, .] - m)^2
        SS_step        = E * sum_j (x[., j] - m)^2
        SS_interaction = SS_total - SS_episode - SS_step

    (the three parts are orthogonal in a complete table, so the interaction is >= 0 up to rounding). Each share
    is its SS over SS_total: ``episode`` near 1 means the rule sets this layer's value per task and keeps it
    across steps; ``step`` near 1 means a schedule that every task follows (a fixed per-step rule gives exactly
    1); ``interaction`` is what neither explains alone (the task changes the schedule itself).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty episodes x steps table, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or values.max() == values.min():
        # Identical floats: a fixed value has no variation to share out (and NaN/inf none that means anything).
        return VarianceShares(None, None, None)
    episodes, steps = values.shape
    grand = values.mean()
    ss_total = float(((values - grand) ** 2).sum())
    ss_episode = float(steps * ((values.mean(axis=1) - grand) ** 2).sum())
    ss_step = float(episodes * ((values.mean(axis=0) - grand) ** 2).sum())
    ss_interaction = max(ss_total - ss_episode - ss_step, 0.0)
    return VarianceShares(ss_episode / ss_total, ss_step / ss_total, ss_interaction / ss_total)


def spread_of_traces(traces: Sequence[list[dict[str, dict[str, float]]]]) -> list[LayerSpread]:
    """Per-layer spread of alpha/beta over episodes, from each episode's ``AdaptationResult.traces``.

    Every episode must have the same steps and layers (one rule, one step count); layers keep the first
    episode's order.
    """
    if not traces:
        raise ValueError("no episodes to summarise")
    steps = len(traces[0])
    if steps == 0:
        raise ValueError("the episodes took no inner steps, so there are no alpha/beta values")
    layers = list(traces[0][0])
    if any(len(trace) != steps or any(list(step) != layers for step in trace) for trace in traces):
        raise ValueError("every episode must have the same inner steps and layers")
    result = []
    for layer in layers:
        tables = {
            which: np.array([[step[layer][which] for step in trace] for trace in traces], dtype=np.float64)
            for which in QUANTITIES
        }
        spreads = {
            which: StepSpread(
                mean=table.mean(axis=0).tolist(),
                std=table.std(axis=0).tolist(),
                minimum=table.min(axis=0).tolist(),
                maximum=table.max(axis=0).tolist(),
            )
            for which, table in tables.items()
        }
        result.append(LayerSpread(
            layer=layer,
            alpha=spreads["alpha"],
            beta=spreads["beta"],
            alpha_shares=variance_shares(tables["alpha"]),
            beta_shares=variance_shares(tables["beta"]),
        ))
    return result
