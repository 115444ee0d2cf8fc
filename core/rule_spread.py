"""How much a rule's generated alpha/beta vary from one held-out episode to the next.

ALFA (Baik et al., NeurIPS 2020, eq. 4 and 7) generates ``alpha`` and ``beta`` per inner step and per layer from
the task's learning state, so they differ between episodes; fixed rules (SGD, learned per-step rates, Meta-SGD)
give every episode the same values. :func:`rule_spread` adapts ``N`` seeded episodes of a checkpoint's held-out
classes with one rule and summarises, per layer and step, the spread of alpha and beta across those episodes,
plus how much of their variation the episode explains versus the step (:func:`variance_shares`).

The dashboard draws one stored episode against this spread; ``python -m core inspect-rule`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import settings
from core.adapt import adapt
from core.checkpoint import CheckpointMetadata, file_sha256, load_learner, read_metadata
from core.data.folders import FolderImageSet
from core.data.omniglot import OmniglotImageSet, list_alphabets
from core.data.sampler import EpisodeSampler, LabelledImageSet
from core.learner import Learner

__all__ = [
    "DEFAULT_EPISODES",
    "HeldOutDataMissing",
    "LayerSpread",
    "RuleSpread",
    "StepSpread",
    "VarianceShares",
    "heldout_image_set",
    "rule_spread",
    "spread_of_traces",
    "variance_shares",
]

DEFAULT_EPISODES = 20
DEFAULT_QUERIES = 5  # queries per class: they only give the episodes' accuracy, not alpha/beta
QUANTITIES = ("alpha", "beta")

# (checkpoint path, rule, device) -> (learner, metadata), as core.runs.LearnerLoader: the app passes its cache.
LearnerLoader = Callable[[Path, str, torch.device], tuple[Learner, CheckpointMetadata]]


class HeldOutDataMissing(FileNotFoundError):
    """The checkpoint's held-out classes are not on this machine (or the checkpoint does not say which they are)."""


@dataclass(frozen=True)
class StepSpread:
    """One quantity of one layer across episodes, one value per inner step (population std, ``ddof = 0``)."""

    mean: list[float]
    std: list[float]
    minimum: list[float]
    maximum: list[float]


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

    checkpoint: str  # file name
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleSpread:
        def layer(item: dict[str, Any]) -> LayerSpread:
            return LayerSpread(
                layer=item["layer"],
                alpha=StepSpread(**item["alpha"]),
                beta=StepSpread(**item["beta"]),
                alpha_shares=VarianceShares(**item["alpha_shares"]),
                beta_shares=VarianceShares(**item["beta_shares"]),
            )

        return cls(**{**data, "layers": [layer(item) for item in data["layers"]]})


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


def heldout_image_set(
    metadata: CheckpointMetadata, omniglot_root: str | Path | None = None
) -> tuple[LabelledImageSet, str]:
    """The checkpoint's held-out (test) classes as an image set, and a description of them in words.

    Read from the training data the metadata records: Omniglot alphabets listed under ``test`` (found under
    ``omniglot_root``, else the recorded root, else ``core.settings.omniglot_root``), or the ``test`` split of a
    folder dataset. Raises :class:`HeldOutDataMissing` with a one-line reason when they are not here.
    """
    spec = metadata.image
    if spec is None:
        raise HeldOutDataMissing("this checkpoint is not an image classifier, so it has no held-out image classes")
    data = metadata.training.data if metadata.training is not None else None
    test = list(metadata.heldout_classes)
    kind = data.kind if data is not None else None
    recorded_root = data.root if data is not None else None
    if not test:
        raise HeldOutDataMissing("the checkpoint does not record its held-out (test) classes")
    if kind == "omniglot":
        root = Path(omniglot_root or recorded_root or settings.omniglot_root()).expanduser()
        try:
            present = list_alphabets(root)
        except OSError:
            present = {}
        missing = [alphabet for alphabet in test if alphabet not in present]
        if missing:
            raise HeldOutDataMissing(
                f"the held-out Omniglot alphabets ({', '.join(missing)}) are not under {root} on this machine"
            )
        return OmniglotImageSet(root, alphabets=test, spec=spec, name="omniglot-test"), f"omniglot: {', '.join(test)}"
    if kind == "folder" and recorded_root:
        split = test[0]
        if not (Path(recorded_root) / split).is_dir():
            raise HeldOutDataMissing(f"the held-out split {Path(recorded_root) / split} is not on this machine")
        return FolderImageSet(recorded_root, split, spec), f"{Path(recorded_root).name}: {split}"
    raise HeldOutDataMissing(f"held-out data of kind {kind!r} cannot be read here (Omniglot and folders can)")


def _default_loader(path: Path, rule: str, device: torch.device) -> tuple[Learner, CheckpointMetadata]:
    return load_learner(path, rule=rule, device=device)


def rule_spread(
    checkpoint: str | Path,
    rule: str,
    steps: int,
    n_way: int,
    k_shot: int,
    episodes: int = DEFAULT_EPISODES,
    n_query: int = DEFAULT_QUERIES,
    seed: int = 0,
    head_init: str | None = None,
    device: torch.device | str = "cpu",
    loader: LearnerLoader | None = None,
    omniglot_root: str | Path | None = None,
    on_episode: Callable[[int, int], None] | None = None,
    expected_sha256: str | None = None,
) -> RuleSpread:
    """Adapt episodes ``0 .. episodes - 1`` of ``EpisodeSampler(held-out classes, n_way, k_shot, n_query, seed)``
    with ``rule`` for ``steps`` inner steps and summarise their alpha/beta (:func:`spread_of_traces`).

    ``head_init`` defaults as in ``core.adapt``; pass the one of the episode you compare with. ``on_episode(done,
    total)`` is called after each episode. Raises :class:`HeldOutDataMissing` when the held-out classes are not
    here, ``ValueError`` for settings the data cannot satisfy (e.g. more ways than held-out classes) and when
    ``expected_sha256`` is given and the file no longer has those bytes (a spread of other weights would mislead).
    """
    if episodes < 1:
        raise ValueError("episodes must be at least 1")
    if steps < 1:
        raise ValueError("steps must be at least 1: with no inner step there are no alpha/beta values")
    path = Path(checkpoint)
    sha256 = file_sha256(path)
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise ValueError(
            f"{path.name} has changed since this run (its hash is now {sha256[:12]}…, the run used "
            f"{expected_sha256[:12]}…), so its held-out episodes would not show the same weights"
        )
    metadata = read_metadata(path)
    image_set, described = heldout_image_set(metadata, omniglot_root)
    sampler = EpisodeSampler(image_set, n_way, k_shot, n_query, seed=seed)
    learner, _ = (loader or _default_loader)(path, rule, torch.device(device))
    traces, accuracies, heads = [], [], set()
    for index, episode in enumerate(sampler.episodes(episodes)):
        result = adapt(learner, episode, steps, head_init=head_init, device=device)
        traces.append(result.traces)
        accuracies.append(float(result.accuracy) if result.accuracy is not None else float("nan"))
        heads.add(result.head_init)
        if on_episode is not None:
            on_episode(index + 1, episodes)
    return RuleSpread(
        checkpoint=path.name,
        checkpoint_sha256=sha256,
        rule=rule,
        steps=steps,
        n_way=n_way,
        k_shot=k_shot,
        n_query=n_query,
        episodes=episodes,
        seed=seed,
        head_init=heads.pop() if len(heads) == 1 else ", ".join(sorted(heads)),
        data=described,
        accuracies=accuracies,
        layers=spread_of_traces(traces),
    )
