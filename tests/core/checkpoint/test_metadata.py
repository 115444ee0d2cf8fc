"""Typed, versioned checkpoint metadata: the shipped files parse unchanged, version 1 falls back as documented,
version 2 round-trips exactly and refuses what it does not know, newer versions ask for an update; keys added
since (adaptivity) read as "not measured" when missing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from core.checkpoint import (
    SCHEMA_VERSION,
    CheckpointError,
    InnerSteps,
    TrainingData,
    parse_metadata,
    read_manifest,
    read_metadata,
)
from core.checkpoint.format import read_header, write_file
from core.settings import SHIPPED_CHECKPOINT_DIR
from tests.app.builders import save_sine_checkpoint, save_tiny_checkpoint, synthetic_spread

SHIPPED = sorted(SHIPPED_CHECKPOINT_DIR / name for name in read_manifest(SHIPPED_CHECKPOINT_DIR).checkpoints)
# The files shipped before the metadata schema was versioned; every later one is written in the current schema.
LEGACY_SHIPPED = tuple(
    SHIPPED_CHECKPOINT_DIR / f"{name}.safetensors"
    for name in ("conv4_alfa_maml", "conv4_alfa_random", "conv4_maml", "resnet12_alfa_maml", "resnet12_alfa_random",
                 "resnet12_maml")
)
# A version-1 header as the oldest code wrote it for a model nobody trained through Trainer: only what describes
# the tensors.
MINIMAL_V1 = {"format": "fewshot-checkpoint", "format_version": 1, "backbone": {"name": "conv4", "n_classes": 5},
              "rule": {"name": "alfa", "steps": 3, "lr": 0.1}}


def _json(header: dict) -> dict:
    return json.loads(json.dumps(header))  # what a file gives back: lists, not tuples


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_file_is_a_legacy_one_or_of_the_current_schema(path: Path) -> None:
    header = read_header(path)
    if path in LEGACY_SHIPPED:
        assert "schema_version" not in header
    else:
        assert header["schema_version"] == SCHEMA_VERSION
        assert read_metadata(path).verbatim() == header


@pytest.mark.parametrize("path", LEGACY_SHIPPED, ids=lambda p: p.name)
def test_the_shipped_files_parse_as_version_1_with_what_they_record(path: Path) -> None:
    header = read_header(path)
    # Written before the schema was versioned, and never rewritten into it (record_adaptivity adds one key).
    assert "schema_version" not in header
    metadata = read_metadata(path)
    assert metadata.name == header["name"] == path.stem
    assert metadata.backbone.config == header["backbone"] and metadata.rule.config == header["rule"]
    assert (metadata.head_init, metadata.task_kind) == (header["head_init"], header["task_kind"])
    assert metadata.image is not None and metadata.image.to_dict() == header["image"]
    assert metadata.inner_steps == InnerSteps(**header["inner_steps"])
    assert list(metadata.inner_tensors) == header["inner_tensors"]
    training = header["training"]
    assert metadata.training.config == training["config"] and metadata.training.command == training["command"]
    assert metadata.training.data == TrainingData(
        kind=training["data"]["kind"], root=None, train=tuple(training["data"]["train"]),
        val=tuple(training["data"]["val"]), test=tuple(training["data"]["test"]),
        rotations=tuple(training["data"]["rotations"]),
    )
    # Recorded as the meta-gradient algorithm before estimators were registered.
    assert training["algorithm"] == "second_order" and metadata.training.estimator == "maml"
    if training["pretraining"] is None:
        assert metadata.training.pretraining is None
    else:
        assert metadata.training.pretraining.sha256 == training["pretraining"]["sha256"]
        assert metadata.training.pretraining.recipe == training["pretraining"]["recipe"]
    assert metadata.validation.mean == header["metrics"]["validation"]["mean"]
    assert [dataclasses.asdict(r) for r in metadata.heldout.results] == [
        {"reused_from": None, "protocol": "any-classes", **row} for row in header["heldout"]["results"]
    ]  # keys added since: what a row without them means
    assert metadata.shipped.title == header["shipped"]["title"]
    assert metadata.verbatim() == header  # what the run store keeps, exactly as the file holds it


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_file_written_in_the_current_schema_reads_back_the_same(path: Path) -> None:
    metadata = read_metadata(path)
    header = metadata.to_header()
    assert header["schema_version"] == SCHEMA_VERSION
    again = parse_metadata(_json(header), "rewritten")
    assert again == metadata
    assert again.to_header() == header


def test_a_trained_checkpoint_round_trips_dataclass_header_dataclass(tmp_path: Path) -> None:
    for path in (save_tiny_checkpoint(tmp_path / "tiny.safetensors"), save_sine_checkpoint(tmp_path / "sine.safetensors")):
        header = read_header(path)
        assert header["schema_version"] == SCHEMA_VERSION
        metadata = read_metadata(path)
        assert parse_metadata(_json(metadata.to_header()), "again") == metadata
        assert {k: v for k, v in header.items() if k not in ("format", "format_version")} == metadata.to_header()
    sine = read_metadata(tmp_path / "sine.safetensors")
    assert sine.task_kind == "regression" and sine.image is None and not sine.is_image_classifier


def test_version_1_falls_back_as_documented() -> None:
    metadata = parse_metadata(MINIMAL_V1, "old.safetensors", stem="old")
    assert metadata.name == "old"  # the file's stem
    assert metadata.inner_steps == InnerSteps(train=3, eval=3)  # the rule's own steps
    assert (metadata.description, metadata.head_init, metadata.task_kind) == ("", "learned", "classification")
    assert metadata.frozen_backbone is None and metadata.inner_tensors is None  # not recorded
    assert metadata.image is None and metadata.n_way is None and metadata.trained_way == 5
    assert (metadata.training, metadata.validation, metadata.heldout, metadata.shipped) == (None,) * 4
    assert metadata.code_version == "unknown"
    sgd = parse_metadata({**MINIMAL_V1, "rule": {"name": "sgd", "lr": 0.1}}, "old.safetensors", stem="old")
    assert sgd.inner_steps == InnerSteps(train=5, eval=5)  # no steps option: MetaConfig's default


def test_version_1_training_records_fall_back_field_by_field() -> None:
    training = {"command": "python -m core train --config x.toml", "algorithm": "first_order",
                "data": {"kind": "sine", "root": "(default)"}, "extra": "kept"}
    metadata = parse_metadata({**MINIMAL_V1, "training": training, "metrics": {}}, "old", stem="old")
    record = metadata.training
    assert record.estimator == "fomaml" and record.config is None and record.iterations is None
    assert record.data == TrainingData(kind="sine", root=None) and record.pretraining is None
    assert metadata.header["training"]["extra"] == "kept"  # unknown version-1 keys stay in the header
    with pytest.raises(CheckpointError, match="'training.algorithm' must be one of second_order, first_order"):
        parse_metadata({**MINIMAL_V1, "training": {**training, "algorithm": "third_order"}}, "old", stem="old")
    with pytest.raises(CheckpointError, match="old: metadata lacks 'backbone'"):
        parse_metadata({k: v for k, v in MINIMAL_V1.items() if k != "backbone"}, "old", stem="old")


def test_version_2_refuses_missing_unknown_and_mistyped_fields(tmp_path: Path) -> None:
    header = _json(read_metadata(save_tiny_checkpoint(tmp_path / "tiny.safetensors")).to_header())
    with pytest.raises(CheckpointError, match="x: metadata lacks 'description'"):
        parse_metadata({k: v for k, v in header.items() if k != "description"}, "x")
    with pytest.raises(CheckpointError, match="unknown field\\(s\\) surprise"):
        parse_metadata({**header, "surprise": 1}, "x")
    with pytest.raises(CheckpointError, match="unknown field\\(s\\) extra"):
        parse_metadata({**header, "training": {**header["training"], "extra": 1}}, "x")
    with pytest.raises(CheckpointError, match="'training.iterations' must be a whole number, found '1'"):
        parse_metadata({**header, "training": {**header["training"], "iterations": "1"}}, "x")
    with pytest.raises(CheckpointError, match="'n_way' must be a whole number, found True"):
        parse_metadata({**header, "n_way": True}, "x")
    with pytest.raises(CheckpointError, match="'image' is not an image spec"):
        parse_metadata({**header, "image": {"channels": 2, "size": 28}}, "x")
    with pytest.raises(CheckpointError, match="'rule.name' must be a non-empty string"):
        parse_metadata({**header, "rule": {"lr": 0.1}}, "x")


def test_a_newer_schema_asks_for_an_update(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    header = read_header(path)
    newer = write_file(tmp_path / "newer.safetensors", {}, {**header, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(CheckpointError, match=f"newer.safetensors: .*schema version {SCHEMA_VERSION + 1} is newer "
                                              "than this code understands.*update the tool"):
        read_metadata(newer)
    with pytest.raises(CheckpointError, match="schema_version must be a whole number"):
        parse_metadata({**header, "schema_version": "2"}, "x")


def test_files_training_writes_beside_checkpoints_are_not_checkpoints(tmp_path: Path) -> None:
    state = write_file(tmp_path / "state.safetensors", {}, {"kind": "training_state", "iteration": 1})
    with pytest.raises(CheckpointError, match="is a training_state file written by training"):
        read_metadata(state)


def test_adaptivity_round_trips_and_reads_as_not_measured_where_missing(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    metadata = read_metadata(path)
    assert metadata.adaptivity is None and read_header(path)["adaptivity"] is None  # written, as "not measured"
    spread = synthetic_spread(metadata.inner_tensors, episode_effect=0.01)
    measured = read_metadata(save_tiny_checkpoint(tmp_path / "measured.safetensors", adaptivity=spread))
    assert measured.adaptivity == spread and measured == dataclasses.replace(metadata, adaptivity=spread)
    assert parse_metadata(_json(measured.to_header()), "again") == measured
    # A version-2 file written before the key existed, and a version-1 file: not measured.
    before = {k: v for k, v in _json(metadata.to_header()).items() if k != "adaptivity"}
    assert parse_metadata(before, "x").adaptivity is None
    assert parse_metadata(MINIMAL_V1, "old", stem="old").adaptivity is None
    # A version-1 header with the key added beside the others (record_adaptivity on a shipped file) reads it.
    assert parse_metadata({**MINIMAL_V1, "adaptivity": spread.to_dict()}, "old", stem="old").adaptivity == spread


def test_a_malformed_adaptivity_section_is_a_clear_error(tmp_path: Path) -> None:
    header = _json(read_metadata(save_tiny_checkpoint(tmp_path / "tiny.safetensors")).to_header())
    good = _json(synthetic_spread(["w"]).to_dict())
    layer = good["layers"][0]
    wrong = {
        "steps must be a whole number, found '3'": {**good, "steps": "3"},
        "seed is missing": {k: v for k, v in good.items() if k != "seed"},
        "has unknown field\\(s\\) surprise": {**good, "surprise": 1},
        "accuracies must hold 4 values, found 3": {**good, "accuracies": [0.5] * 3},
        "layers\\[0\\].alpha.mean must hold 3 values, found 2": {
            **good, "layers": [{**layer, "alpha": {**layer["alpha"], "mean": [0.1, 0.2]}}]},
        "layers\\[0\\].beta_shares.episode must be a finite number or null, found 'x'": {
            **good, "layers": [{**layer, "beta_shares": {**layer["beta_shares"], "episode": "x"}}]},
        "layers\\[0\\] must be a JSON object, found 1": {**good, "layers": [1]},
        "the spread must be a JSON object, found \\[\\]": [],
    }
    for message, section in wrong.items():
        with pytest.raises(CheckpointError, match="x: metadata field 'adaptivity' is not a spread of alpha/beta over "
                                                  f"episodes \\(.*{message}"):
            parse_metadata({**header, "adaptivity": section}, "x")
