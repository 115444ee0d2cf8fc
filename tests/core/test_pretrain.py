"""Supervised pre-training: the loss falls, resume equals an uninterrupted run, meta-training starts from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError, read_metadata
from core.checkpoint.format import read_header, read_tensors
from core.cli import main
from core.config import ConfigError, config_from_dict, load_config
from core.pretrain import Pretrainer, _recipe, load_pretrained
from tests.core.test_cli import TINY
from tests.tolerances import gamma, unit_roundoff


def _config(tmp_path: Path, root: Path, name: str, epochs: int, pretrained: Path, rule: str = "sgd") -> Path:
    text = TINY.format(out=tmp_path / name, root=root, rule=rule, iterations=2)
    text = text.replace("[meta]", f'[pretrain]\nepochs = {epochs}\nbatch_size = 32\nlr = 0.05\noutput = "{pretrained}"\n\n[meta]')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_pretraining_learns_resumes_exactly_and_seeds_meta_training(tmp_path, real_omniglot, capsys):
    straight_file = tmp_path / "straight" / "pretrained.safetensors"
    straight = load_config(_config(tmp_path, real_omniglot, "a", 3, straight_file))
    output = Pretrainer(straight, device="cpu", progress=False).run()
    tensors, meta = read_tensors(output), read_header(output)
    history = meta["history"]
    assert meta["classes"] == 26 * 2 and meta["images"] == 26 * 2 * 20  # Latin, two rotations
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    assert not any(name.startswith("head.") for name in tensors)

    # Stopped after one epoch and resumed: the same weights, bit for bit.
    split_file = tmp_path / "split" / "pretrained.safetensors"
    split = load_config(_config(tmp_path, real_omniglot, "b", 3, split_file))
    split.pretrain.epochs = 1
    first = Pretrainer(split, device="cpu", progress=False)
    first.run()
    assert first.state_path.is_file() is False  # a finished stage cleans its state up
    # Re-create the state an interrupted 3-epoch run would leave: 1 epoch done, state kept.
    split.pretrain.epochs = 3
    interrupted = Pretrainer(split, device="cpu", progress=False)
    interrupted.train_epoch(0)
    interrupted.epoch = 1
    interrupted.save_state()
    split_file.unlink()
    resumed = Pretrainer(split, device="cpu", progress=False).run()
    again = read_tensors(resumed)
    for name in tensors:
        torch.testing.assert_close(again[name], tensors[name], rtol=0, atol=0, msg=name)

    # Meta-training with the same recipe starts from the pre-trained features and says so in its checkpoint.
    config = _config(tmp_path, real_omniglot, "meta", 3, straight_file)
    assert main(["train", "--config", str(config), "--no-progress", "--iterations", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    pretraining = read_metadata(Path(summary["output"]) / "last.safetensors").training.pretraining
    assert pretraining.epochs == 3 and pretraining.classes == 52
    assert pretraining.file == str(straight_file) and len(pretraining.sha256) == 64
    # The pre-trained weights moved by one meta-step only: the learner did start from them.
    learner_tensors = read_tensors(Path(summary["output"]) / "last.safetensors")
    first_conv = next(name for name in tensors if name.endswith("weight") and tensors[name].dim() == 4)
    start = tensors[first_conv]
    after = learner_tensors[f"backbone.{first_conv}"]
    # Adam's first step is lr * m / (sqrt(v) + eps) with m and sqrt(v) both |g| after bias correction: at most
    # the outer rate (the cosine schedule only lowers it) per weight, up to the dozen or so float32 roundings
    # of that arithmetic (its constants cast to float32, products, sqrt, divisions: gamma_16 covers them),
    # plus one rounding of the updated weight.
    lr, u32 = load_config(config).meta.outer_lr, unit_roundoff(torch.float32)
    moved = float((after - start).abs().max())
    assert moved <= lr * (1 + gamma(16, torch.float32)) + u32 * (float(start.abs().max()) + lr), moved

    # A pre-trained file from another recipe is refused rather than silently used.
    other = load_config(_config(tmp_path, real_omniglot, "other", 3, straight_file))
    other.pretrain.lr = 0.2
    with pytest.raises(CheckpointError, match="another backbone, training split or recipe"):
        load_pretrained(other)


def test_pretraining_config_errors():
    base = {"data": {"kind": "omniglot"}, "rule": {"name": "alfa_random"}, "pretrain": {"epochs": 2}}
    with pytest.raises(ConfigError, match="alfa_random"):
        config_from_dict(base)
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"pretrain": {"epoch": 2}})


def test_cli_pretrain_without_stage(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[data]\nkind = "omniglot"\n')
    assert main(["pretrain", "--config", str(path)]) == 2
    assert "no [pretrain] stage" in capsys.readouterr().err


def test_pretraining_augments_its_batches_seeded_and_records_it(tmp_path, real_omniglot):
    """``[data] augment`` distorts pre-training batches too: seeded by (seed, epoch, batch), so two runs agree bit
    for bit, the images differ from the plain run's, and the recipe says so (a plain file does not match it)."""
    plain_path = _config(tmp_path, real_omniglot, "plain", 1, tmp_path / "plain.safetensors")
    augmented_text = plain_path.read_text().replace("[task]", "augment = { rotation = 15, scale = [0.8, 1.2] }\n\n[task]")
    augmented_path = tmp_path / "augmented.toml"
    augmented_path.write_text(augmented_text.replace("plain.safetensors", "augmented.safetensors"))
    plain, augmented = load_config(plain_path), load_config(augmented_path)
    seen = []
    for config in (plain, augmented, augmented):
        trainer = Pretrainer(config, device="cpu", progress=False)
        batches = []
        forward = trainer.model.forward
        def recording(x, batches=batches, forward=forward, **kwargs):
            batches.append(x.clone())
            return forward(x, **kwargs)

        trainer.model.forward = recording
        trainer.train_epoch(0)
        seen.append((batches, {k: v.clone() for k, v in trainer.model.state_dict().items()}))
    (plain_batches, _), (first_batches, first_state), (second_batches, second_state) = seen
    assert all(torch.equal(a, b) for a, b in zip(first_batches, second_batches))
    for name in first_state:
        torch.testing.assert_close(second_state[name], first_state[name], rtol=0, atol=0, msg=name)
    assert all(not torch.equal(a, b) for a, b in zip(plain_batches, first_batches))
    assert _recipe(augmented)["augment"]["rotation"] == 15
    assert "augment" not in _recipe(plain)
