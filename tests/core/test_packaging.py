"""Packaging checkpoints for shipping: held-out measurements, the written file and its manifest entry, the CLI;
the adaptivity figures, measured when packaging or recorded later by rewriting the header only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from core.checkpoint import (
    CheckpointError,
    HeldOutResult,
    TrainingData,
    file_sha256,
    find_checkpoints,
    load_learner,
    parse_metadata,
    read_manifest,
    read_metadata,
    save_learner,
    supported_rules,
)
from core.cli import main
from core.packaging import (
    ADAPTIVITY_EPISODES,
    ADAPTIVITY_SEED,
    SETTINGS,
    AdaptivityUnavailable,
    EarlierMeasurement,
    adaptivity_protocol,
    add_heldout_results,
    measure_heldout,
    package,
    record_adaptivity,
)
from tests.app.builders import save_tiny_checkpoint
from tests.core.checkpoint.test_format import _tensor_part
from tests.core.test_cli import _config
from tests.core.test_rule_spread import EPISODE_DEPENDENT_ALFA, omniglot_tree

RESULT = HeldOutResult(rule="alfa", way=5, shot=1, head_init="learned", episodes=600, n_query=15, seed=12345, steps=3,
                       accuracy=0.9, ci95=0.01, seconds=2.0)


def test_package_writes_the_results_and_the_manifest(tmp_path):
    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")
    shipped = tmp_path / "shipped"
    first = package(source, shipped, "first", "First", [RESULT])
    second = package(source, shipped, "second", "Second", [RESULT], half_precision=True, default=True)
    manifest = read_manifest(shipped)
    assert manifest.default == "second.safetensors"
    assert set(manifest.checkpoints) == {"first.safetensors", "second.safetensors"}
    assert manifest.checkpoints["first.safetensors"].bytes == first.stat().st_size
    assert (manifest.checkpoints["first.safetensors"].backbone, manifest.checkpoints["first.safetensors"].rule) == (
        "conv4", "alfa")
    assert second.stat().st_size < first.stat().st_size  # half precision
    metadata = read_metadata(first)
    assert metadata.name == "first" and metadata.heldout.results == (RESULT,)
    assert metadata.heldout.classes == ("Tagalog",) and "600 episodes, 15 queries per class" in metadata.heldout.protocol
    assert metadata.shipped.title == "First" and len(metadata.shipped.source_sha256) == 64
    # Everything else is the trained checkpoint's, unchanged.
    trained = read_metadata(source)
    assert dataclasses.replace(metadata, name=trained.name, heldout=None, shipped=None) == trained
    assert [e.name for e in find_checkpoints([shipped])] == ["second", "first"]  # the default first
    load_learner(first)
    load_learner(second)


def test_cli_uses_the_shipped_default(tmp_path, monkeypatch, capsys):
    import core.settings

    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")
    package(source, tmp_path / "shipped", "tiny-default", "Tiny", [RESULT], default=True)
    monkeypatch.setattr(core.settings, "SHIPPED_CHECKPOINT_DIR", tmp_path / "shipped")
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny-default"
    assert main(["info"]) == 0
    assert "name:      tiny-default" in capsys.readouterr().out
    monkeypatch.setattr(core.settings, "SHIPPED_CHECKPOINT_DIR", tmp_path / "nothing")
    assert main(["info"]) == 2
    assert "pass --checkpoint" in capsys.readouterr().err


def test_packaging_refuses_a_checkpoint_that_does_not_record_its_training_config(tmp_path, capsys):
    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")  # its training record has no config
    command = ["package", "--checkpoint", str(source), "--name", "x", "--title", "X", "--out", str(tmp_path / "out")]
    assert main(command) == 2
    assert "does not record its training config" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_heldout_measurement_covers_every_rule_and_setting(tmp_path, real_omniglot, capsys):
    config = _config(tmp_path, real_omniglot, rule="alfa", iterations=2)
    config.write_text(config.read_text().replace('test = ["Tagalog"]', 'test = ["Korean"]'))  # 40 classes: 20-way works
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    capsys.readouterr()
    trained = tmp_path / "run" / "best.safetensors"
    earlier = [EarlierMeasurement(rule="sgd", way=5, shot=1, head_init="prototype", episodes=3, accuracy=0.5,
                                  ci95=0.1, seconds=1.0, source="earlier.json")]
    rows = measure_heldout(trained, ["alfa", "sgd"], episodes=3, reuse=earlier, log=lambda line: None)
    assert [(r.rule, r.setting) for r in rows] == [(rule, s.label) for rule in ("alfa", "sgd") for s in SETTINGS]
    assert [r.protocol for r in rows[:len(SETTINGS)]] == ["any-classes"] * 3 + ["within-alphabet"]
    # Trained 3-way with a learned head: other class counts get zero heads for ALFA, prototypes for SGD.
    assert {r.head_init for r in rows if r.rule == "alfa"} == {"zero"}
    assert {r.head_init for r in rows if r.rule == "sgd"} == {"prototype"}
    reused = [r for r in rows if r.reused_from is not None]
    assert len(reused) == 1 and reused[0].accuracy == 0.5 and (reused[0].way, reused[0].shot) == (5, 1)
    assert reused[0].reused_from == "earlier.json"
    assert all(0 <= r.accuracy <= 1 and r.episodes == 3 and r.n_query == 15 for r in rows)

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
    # Every rule the checkpoint supports (its own, then the rules without meta-learned parameters), every setting.
    rules = supported_rules(read_metadata(trained))
    assert [(r["rule"], r["way"], r["shot"], r["protocol"]) for r in shipped["results"]] == [
        (rule, s.way, s.shot, s.protocol) for rule in rules for s in SETTINGS]
    assert Path(shipped["file"]) == out / "tiny.safetensors"
    assert read_manifest(out).default == "tiny.safetensors"
    assert read_metadata(out / "tiny.safetensors").heldout.classes == ("Korean",)

    # One process per rule: --measure-only fills the cache and ships nothing; packaging then reuses those rows.
    parallel_out = tmp_path / "assets-parallel"
    base = ["package", "--checkpoint", str(trained), "--name", "tiny", "--title", "Tiny", "--out", str(parallel_out),
            "--episodes", "2", "--cache-dir", str(tmp_path / "cache-parallel")]
    assert main([*base, "--measure-only", "sgd"]) == 0
    measured = json.loads(capsys.readouterr().out)["results"]
    assert [(r["rule"], r["reused_from"]) for r in measured] == [("sgd", None)] * len(SETTINGS)
    assert not parallel_out.exists()
    assert main(base) == 0
    packaged = json.loads(capsys.readouterr().out)["results"]
    assert [r["reused_from"] is not None for r in packaged] == [r["rule"] == "sgd" for r in packaged]
    assert [r["accuracy"] for r in packaged if r["rule"] == "sgd"] == [r["accuracy"] for r in measured]
    assert main([*base, "--measure-only", "meta_sgd"]) == 2
    assert "cannot adapt with meta_sgd; it supports alfa, sgd" in capsys.readouterr().err


def test_an_absolute_entry_point_in_the_recorded_command_is_shipped_as_python_m_core(tmp_path):
    source = save_tiny_checkpoint(tmp_path / "trained.safetensors")
    trained = read_metadata(source)
    recorded = "/home/someone/repo/core/__main__.py train --config configs/x.toml --resume"
    learner, _ = load_learner(source)
    save_learner(source, learner, dataclasses.replace(
        trained, training=dataclasses.replace(trained.training, command=recorded)))
    shipped = read_metadata(package(source, tmp_path / "shipped", "x", "X", [RESULT]))
    assert shipped.training.command == "python -m core train --config configs/x.toml --resume"
    assert shipped.training.command_as_recorded == recorded


def _trained_with_config(path: Path, omniglot: Path, rule: dict | None = None) -> Path:
    """The tiny checkpoint, trained 3-way 1-shot (its config says so) with Tagalog held out under ``omniglot``."""
    checkpoint = save_tiny_checkpoint(path, rule=rule or EPISODE_DEPENDENT_ALFA)
    training = read_metadata(checkpoint).training
    return save_tiny_checkpoint(path, rule=rule or EPISODE_DEPENDENT_ALFA, training=dataclasses.replace(
        training, config={"task": {"n_way": 3, "k_shot": 1, "n_query": 2}},
        data=TrainingData(kind="omniglot", root=str(omniglot), train=("Latin",), val=("Greek",), test=("Tagalog",)),
    ))


def test_package_measures_the_adaptivity_of_the_written_file(tmp_path):
    omniglot = omniglot_tree(tmp_path / "omniglot", drawings=6)
    source = _trained_with_config(tmp_path / "trained.safetensors", omniglot)
    out = package(source, tmp_path / "shipped", "tiny", "Tiny", [RESULT], half_precision=True)
    metadata = read_metadata(out)
    spread = metadata.adaptivity
    assert (spread.rule, spread.steps, spread.n_way, spread.k_shot) == ("alfa", metadata.inner_steps.eval, 3, 1)
    assert (spread.episodes, spread.seed) == (ADAPTIVITY_EPISODES, ADAPTIVITY_SEED)
    assert tuple(layer.layer for layer in spread.layers) == metadata.inner_tensors
    assert spread.largest_alpha_episode_share() > 0  # this generator reads the episode
    assert read_manifest(out.parent).checkpoints["tiny.safetensors"].sha256 == file_sha256(out)
    load_learner(out)  # the manifest's hash is the file's
    # SGD has nothing to measure: its alpha and beta are its settings.
    sgd = read_metadata(package(_trained_with_config(tmp_path / "sgd.safetensors", omniglot, {"name": "sgd"}),
                                tmp_path / "shipped", "sgd", "SGD", [RESULT]))
    assert adaptivity_protocol(sgd) is None and sgd.adaptivity is None
    with pytest.raises(AdaptivityUnavailable, match="no meta-learned parameters"):
        record_adaptivity(tmp_path / "shipped" / "sgd.safetensors")


def test_recording_adaptivity_later_rewrites_the_header_only(tmp_path, monkeypatch):
    omniglot = tmp_path / "omniglot"  # not there yet when packaging: the file ships without the figures
    source = _trained_with_config(tmp_path / "trained.safetensors", omniglot)
    out = package(source, tmp_path / "shipped", "tiny", "Tiny", [RESULT], default=True)
    before, before_bytes, entry = read_metadata(out), _tensor_part(out), read_manifest(out.parent).checkpoints[out.name]
    assert before.adaptivity is None
    with pytest.raises(AdaptivityUnavailable, match="not under"):
        record_adaptivity(out)

    omniglot_tree(omniglot, drawings=6)
    spread = record_adaptivity(out)
    after = read_metadata(out)
    assert after.adaptivity == spread and spread.n_way == 3
    assert spread.checkpoint_sha256 == entry.sha256  # the file measured: as packaged, without the figures
    # Nothing else changed: the held-out results, every other field, the header's other keys, the tensor bytes.
    assert after.heldout == before.heldout and dataclasses.replace(after, adaptivity=None) == before
    assert {k: v for k, v in after.verbatim().items() if k != "adaptivity"} == {
        k: v for k, v in before.verbatim().items() if k != "adaptivity"}
    assert _tensor_part(out) == before_bytes
    manifest = read_manifest(out.parent)
    listed = manifest.checkpoints[out.name]
    assert (listed.sha256, listed.bytes) == (file_sha256(out), out.stat().st_size) != (entry.sha256, entry.bytes)
    assert (listed.title, listed.backbone, listed.rule, manifest.default) == (entry.title, "conv4", "alfa", out.name)
    # Seeded: refreshing measures the same episodes, so the file does not change.
    sha256 = file_sha256(out)
    assert record_adaptivity(out) == spread and file_sha256(out) == sha256
    # A refresh that fails leaves the recorded figures (and the manifest) as they were.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("core.packaging.rule_spread", interrupted)
    with pytest.raises(KeyboardInterrupt):
        record_adaptivity(out)
    assert file_sha256(out) == sha256 == read_manifest(out.parent).checkpoints[out.name].sha256


def test_results_measured_after_packaging_are_added_by_rewriting_the_header_only(tmp_path):
    out = package(save_tiny_checkpoint(tmp_path / "trained.safetensors"), tmp_path / "shipped", "tiny", "Tiny",
                  [RESULT, dataclasses.replace(RESULT, rule="sgd")], default=True)
    before, before_bytes = read_metadata(out), _tensor_part(out)
    within = dataclasses.replace(RESULT, way=20, accuracy=0.7, protocol="within-alphabet")
    again = dataclasses.replace(RESULT, accuracy=0.95, seconds=3.0)  # the same rule, setting and head: replaces
    add_heldout_results(out, [within, again])
    after = read_metadata(out)
    assert after.heldout.results == (dataclasses.replace(RESULT, rule="sgd"), within, again)
    assert [r.setting for r in after.heldout.results] == ["5-way 1-shot", "20-way 1-shot within-alphabet",
                                                          "5-way 1-shot"]
    assert dataclasses.replace(after, heldout=None) == dataclasses.replace(before, heldout=None)
    assert _tensor_part(out) == before_bytes
    assert read_manifest(out.parent).checkpoints[out.name].sha256 == file_sha256(out)
    load_learner(out)
    with pytest.raises(CheckpointError, match="records no held-out results"):
        add_heldout_results(tmp_path / "trained.safetensors", [within])


def test_results_recorded_before_the_protocol_field_read_as_any_classes(tmp_path):
    out = package(save_tiny_checkpoint(tmp_path / "trained.safetensors"), tmp_path / "shipped", "tiny", "Tiny",
                  [RESULT])
    header = read_metadata(out).verbatim()
    rows = [{k: v for k, v in row.items() if k != "protocol"} for row in header["heldout"]["results"]]
    parsed = parse_metadata({**header, "heldout": {**header["heldout"], "results": rows}})
    assert parsed.heldout.results == (RESULT,) and parsed.heldout.results[0].protocol == "any-classes"
