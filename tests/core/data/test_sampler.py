"""EpisodeSampler: determinism, episode structure and configuration errors."""

from __future__ import annotations

import functools
import operator
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import EpisodeSampler, FolderImageSet, ImageSpec, LabelledImageSet, OmniglotImageSet
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


# ----- within-group episodes (Lake et al.'s within-alphabet protocol) ---------------------------------------------


class AlphabetCodedSet(CodedImageSet):
    """A coded set whose classes ``Alphabet/characterNN`` are grouped by alphabet, as Omniglot's are."""

    group_kind = "alphabet"

    def __init__(self, characters_per_alphabet: dict[str, int], items: int = 10) -> None:
        super().__init__({
            f"{alphabet}/character{c:02d}": items
            for alphabet, count in characters_per_alphabet.items()
            for c in range(count)
        })

    def group_of(self, class_name: str) -> str:
        return class_name.split("/", 1)[0]


def _episode_as_before(image_set: LabelledImageSet, n_way: int, k_shot: int, n_query: int, seed: int, index: int):
    """The sampler's episode as it was written before groups existed: classes, image picks, tensors."""
    rng = np.random.default_rng([seed, index])
    chosen = [image_set.class_names[i] for i in rng.choice(len(image_set.class_names), size=n_way, replace=False)]
    support, query, support_sources, query_sources = [], [], [], []
    for class_name in chosen:
        picks = rng.choice(image_set.num_items(class_name), size=k_shot + n_query, replace=False).tolist()
        support += [image_set.load(class_name, i) for i in picks[:k_shot]]
        query += [image_set.load(class_name, i) for i in picks[k_shot:]]
        support_sources += [image_set.source(class_name, i) for i in picks[:k_shot]]
        query_sources += [image_set.source(class_name, i) for i in picks[k_shot:]]
    return chosen, torch.stack(support), torch.stack(query), support_sources, query_sources


def test_without_the_option_episodes_are_those_of_before_bit_for_bit() -> None:
    image_set = coded_set(n_classes=12, items=10)
    default = EpisodeSampler(image_set, n_way=5, k_shot=1, n_query=2, seed=7)
    explicit = EpisodeSampler(image_set, n_way=5, k_shot=1, n_query=2, seed=7, within_group=False)
    # Recorded with the sampler before the option existed.
    recorded = [
        ["class05", "class06", "class07", "class11", "class09"],
        ["class09", "class08", "class01", "class03", "class06"],
        ["class02", "class08", "class04", "class01", "class05"],
    ]
    assert [default.episode(i).class_names for i in range(3)] == recorded
    assert default.episode(0).support_sources == [
        "coded:class05:8", "coded:class06:7", "coded:class07:9", "coded:class11:9", "coded:class09:4",
    ]
    grouped = AlphabetCodedSet({"Greek": 6, "Latin": 9})  # groups exist, the option is off: they play no part
    for images, n_way, k_shot, n_query in ((image_set, 5, 1, 2), (grouped, 4, 2, 3)):
        sampler = EpisodeSampler(images, n_way, k_shot, n_query, seed=7)
        for index in range(6):
            episode = sampler.episode(index)
            chosen, support, query, support_sources, query_sources = _episode_as_before(
                images, n_way, k_shot, n_query, 7, index
            )
            assert episode.class_names == chosen
            assert torch.equal(episode.support_x, support) and torch.equal(episode.query_x, query)
            assert episode.support_sources == support_sources and episode.query_sources == query_sources
            assert "within_group" not in episode.provenance and "group" not in episode.provenance
    for index in range(6):
        assert_same_episode(default.episode(index), explicit.episode(index))


def test_within_group_episodes_take_all_their_classes_from_one_group_with_enough_of_them() -> None:
    image_set = AlphabetCodedSet({"Greek": 6, "Latin": 9, "Runic": 3})
    sampler = EpisodeSampler(image_set, n_way=5, k_shot=1, n_query=2, seed=1, within_group=True)
    seen = set()
    for episode in sampler.episodes(60):
        alphabets = {image_set.group_of(name) for name in episode.class_names}
        assert len(alphabets) == 1 and len(set(episode.class_names)) == 5
        (alphabet,) = alphabets
        assert episode.provenance["within_group"] is True and episode.provenance["group"] == alphabet
        # Labels, images and sources still follow the chosen classes.
        for image, label, source in zip(episode.query_x, episode.query_y.tolist(), episode.query_sources):
            class_name = episode.class_names[label]
            assert source.startswith(f"coded:{class_name}:")
            assert int(image[0, 0, 0]) // 100 == image_set.class_names.index(class_name)
        seen.add(alphabet)
    assert seen == {"Greek", "Latin"}  # Runic has 3 characters, too few for 5-way


def test_within_group_episodes_are_seeded() -> None:
    image_set = AlphabetCodedSet({"Greek": 6, "Latin": 9})
    first = EpisodeSampler(image_set, n_way=4, k_shot=1, n_query=2, seed=5, within_group=True)
    second = EpisodeSampler(AlphabetCodedSet({"Greek": 6, "Latin": 9}), n_way=4, k_shot=1, n_query=2, seed=5,
                            within_group=True)
    forward = [first.episode(i) for i in range(5)]
    backward = [second.episode(i) for i in reversed(range(5))][::-1]
    for a, b in zip(forward, backward):
        assert_same_episode(a, b)
        assert a.provenance == b.provenance
    assert len({tuple(e.support_sources) for e in forward}) == 5
    other_seed = EpisodeSampler(image_set, n_way=4, k_shot=1, n_query=2, seed=6, within_group=True)
    assert other_seed.episode(0).support_sources != forward[0].support_sources


def test_without_groups_the_whole_set_is_one_group() -> None:
    image_set = coded_set(n_classes=6)
    assert image_set.group_kind is None and image_set.group_of("class03") == "coded"
    assert image_set.groups() == {"coded": image_set.class_names}
    episode = EpisodeSampler(image_set, n_way=5, k_shot=1, n_query=1, within_group=True).episode(0)
    assert episode.provenance["group"] == "coded"


def test_within_group_with_no_group_large_enough_says_which_groups_have_how_many() -> None:
    image_set = AlphabetCodedSet({"Latin": 3, "Greek": 2})
    message = (
        r"'coded': no alphabet has the 4 classes a within-alphabet 4-way episode needs; "
        r"classes per alphabet: 'Greek' has 2, 'Latin' has 3"
    )
    with pytest.raises(ValueError, match=message):
        EpisodeSampler(image_set, n_way=4, k_shot=1, n_query=1, within_group=True)
    EpisodeSampler(image_set, n_way=4, k_shot=1, n_query=1)  # across alphabets there are 5 classes
    with pytest.raises(ValueError, match="no group has the 7 classes a within-group 7-way"):
        EpisodeSampler(_UngroupedPair(), n_way=7, k_shot=1, n_query=1, within_group=True)


class _UngroupedPair(CodedImageSet):
    """Two groups of 4 classes, without a name for what a group is."""

    def __init__(self) -> None:
        super().__init__({f"{group}{c}": 5 for group in "ab" for c in range(4)})

    def group_of(self, class_name: str) -> str:
        return class_name[0]


def test_real_omniglot_20_way_within_alphabet_episodes_come_only_from_katakana(real_omniglot) -> None:
    """Of the held-out alphabets, Japanese_(katakana) has 47 characters and Tagalog 17: only the first can fill a
    20-way within-alphabet episode; 10-way episodes come from both."""
    held_out = OmniglotImageSet(real_omniglot, alphabets=["Japanese_(katakana)", "Tagalog"])
    assert held_out.group_kind == "alphabet"
    assert {alphabet: len(names) for alphabet, names in held_out.groups().items()} == {
        "Japanese_(katakana)": 47, "Tagalog": 17,
    }
    sampler = EpisodeSampler(held_out, n_way=20, k_shot=1, n_query=1, seed=0, within_group=True)
    for episode in sampler.episodes(12):
        assert {name.split("/", 1)[0] for name in episode.class_names} == {"Japanese_(katakana)"}
        assert episode.provenance["group"] == "Japanese_(katakana)" and len(set(episode.class_names)) == 20
    ten_way = EpisodeSampler(held_out, n_way=10, k_shot=1, n_query=1, seed=0, within_group=True)
    groups = [ten_way.episode(i).provenance["group"] for i in range(20)]
    assert set(groups) == {"Japanese_(katakana)", "Tagalog"}
    with pytest.raises(ValueError, match="'Japanese_\\(katakana\\)' has 47, 'Tagalog' has 17"):
        EpisodeSampler(held_out, n_way=48, k_shot=1, n_query=1, within_group=True)
    # A rotated character belongs to its alphabet.
    rotated = OmniglotImageSet(real_omniglot, alphabets=["Greek"], rotations=(0, 90))
    assert rotated.group_of("Greek/character01@rot90") == "Greek" and list(rotated.groups()) == ["Greek"]
    with pytest.raises(KeyError, match="no class"):
        rotated.group_of("Latin/character01")
