"""Packaging checkpoints for shipping: held-out measurements, the manifest, hash checks on load, the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.checkpoints import find_checkpoints
from core.cli import main
from core.model_io import load_learner
from core.shipping import SETTINGS, measure_heldout, package, read_manifest, verify_shipped
from models.checkpoint import CheckpointError, read_metadata
from tests.app.builders import save_tiny_checkpoint
from tests.core.test_cli import _config

RESULT = {"rule": "alfa", "way": 5, "shot": 1, "head_init": "learned", "episodes": 600, "accuracy": 0.9, "ci95": 0.01}


def test_package_writes_manifest_and_a_changed_file_is_refused(tmp_path):
    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")
    shipped = tmp_path / "shipped"
    first = package(source, shipped, "first", "First", [RESULT])
    second = package(source, shipped, "second", "Second", [RESULT], half_precision=True, default=True)
    manifest = read_manifest(shipped)
    assert manifest["default"] == "second.safetensors"
    assert set(manifest["checkpoints"]) == {"first.safetensors", "second.safetensors"}
    assert manifest["checkpoints"]["first.safetensors"]["bytes"] == first.stat().st_size
    assert second.stat().st_size < first.stat().st_size  # half precision
    metadata = read_metadata(first)
    assert metadata["name"] == "first" and metadata["heldout"]["results"] == [RESULT]
    assert metadata["shipped"]["title"] == "First" and len(metadata["shipped"]["source_sha256"]) == 64

    # The manifest default is listed first.
    assert [e.name for e in find_checkpoints([shipped])] == ["second", "first"]
    load_learner(first)
    verify_shipped(source)  # not shipped: not checked

    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    first.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_learner(first)
    broken = [e for e in find_checkpoints([shipped]) if e.error]
    assert [e.path for e in broken] == [first] and "damaged" in broken[0].error


def test_cli_uses_the_shipped_default(tmp_path, monkeypatch, capsys):
    import core.cli

    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")
    package(source, tmp_path / "shipped", "tiny-default", "Tiny", [RESULT], default=True)
    monkeypatch.setattr(core.cli, "DEFAULT_CHECKPOINT_DIR", tmp_path / "shipped")
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny-default"
    monkeypatch.setattr(core.cli, "DEFAULT_CHECKPOINT_DIR", tmp_path / "nothing")
    assert main(["info"]) == 2
    assert "pass --checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_heldout_measurement_covers_every_rule_and_setting(tmp_path, real_omniglot, capsys):
    config = _config(tmp_path, real_omniglot, rule="alfa", iterations=2)
    config.write_text(config.read_text().replace('test = ["Tagalog"]', 'test = ["Korean"]'))  # 40 classes: 20-way works
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    capsys.readouterr()
    trained = tmp_path / "run" / "best.safetensors"
    earlier = [{"rule": "sgd", "way": 5, "shot": 1, "head_init": "prototype", "episodes": 3, "accuracy": 0.5,
                "ci95": 0.1, "seconds": 1.0, "source": "earlier.json"}]
    rows = measure_heldout(trained, ["alfa", "sgd"], episodes=3, reuse=earlier, log=lambda line: None)
    assert [(r["rule"], r["way"], r["shot"]) for r in rows] == [(rule, w, s) for rule in ("alfa", "sgd") for w, s in SETTINGS]
    # Trained 3-way with a learned head: other class counts get zero heads for ALFA, prototypes for SGD.
    assert {r["head_init"] for r in rows if r["rule"] == "alfa"} == {"zero"}
    assert {r["head_init"] for r in rows if r["rule"] == "sgd"} == {"prototype"}
    reused = [r for r in rows if "reused_from" in r]
    assert len(reused) == 1 and reused[0]["accuracy"] == 0.5 and reused[0]["way"] == 5 and reused[0]["shot"] == 1
    assert all(0 <= r["accuracy"] <= 1 and r["episodes"] == 3 and r["n_query"] == 15 for r in rows)

    # Through the CLI, into a shipped folder.
    out = tmp_path / "assets"
    command = ["package", "--checkpoint", str(trained), "--name", "tiny", "--title", "Tiny", "--out", str(out),
               "--episodes", "2", "--default", "--cache-dir", str(tmp_path / "cache")]
    assert main(command) == 0
    shipped = json.loads(capsys.readouterr().out)
    # Packaging again (e.g. after an interruption) takes every measurement from the cache of this file's hash.
    assert main(command) == 0
    again = json.loads(capsys.readouterr().out)
    assert all(r["reused_from"].endswith(".jsonl") for r in again["results"])
    assert [r["accuracy"] for r in again["results"]] == [r["accuracy"] for r in shipped["results"]]
    assert Path(shipped["file"]) == out / "tiny.safetensors" and len(shipped["results"]) == 6
    assert read_manifest(out)["default"] == "tiny.safetensors"
    assert read_metadata(out / "tiny.safetensors")["heldout"]["classes"] == ["Korean"]


def test_an_absolute_entry_point_in_the_recorded_command_is_shipped_as_python_m_core(tmp_path):
    from models.checkpoint import load_checkpoint, save_checkpoint

    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")
    tensors, metadata = load_checkpoint(source)
    recorded = "/home/someone/repo/core/__main__.py train --config configs/x.toml --resume"
    metadata["training"] = {**(metadata.get("training") or {}), "command": recorded}
    save_checkpoint(source, tensors, metadata)
    shipped = read_metadata(package(source, tmp_path / "shipped", "x", "X", [RESULT]))
    assert shipped["training"]["command"] == "python -m core train --config configs/x.toml --resume"
    assert shipped["training"]["command_as_recorded"] == recorded
