"""MNIST-1D few-shot protocol: generated locally (nothing downloads), the class split, shapes, seeded episodes."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from core.config import ConfigError, config_from_dict, load_config
from core.data.mnist1d import MNIST1D_LENGTH, MNIST1DSet, generate_mnist1d
from core.data.sampler import EpisodeSampler

ROOT = Path(__file__).resolve().parents[3]
SMALL = 20  # signals per digit: enough for 5-shot 15-query episodes on the train split


@pytest.fixture(scope="module")
def splits() -> dict[str, MNIST1DSet]:
    return {split: MNIST1DSet(split, samples_per_class=SMALL) for split in ("train", "val", "test")}


def test_generation_makes_no_network_access(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("MNIST-1D generation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    # Uncached, with a seed no other test uses: the generator itself runs under the patches.
    data = generate_mnist1d.__wrapped__(seed=7, samples_per_class=3)
    assert data.signals.shape == (30, MNIST1D_LENGTH)


def test_generation_is_seeded_and_leaves_the_global_generators_alone():
    python_state, numpy_state = random.getstate(), np.random.get_state()
    a = generate_mnist1d.__wrapped__(seed=3, samples_per_class=4)
    assert random.getstate() == python_state
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    b = generate_mnist1d.__wrapped__(seed=3, samples_per_class=4)
    c = generate_mnist1d.__wrapped__(seed=4, samples_per_class=4)
    assert np.array_equal(a.signals, b.signals) and np.array_equal(a.digits, b.digits)
    assert not np.array_equal(a.signals, c.signals)
    # make_dataset draws the same number of signals of every digit.
    assert np.bincount(a.digits, minlength=10).tolist() == [4] * 10


def test_splits_hold_the_protocols_digits_and_share_no_signal(splits):
    assert splits["train"].class_names == ["0", "1", "2", "3", "4"]
    assert splits["val"].class_names == splits["test"].class_names == ["5", "6", "7", "8", "9"]
    # A fifth of each held-out digit's 20 signals validate, the other 16 test; the train digits keep all 20.
    assert [splits["val"].num_items(c) for c in splits["val"].class_names] == [4] * 5
    assert [splits["test"].num_items(c) for c in splits["test"].class_names] == [16] * 5
    assert [splits["train"].num_items(c) for c in splits["train"].class_names] == [SMALL] * 5
    data = generate_mnist1d(samples_per_class=SMALL)
    rows = {}
    for split, image_set in splits.items():
        rows[split] = {
            int(image_set.source(c, i).rpartition(":")[2])
            for c in image_set.class_names
            for i in range(image_set.num_items(c))
        }
        # Every signal of a class is a signal of that digit.
        for c in image_set.class_names:
            digits = {
                int(data.digits[int(image_set.source(c, i).rpartition(":")[2])]) for i in range(image_set.num_items(c))
            }
            assert digits == {int(c)}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    assert len(rows["train"] | rows["val"] | rows["test"]) == 10 * SMALL


def test_items_are_one_channel_signals_of_length_40(splits):
    signal = splits["test"].load("7", 0)
    assert signal.shape == (1, MNIST1D_LENGTH) and signal.dtype == torch.float32
    row = int(splits["test"].source("7", 0).rpartition(":")[2])
    assert torch.equal(signal[0], torch.tensor(generate_mnist1d(samples_per_class=SMALL).signals[row]))


def test_episodes_are_pure_in_seed_and_index_with_permuted_labels(splits):
    sampler = EpisodeSampler(splits["train"], n_way=5, k_shot=2, n_query=3, seed=11)
    episode = sampler.episode(4)
    assert episode.support_x.shape == (10, 1, MNIST1D_LENGTH) and episode.query_x.shape == (15, 1, MNIST1D_LENGTH)
    assert episode.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert sorted(episode.class_names) == ["0", "1", "2", "3", "4"]
    again = EpisodeSampler(splits["train"], n_way=5, k_shot=2, n_query=3, seed=11).episode(4)
    assert torch.equal(episode.support_x, again.support_x) and episode.query_sources == again.query_sources
    # Label k is the k-th digit drawn: over episodes the five digits take every label in turn.
    orders = {tuple(sampler.episode(i).class_names) for i in range(20)}
    assert len(orders) > 1
    data = generate_mnist1d(samples_per_class=SMALL)
    for label, source in zip(episode.support_y.tolist(), episode.support_sources):
        assert str(data.digits[int(source.rpartition(":")[2])]) == episode.class_names[label]


def test_a_split_name_outside_the_protocol_is_refused():
    with pytest.raises(ValueError, match="split must be one of train, val, test, not 'holdout'"):
        MNIST1DSet("holdout", samples_per_class=SMALL)


def _raw(**data) -> dict:
    base = {"kind": "mnist1d", "image_size": 40, "channels": 1, "invert": False, "train": ["train"], "val": ["val"]}
    return {"data": {**base, **data}, "model": {"backbone": {"name": "conv1d", "channels": 8}}}


def test_every_shipped_mnist1d_config_loads_with_a_one_channel_length_40_network():
    paths = sorted((ROOT / "configs" / "mnist1d").glob("*.toml"))
    assert {p.stem for p in paths} == {
        f"conv1d_{e}" for e in ("maml", "fomaml", "reptile", "imaml", "fo_b_maml", "fo_b_maml_sym")
    }
    configs = [load_config(p) for p in paths]
    assert {c.meta.proximal_lambda for c in configs} == {1.0}  # the same objective for every estimator
    assert {c.meta.iterations for c in configs} == {configs[0].meta.iterations}
    backbone = configs[0].backbone_config()
    assert (backbone["name"], backbone["in_channels"], backbone["length"], backbone["n_classes"]) == (
        "conv1d",
        1,
        40,
        5,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"val": ["validation"]}, r"data.val for data.kind mnist1d must be one of"),
        ({"train": []}, r'data.train for data.kind mnist1d must be \["train"\]'),
        ({"image_size": 28}, "one channel of length 40"),
        ({"channels": 3, "mean": [0, 0, 0], "std": [1, 1, 1]}, "one channel of length 40"),
        ({"augment": {"rotation": 10}}, "MNIST-1D signals have none"),
    ],
)
def test_config_refuses_what_the_protocol_does_not_define(data, message):
    config_from_dict(_raw())  # the base is valid
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_raw(**data))
