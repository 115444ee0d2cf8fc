"""EpisodeSampler: determinism, episode structure and configuration errors."""

from __future__ import annotations

import functools
import operator
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.data import EpisodeSampler, FolderImageSet, ImageSpec, LabelledImageSet
from tests.tolerances import unit_roundoff


class CodedImageSet(LabelledImageSet):
    """Synthetic set whose image (class c, item i) is filled with c * 100 + i, so content is checkable."""

    def __init__(self, items_per_class: dict[str, int]) -> None:
        super().__init__(name="coded", spec=ImageSpec(1, 2))
        self._counts = dict(items_per_class)
        self.class_names = sorted(items_per_class)

    def num_items(self, class_name: str) -> int:
        return self._counts[class_name]

    def source(self, class_name: str, index: int) -> str:
        return f"coded:{class_name}:{index}"

    def load(self, class_name: str, index: int) -> torch.Tensor:
        code = self.class_names.index(class_name) * 100 + index
        return torch.full((1, 2, 2), float(code))


def coded_set(n_classes: int = 8, items: int = 10) -> CodedImageSet:
    return CodedImageSet({f"class{c:02d}": items for c in range(n_classes)})


def assert_same_episode(a, b) -> None:
    assert torch.equal(a.support_x, b.support_x)
    assert torch.equal(a.query_x, b.query_x)
    assert torch.equal(a.support_y, b.support_y)
    assert torch.equal(a.query_y, b.query_y)
    assert a.class_names == b.class_names
    assert a.support_sources == b.support_sources and a.query_sources == b.query_sources


def test_same_seed_and_index_give_identical_episode_in_any_call_order() -> None:
    first = EpisodeSampler(coded_set(), n_way=5, k_shot=2, n_query=3, seed=7)
    second = EpisodeSampler(coded_set(), n_way=5, k_shot=2, n_query=3, seed=7)
    forward = [first.episode(i) for i in range(4)]
    backward = [second.episode(i) for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward):
        assert_same_episode(a, b)
    assert_same_episode(first.episode(2), forward[2])  # repeated calls do not advance any shared state


def test_different_index_or_seed_gives_different_episodes() -> None:
    sampler = EpisodeSampler(coded_set(), n_way=5, k_shot=1, n_query=2, seed=0)
    sources = {tuple(sampler.episode(i).support_sources + sampler.episode(i).query_sources) for i in range(10)}
    assert len(sources) == 10
    other_seed = EpisodeSampler(coded_set(), n_way=5, k_shot=1, n_query=2, seed=1)
    assert other_seed.episode(0).query_sources != sampler.episode(0).query_sources


def test_episode_structure() -> None:
    image_set = coded_set(n_classes=8, items=10)
    sampler = EpisodeSampler(image_set, n_way=4, k_shot=3, n_query=5, seed=3)
    for episode in sampler.episodes(5, start=10):
        assert episode.support_x.shape == (12, 1, 2, 2)
        assert episode.query_x.shape == (20, 1, 2, 2)
        assert episode.support_y.dtype == torch.int64
        assert episode.support_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert episode.query_y.tolist() == functools.reduce(operator.iadd, ([label] * 5 for label in range(4)), [])
        assert episode.shots_per_class == [3, 3, 3, 3]
        assert len(set(episode.class_names)) == 4
        # Support and query never share an image.
        assert not set(episode.support_sources) & set(episode.query_sources)
        assert len(set(episode.support_sources + episode.query_sources)) == 32
        # Every image belongs to the class its label names.
        for images, labels, sources in (
            (episode.support_x, episode.support_y, episode.support_sources),
            (episode.query_x, episode.query_y, episode.query_sources),
        ):
            for image, label, source in zip(images, labels.tolist(), sources):
                class_name = episode.class_names[label]
                assert source.startswith(f"coded:{class_name}:")
                assert int(image[0, 0, 0]) // 100 == image_set.class_names.index(class_name)
        assert episode.provenance == {
            "dataset": "coded", "seed": 3, "index": episode.provenance["index"],
            "n_way": 4, "k_shot": 3, "n_query": 5,
        }
    assert [e.provenance["index"] for e in sampler.episodes(3, start=10)] == [10, 11, 12]


def test_iteration_yields_consecutive_episodes() -> None:
    sampler = EpisodeSampler(coded_set(), n_way=2, k_shot=1, n_query=1)
    iterator = iter(sampler)
    for index in range(3):
        assert_same_episode(next(iterator), sampler.episode(index))


def test_all_items_used_when_class_has_exactly_enough() -> None:
    sampler = EpisodeSampler(coded_set(n_classes=3, items=4), n_way=3, k_shot=1, n_query=3)
    episode = sampler.episode(0)
    assert len(set(episode.support_sources + episode.query_sources)) == 12


def test_too_few_images_names_the_classes_and_counts() -> None:
    image_set = CodedImageSet({"ample": 10, "tiny": 2, "small": 3, "other": 10})
    with pytest.raises(ValueError, match=r"'small' has 3.*'tiny' has 2") as error:
        EpisodeSampler(image_set, n_way=2, k_shot=1, n_query=3)
    assert "ample" not in str(error.value)


def test_more_ways_than_classes_says_how_many_there_are() -> None:
    with pytest.raises(ValueError, match="has 3 classes.*5-way"):
        EpisodeSampler(coded_set(n_classes=3), n_way=5, k_shot=1, n_query=1)


@pytest.mark.parametrize(
    "n_way, k_shot, n_query, fragment",
    [(1, 1, 1, "n_way"), (2, 0, 1, "k_shot"), (2, 1, 0, "n_query")],
)
def test_invalid_configuration(n_way: int, k_shot: int, n_query: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        EpisodeSampler(coded_set(), n_way=n_way, k_shot=k_shot, n_query=n_query)


def test_negative_index_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        EpisodeSampler(coded_set(), n_way=2, k_shot=1, n_query=1).episode(-1)


def test_file_backed_set_caches_and_pickles(tmp_path: Path) -> None:
    for c in range(3):
        (tmp_path / f"c{c}").mkdir()
        for i in range(3):
            Image.new("L", (8, 8), 40 * c + i).save(tmp_path / f"c{c}" / f"{i}.png")
    image_set = FolderImageSet(tmp_path, split=None, spec=ImageSpec(1, 4))
    first = image_set.load("c1", 2)
    assert image_set.load("c1", 2) is first  # served from the cache, not decoded again
    assert float(first[0, 0, 0]) == pytest.approx(42 / 255, rel=unit_roundoff(torch.float32), abs=0)  # one float32 rounding
    clone = pickle.loads(pickle.dumps(image_set))  # e.g. DataLoader workers
    assert torch.equal(clone.load("c1", 2), first)
    episode = EpisodeSampler(clone, n_way=3, k_shot=1, n_query=2, seed=5).episode(0)
    for image, label in zip(episode.query_x, episode.query_y.tolist()):
        class_index = int(episode.class_names[label][1:])
        assert round(float(image[0, 0, 0]) * 255) // 40 == class_index
