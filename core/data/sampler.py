"""Labelled image collections and the deterministic N-way K-shot episode sampler over them."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from core.data.images import ImageSpec, decode_image
from core.data.task import Task

__all__ = ["EpisodeSampler", "LabelledImageSet"]


class LabelledImageSet(ABC):
    """A set of images grouped by class, addressed as ``(class_name, index)``.

    Subclasses set ``name``, ``class_names`` (sorted, so episode sampling does not depend on directory
    listing order) and ``spec``, and implement :meth:`num_items` and :meth:`source`. A set whose classes come
    in groups (Omniglot's characters in alphabets) names what a group is in ``group_kind`` and overrides
    :meth:`group_of`; by default all classes form one group named after the set. The default
    :meth:`load` decodes ``source(...)`` as a file path and keeps decoded tensors in a per-instance LRU
    cache of ``cache_size`` entries (``None``: unbounded). Returned tensors are shared with the cache:
    do not modify them in place.
    """

    name: str
    class_names: list[str]
    spec: ImageSpec
    group_kind: str | None = None  # what one group of classes is ("alphabet"); None: the set has one group

    def __init__(self, name: str, spec: ImageSpec, cache_size: int | None = None) -> None:
        self.name = name
        self.spec = spec
        self.class_names = []
        self._cache_size = cache_size
        self._make_cache()

    def _make_cache(self) -> None:
        # Per instance (not a method decorator) so the cache dies with the set and sets do not share it.
        self._decode_file = functools.lru_cache(maxsize=self._cache_size)(self._decode_file_uncached)

    def __getstate__(self) -> dict[str, object]:
        # The cache cannot be pickled (e.g. for DataLoader workers); each copy starts with an empty one.
        state = dict(self.__dict__)
        del state["_decode_file"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._make_cache()

    @abstractmethod
    def num_items(self, class_name: str) -> int:
        """Number of images in ``class_name``."""

    @abstractmethod
    def source(self, class_name: str, index: int) -> str:
        """Where image ``index`` of ``class_name`` comes from (a file path or identifier)."""

    def group_of(self, class_name: str) -> str:
        """The group ``class_name`` belongs to; by default the set's name (one group for every class)."""
        return self.name

    def groups(self) -> dict[str, list[str]]:
        """Group -> its classes (in ``class_names`` order), groups sorted by name."""
        members: dict[str, list[str]] = {}
        for class_name in self.class_names:
            members.setdefault(self.group_of(class_name), []).append(class_name)
        return dict(sorted(members.items()))

    def load(self, class_name: str, index: int) -> torch.Tensor:
        """Image ``index`` of ``class_name`` as a ``[C, H, W]`` float32 tensor, decoded per ``spec``."""
        return self._decode_file(self.source(class_name, index))

    def _decode_file_uncached(self, path: str) -> torch.Tensor:
        return decode_image(Path(path), self.spec)

    def __len__(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, classes={len(self.class_names)})"


class EpisodeSampler:
    """Samples N-way K-shot episodes from a :class:`LabelledImageSet`, deterministically.

    Task ``index`` is a pure function of ``(seed, index)`` (its own ``numpy`` generator seeded with
    both), so episodes can be regenerated in any order, in parallel, or after a restart. Each episode picks
    ``n_way`` distinct classes, labelled 0..n_way-1 in the order picked, and ``k_shot + n_query`` distinct
    images per class: the first ``k_shot`` go to the support set, the rest to the query set, so the two
    never share an image. Support and query are ordered class by class.

    ``within_group`` makes every episode's classes come from one group of the set (:meth:`LabelledImageSet.group_of`;
    for Omniglot one alphabet: Lake et al.'s harder within-alphabet protocol, whose classes look alike): the
    episode first picks one of the groups that have at least ``n_way`` classes, each equally likely, then
    ``n_way`` distinct classes of it, from the same generator. Off (the default), episodes are those of a
    sampler without the option, bit for bit.
    """

    def __init__(
        self,
        image_set: LabelledImageSet,
        n_way: int,
        k_shot: int,
        n_query: int,
        seed: int = 0,
        within_group: bool = False,
    ) -> None:
        if n_way < 2:
            raise ValueError(f"n_way must be at least 2 (a 1-way task has nothing to classify), got {n_way}")
        if k_shot < 1:
            raise ValueError(f"k_shot must be at least 1, got {k_shot}")
        if n_query < 1:
            raise ValueError(f"n_query must be at least 1, got {n_query}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        n_classes = len(image_set.class_names)
        if n_classes < n_way:
            raise ValueError(
                f"{image_set.name!r} has {n_classes} classes, too few for {n_way}-way episodes"
            )
        needed = k_shot + n_query
        # Checked once over every class so a bad class is reported up front, not at a random episode.
        short = [
            (class_name, count)
            for class_name in image_set.class_names
            if (count := image_set.num_items(class_name)) < needed
        ]
        if short:
            listed = ", ".join(f"{class_name!r} has {count}" for class_name, count in short[:10])
            more = f" (and {len(short) - 10} more)" if len(short) > 10 else ""
            raise ValueError(
                f"{image_set.name!r}: {len(short)} class(es) have fewer than k_shot + n_query = {needed} "
                f"images: {listed}{more}"
            )
        self.image_set = image_set
        self.n_way = n_way
        self.k_shot = k_shot
        self.n_query = n_query
        self.seed = seed
        self.within_group = within_group
        # Found once, so each episode picks among the groups with n_way classes or more without regrouping the set.
        self._eligible_groups: dict[str, list[str]] = {}
        if within_group:
            groups = image_set.groups()
            self._eligible_groups = {group: names for group, names in groups.items() if len(names) >= n_way}
            if not self._eligible_groups:
                kind = image_set.group_kind or "group"
                counts = ", ".join(f"{group!r} has {len(names)}" for group, names in groups.items())
                raise ValueError(
                    f"{image_set.name!r}: no {kind} has the {n_way} classes a within-{kind} {n_way}-way episode "
                    f"needs; classes per {kind}: {counts}"
                )

    def episode(self, index: int) -> Task:
        """Task number ``index`` (>= 0); identical for the same ``seed`` and ``index``."""
        if index < 0:
            raise ValueError(f"episode index must be non-negative, got {index}")
        rng = np.random.default_rng([self.seed, index])
        provenance_group: dict[str, object] = {}
        if self.within_group:
            names = list(self._eligible_groups)
            group = names[int(rng.integers(len(names)))]
            candidates = self._eligible_groups[group]
            provenance_group = {"within_group": True, "group": group}
        else:
            candidates = self.image_set.class_names
        chosen = [candidates[i] for i in rng.choice(len(candidates), size=self.n_way, replace=False)]

        support_images: list[torch.Tensor] = []
        query_images: list[torch.Tensor] = []
        support_sources: list[str] = []
        query_sources: list[str] = []
        for class_name in chosen:
            picks = rng.choice(
                self.image_set.num_items(class_name), size=self.k_shot + self.n_query, replace=False
            )
            for position, item in enumerate(picks.tolist()):
                is_support = position < self.k_shot
                (support_images if is_support else query_images).append(self.image_set.load(class_name, item))
                (support_sources if is_support else query_sources).append(self.image_set.source(class_name, item))

        labels = torch.arange(self.n_way, dtype=torch.int64)
        return Task(
            support_x=torch.stack(support_images),
            support_y=labels.repeat_interleave(self.k_shot),
            query_x=torch.stack(query_images),
            query_y=labels.repeat_interleave(self.n_query),
            class_names=chosen,
            support_sources=support_sources,
            query_sources=query_sources,
            provenance={
                "dataset": self.image_set.name,
                "seed": self.seed,
                "index": index,
                "n_way": self.n_way,
                "k_shot": self.k_shot,
                "n_query": self.n_query,
                **provenance_group,
            },
        )

    def episodes(self, count: int, start: int = 0) -> Iterator[Task]:
        """Episodes ``start, start + 1, ..., start + count - 1``."""
        for index in range(start, start + count):
            yield self.episode(index)

    def __iter__(self) -> Iterator[Task]:
        """Episodes 0, 1, 2, ... without end."""
        index = 0
        while True:
            yield self.episode(index)
            index += 1
