"""The catalog: where checkpoints are looked for, what is listed (and what not), manifests, hashes, the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.checkpoint import (
    CheckpointError,
    Manifest,
    ManifestEntry,
    default_checkpoint,
    find_checkpoints,
    is_default_checkpoint,
    load_learner,
    read_manifest,
    search_dirs,
    verify_shipped,
    write_manifest,
)
from core.checkpoint.format import write_file
from core.settings import RUNS_DIR, SHIPPED_CHECKPOINT_DIR
from tests.app.builders import save_tiny_checkpoint


def _listed(path: Path, default: bool = False) -> None:
    """List ``path`` in the manifest beside it with its current hash."""
    from core.checkpoint import file_sha256

    manifest = read_manifest(path.parent)
    manifest.checkpoints[path.name] = ManifestEntry(sha256=file_sha256(path), bytes=path.stat().st_size,
                                                    title=path.stem, backbone="conv4", rule="alfa")
    if default:
        manifest.default = path.name
    write_manifest(path.parent, manifest)


def test_the_manifest_round_trips_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) == Manifest(default=None, checkpoints={})
    manifest = Manifest(default="b.safetensors",
                        checkpoints={"b.safetensors": ManifestEntry("ab" * 32, 10, "B", "conv4", "sgd")})
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    assert json.loads((tmp_path / "MANIFEST.json").read_text())["checkpoints"]["b.safetensors"]["bytes"] == 10
    assert (tmp_path / "MANIFEST.json").stat().st_mode & 0o777 == 0o644  # readable by a container's own user
    (tmp_path / "MANIFEST.json").write_text('{"checkpoints": {"x.safetensors": {"sha256": "00"}}}')
    with pytest.raises(CheckpointError, match="MANIFEST.json cannot be read"):
        read_manifest(tmp_path)


def test_the_manifest_names_the_default(tmp_path: Path) -> None:
    write_manifest(tmp_path, Manifest(default="b.safetensors"))
    assert is_default_checkpoint(tmp_path / "b.safetensors")
    assert not is_default_checkpoint(tmp_path / "a.safetensors")
    assert not is_default_checkpoint(tmp_path / "sub" / "b.safetensors")  # another folder, no manifest
    assert default_checkpoint(tmp_path) == tmp_path / "b.safetensors"


def test_no_default_without_a_readable_manifest(tmp_path: Path) -> None:
    assert not is_default_checkpoint(tmp_path / "a.safetensors") and default_checkpoint(tmp_path) is None
    (tmp_path / "MANIFEST.json").write_text("{not json")
    assert not is_default_checkpoint(tmp_path / "a.safetensors")


def test_the_shipped_default_is_resnet12_alfa_maml_augmented() -> None:
    assert [p.name for p in sorted(SHIPPED_CHECKPOINT_DIR.glob("*.safetensors")) if is_default_checkpoint(p)] == [
        "resnet12_alfa_maml_augmented.safetensors"
    ]


def test_a_listed_file_with_other_bytes_is_refused_everywhere(tmp_path: Path) -> None:
    first = save_tiny_checkpoint(tmp_path / "first.safetensors", name="first")
    second = save_tiny_checkpoint(tmp_path / "second.safetensors", name="second")
    unlisted = save_tiny_checkpoint(tmp_path / "elsewhere" / "unlisted.safetensors")
    _listed(first)
    _listed(second, default=True)
    entries = find_checkpoints([tmp_path])
    # The default first, then by path (subfolders included).
    assert [(e.name, e.is_default) for e in entries] == [("second", True), ("tiny-alfa", False), ("first", False)]
    verify_shipped(unlisted)  # not listed: not checked
    load_learner(first)

    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    first.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_learner(first)
    broken = [e for e in find_checkpoints([tmp_path]) if e.error]
    assert [e.path for e in broken] == [first] and "damaged" in broken[0].error and broken[0].metadata is None


def test_files_written_beside_checkpoints_are_not_listed(tmp_path: Path) -> None:
    save_tiny_checkpoint(tmp_path / "run" / "best.safetensors")
    write_file(tmp_path / "run" / "state.safetensors", {}, {"kind": "training_state"})
    write_file(tmp_path / "run" / "pretrained.safetensors", {}, {"kind": "pretrained_backbone"})
    write_file(tmp_path / "run" / "pretrained.state.safetensors", {}, {"kind": "pretraining_state"})
    (tmp_path / "run" / "broken.safetensors").write_text("not a checkpoint")
    entries = find_checkpoints([tmp_path, tmp_path / "missing"])
    assert sorted(e.path.name for e in entries) == ["best.safetensors", "broken.safetensors"]
    broken = next(e for e in entries if e.path.name == "broken.safetensors")
    assert broken.metadata is None and "not a safetensors checkpoint" in broken.error


def test_checkpoint_search_folders_can_be_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FEWSHOT_DEFAULT_CHECKPOINT_DIRS", raising=False)
    monkeypatch.setenv("FEWSHOT_CHECKPOINT_DIRS", str(tmp_path))
    assert search_dirs() == [SHIPPED_CHECKPOINT_DIR, RUNS_DIR, tmp_path]
    monkeypatch.setenv("FEWSHOT_DEFAULT_CHECKPOINT_DIRS", "")
    assert search_dirs() == [tmp_path]
    monkeypatch.setenv("FEWSHOT_DEFAULT_CHECKPOINT_DIRS", str(tmp_path / "shipped"))
    assert search_dirs() == [tmp_path / "shipped", tmp_path]
