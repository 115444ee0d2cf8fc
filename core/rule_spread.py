"""How much a rule's generated alpha/beta vary from one held-out episode to the next.

ALFA (Baik et al., NeurIPS 2020, eq. 4 and 7) generates ``alpha`` and ``beta`` per inner step and per layer from
the task's learning state, so they differ between episodes; fixed rules (SGD, learned per-step rates, Meta-SGD)
give every episode the same values. :func:`rule_spread` adapts ``N`` seeded episodes of a checkpoint's held-out
classes with one rule and summarises, per layer and step, the spread of alpha and beta across those episodes,
plus how much of their variation the episode explains versus the step (:func:`variance_shares`). The records
and that arithmetic are :mod:`core.spread` (re-exported here), since checkpoint metadata stores them too.

The dashboard draws one stored episode against this spread; ``python -m core inspect-rule`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from core import settings
from core.adapt import adapt
from core.checkpoint import CheckpointMetadata, file_sha256, load_learner, read_metadata
from core.data.folders import FolderImageSet
from core.data.omniglot import OmniglotImageSet, list_alphabets
from core.data.sampler import EpisodeSampler, LabelledImageSet
from core.learner import Learner
from core.spread import LayerSpread, RuleSpread, StepSpread, VarianceShares, spread_of_traces, variance_shares

__all__ = [
    "DEFAULT_EPISODES",
    "HeldOutData",
    "HeldOutDataMissing",
    "LayerSpread",
    "RuleSpread",
    "StepSpread",
    "VarianceShares",
    "find_heldout_data",
    "heldout_image_set",
    "rule_spread",
    "spread_of_traces",
    "variance_shares",
]

DEFAULT_EPISODES = 20
DEFAULT_QUERIES = 5  # queries per class: they only give the episodes' accuracy, not alpha/beta

# (checkpoint path, rule, device) -> (learner, metadata), as core.runs.LearnerLoader: the app passes its cache.
LearnerLoader = Callable[[Path, str, torch.device], tuple[Learner, CheckpointMetadata]]


class HeldOutDataMissing(FileNotFoundError):
    """The checkpoint's held-out classes are not on this machine (or the checkpoint does not say which they are)."""


@dataclass(frozen=True)
class HeldOutData:
    """Where a checkpoint's held-out classes are on this machine (found, not read)."""

    kind: str  # "omniglot" (``classes`` are alphabets) or "folder" (``classes`` is the one test split)
    root: Path
    classes: tuple[str, ...]
    described: str  # in words: "omniglot: Japanese_(katakana), Tagalog"


def find_heldout_data(metadata: CheckpointMetadata, omniglot_root: str | Path | None = None) -> HeldOutData:
    """Where the checkpoint's held-out (test) classes are, checked without reading them (cheap enough for a page).

    Read from the training data the metadata records: Omniglot alphabets listed under ``test`` (found under
    ``omniglot_root``, else the recorded root, else ``core.settings.omniglot_root``), or the ``test`` split of a
    folder dataset. Raises :class:`HeldOutDataMissing` with a one-line reason when they are not here.
    """
    if metadata.image is None:
        raise HeldOutDataMissing("this checkpoint is not an image classifier, so it has no held-out image classes")
    data = metadata.training.data if metadata.training is not None else None
    test = tuple(metadata.heldout_classes)
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
        return HeldOutData(kind, root, test, f"omniglot: {', '.join(test)}")
    if kind == "folder" and recorded_root:
        split = test[0]
        if not (Path(recorded_root) / split).is_dir():
            raise HeldOutDataMissing(f"the held-out split {Path(recorded_root) / split} is not on this machine")
        return HeldOutData(kind, Path(recorded_root), (split,), f"{Path(recorded_root).name}: {split}")
    raise HeldOutDataMissing(f"held-out data of kind {kind!r} cannot be read here (Omniglot and folders can)")


def heldout_image_set(
    metadata: CheckpointMetadata, omniglot_root: str | Path | None = None
) -> tuple[LabelledImageSet, str]:
    """The checkpoint's held-out (test) classes as an image set (:func:`find_heldout_data`), and a description of
    them in words. Raises :class:`HeldOutDataMissing` with a one-line reason when they are not here."""
    found = find_heldout_data(metadata, omniglot_root)
    spec = metadata.image
    assert spec is not None  # find_heldout_data refuses a checkpoint without an image spec
    if found.kind == "omniglot":
        image_set: LabelledImageSet = OmniglotImageSet(found.root, alphabets=list(found.classes), spec=spec,
                                                       name="omniglot-test")
    else:
        image_set = FolderImageSet(found.root, found.classes[0], spec)
    return image_set, found.described


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
