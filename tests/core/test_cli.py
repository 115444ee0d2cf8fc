"""train -> evaluate -> adapt through the command line on a tiny config, resume, and error messages."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.checkpoint import read_metadata
from core.checkpoint.format import read_header, read_tensors
from core.cli import main
from tests.tolerances import gamma

REPO = Path(__file__).resolve().parents[2]

TINY = """
name = "tiny"
seed = 3
output_dir = "{out}"

[data]
kind = "omniglot"
root = "{root}"
image_size = 14
rotations = [0, 90]
train = ["Latin"]
val = ["Greek"]
test = ["Tagalog"]

[task]
n_way = 3
k_shot = 1
n_query = 2

[model]
backbone = {{ name = "conv4", filters = 4, n_blocks = 3 }}
head_init = "learned"

[rule]
name = "{rule}"
lr = 0.4

[meta]
estimator = "maml"
meta_batch = 2
iterations = {iterations}
inner_steps = 2
eval_inner_steps = 3

[validation]
every = 2
episodes = 3

[checkpoint]
every = 1
"""


def _config(tmp_path: Path, root: Path, rule="alfa", iterations=4, name="run") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(out=tmp_path / name, root=root, rule=rule, iterations=iterations))
    return path


@pytest.mark.slow
def test_train_evaluate_adapt_round_trip(tmp_path, real_omniglot, capsys):
    config = _config(tmp_path, real_omniglot)
    assert main(["train", "--config", str(config), "--no-progress", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["iterations"] == 4
    best = tmp_path / "run" / "best.safetensors"
    tensors, meta = read_tensors(tmp_path / "run" / "last.safetensors"), read_metadata(tmp_path / "run" / "last.safetensors")
    assert meta.rule.name == "alfa" and meta.training.tasks_seen == 8 and meta.training.estimator == "maml"
    assert read_metadata(best).training.iterations in (2, 4)  # best by validation accuracy
    assert meta.heldout_classes == ("Tagalog",) and meta.image.size == 14
    assert any(k.startswith("rule.generator") for k in tensors)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["iteration"] for h in history] == [2, 4]

    for rule in ("alfa", "sgd"):
        code = main(["evaluate", "--checkpoint", str(best), "--rule", rule, "--episodes", "5", "--query", "3", "--json"])
        assert code == 0
        result = json.loads(capsys.readouterr().out)
        assert result["rule"] == rule and result["episodes"] == 5 and result["n_way"] == 3
        assert 0 <= result["mean"] <= 1 and result["ci95"] >= 0 and result["steps"] == 3

    # An episode folder with 4 classes (more than the 3 the checkpoint was trained for) and labelled queries.
    episode = tmp_path / "episode"
    alphabet = real_omniglot / "images_background_small2" / "Tagalog"
    if not alphabet.is_dir():
        alphabet = next(real_omniglot.glob("*/Tagalog"))
    for character in sorted(alphabet.iterdir())[:4]:
        drawings = sorted(character.glob("*.png"))
        (episode / "support" / character.name).mkdir(parents=True)
        (episode / "query" / character.name).mkdir(parents=True)
        for d in drawings[:2]:
            shutil.copy(d, episode / "support" / character.name / d.name)
        shutil.copy(drawings[5], episode / "query" / character.name / drawings[5].name)
    out = subprocess.run(
        [sys.executable, "-m", "core", "adapt", "--checkpoint", str(best), "--episode", str(episode), "--steps", "4", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["queries"]) == 4 and result["head_init"] == "zero"  # ALFA, another class count
    assert {row["label"] for row in result["queries"]} == set(result["class_names"])
    assert all(0 < row["confidence"] <= 1 for row in result["queries"])
    assert len(result["support_loss"]) == 5 and len(result["traces"]) == 4
    plain = subprocess.run(
        [sys.executable, "-m", "core", "adapt", "--checkpoint", str(best), "--episode", str(episode)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert plain.returncode == 0 and "accuracy" in plain.stdout and "rule alfa" in plain.stdout


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted(tmp_path, real_omniglot, capsys):
    straight = _config(tmp_path, real_omniglot, rule="alfa", iterations=4, name="straight")
    assert main(["train", "--config", str(straight), "--no-progress"]) == 0
    split = _config(tmp_path, real_omniglot, rule="alfa", iterations=2, name="split")
    assert main(["train", "--config", str(split), "--no-progress"]) == 0
    # Without --resume an existing run is never overwritten.
    assert main(["train", "--config", str(split), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--config", str(split), "--no-progress", "--resume", "--iterations", "4"]) == 0
    a = read_tensors(tmp_path / "straight" / "last.safetensors")
    b, meta_b = read_tensors(tmp_path / "split" / "last.safetensors"), read_metadata(tmp_path / "split" / "last.safetensors")
    assert meta_b.training.iterations == 4 and meta_b.training.tasks_seen == 8
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_a_kill_saves_the_state_and_resume_continues_from_it(tmp_path, real_omniglot):
    config = _config(tmp_path, real_omniglot, rule="alfa", iterations=100_000, name="killed")
    command = [sys.executable, "-m", "core", "train", "--config", str(config), "--no-progress", "--device", "cpu"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "killed" / "state.safetensors"
    try:
        deadline = time.monotonic() + 120
        while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.is_file(), process.stderr.read() if process.poll() is not None else "no state after 120 s"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted: state saved at iteration" in err
    killed_at = read_header(state)["iteration"]
    assert killed_at >= 1
    resumed = subprocess.run(command + ["--resume", "--iterations", str(killed_at + 2)], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["iterations"] == killed_at + 2


def test_training_in_process_gives_the_callers_sigterm_handler_back(tmp_path, real_omniglot):
    def callers_handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, callers_handler)
    try:
        config = _config(tmp_path, real_omniglot, rule="sgd", iterations=1, name="handler")
        assert main(["train", "--config", str(config), "--no-progress", "--device", "cpu"]) == 0
        assert signal.getsignal(signal.SIGTERM) is callers_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_clear_errors(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[meta]\nmeta_bach = 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "meta_bach" in capsys.readouterr().err
    notckpt = tmp_path / "x.safetensors"
    notckpt.write_text("hello")
    assert main(["adapt", "--checkpoint", str(notckpt), "--episode", str(tmp_path)]) == 2
    assert "not a safetensors checkpoint" in capsys.readouterr().err


def test_inspect_rule_reports_how_much_alpha_and_beta_vary_with_the_episode(real_omniglot, capsys):
    """ALFA's generated values change with the episode; plain SGD's are one fixed value: no spread, nothing to share."""
    from core.settings import SHIPPED_CHECKPOINT_DIR

    checkpoint = SHIPPED_CHECKPOINT_DIR / "conv4_alfa_maml.safetensors"
    reports = {}
    for rule in ("alfa", "sgd"):
        assert main(["inspect-rule", "--checkpoint", str(checkpoint), "--rule", rule, "--episodes", "3",
                     "--steps", "2", "--device", "cpu", "--json"]) == 0
        reports[rule] = json.loads(capsys.readouterr().out)
    alfa, sgd = reports["alfa"], reports["sgd"]
    inner = read_metadata(checkpoint).header["inner_tensors"]
    assert [row["layer"] for row in alfa["layers"]] == inner and alfa["episodes"] == 3 and alfa["steps"] == 2
    # SGD applies its one rate at every step of every episode, exactly: zero spread, and no variation to split.
    for row in sgd["layers"]:
        assert row["alpha_relative_spread_max"] == 0 and row["beta_std_max"] == 0
        assert row["alpha_episode_share"] is None and row["alpha_step_share"] is None
    # ALFA's generator reads the task's weights and gradients: its values move with the episode (however little),
    # and the episode, step and interaction shares of that variation add up to one. The interaction is the
    # remainder SS_total - SS_episode - SS_step, so the float64 sum of the three shares is one up to two
    # subtractions, three divisions and two additions (gamma_7); where rounding made the remainder negative it is
    # clamped to 0, and then the other two already reach one.
    assert any(row["alpha_relative_spread_max"] > 0 for row in alfa["layers"])
    for layer in alfa["spread"]:
        shares = layer["alpha_shares"]
        if shares["episode"] is None:
            continue
        total = shares["episode"] + shares["step"] + shares["interaction"]
        if shares["interaction"] > 0:
            assert abs(total - 1) <= gamma(7, torch.float64)
        else:
            assert total >= 1 - gamma(7, torch.float64)


def test_evaluate_within_alphabet_draws_each_episode_from_one_held_out_alphabet(real_omniglot, tmp_path, capsys):
    """The shipped checkpoints hold out Japanese_(katakana) (47 characters) and Tagalog (17): 20-way within-alphabet
    episodes can only come from the first; the result names the protocol."""
    from core.settings import SHIPPED_CHECKPOINT_DIR

    checkpoint = str(SHIPPED_CHECKPOINT_DIR / "conv4_maml.safetensors")
    base = ["evaluate", "--checkpoint", checkpoint, "--episodes", "2", "--steps", "1", "--query", "1", "--device", "cpu"]
    run = [*base, "--way", "20"]
    assert main([*run, "--within-alphabet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"] == "within-alphabet" and result["n_way"] == 20 and result["episodes"] == 2
    assert main([*run, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"] == "any-classes"
    assert main([*run, "--within-alphabet"]) == 0
    assert "20-way 1-shot (within-alphabet), 2 episodes" in capsys.readouterr().out

    assert main([*base, "--way", "48", "--within-alphabet"]) == 2
    assert "no alphabet has the 48 classes a within-alphabet 48-way episode needs" in capsys.readouterr().err
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for index in range(3):
            Image.new("L", (8, 8), 40 * index).save(tmp_path / name / f"{index}.png")
    assert main([*base, "--way", "2", "--folder", str(tmp_path), "--within-alphabet"]) == 2
    assert "--within-alphabet needs Omniglot classes" in capsys.readouterr().err


def test_evaluate_with_test_time_augmentation_and_its_clear_errors(real_omniglot, capsys):
    from core.settings import SHIPPED_CHECKPOINT_DIR

    checkpoint = str(SHIPPED_CHECKPOINT_DIR / "conv4_maml.safetensors")
    base = ["evaluate", "--checkpoint", checkpoint, "--episodes", "2", "--steps", "1", "--query", "1", "--device", "cpu"]
    ranges = "{ rotation = 10, scale = [0.9, 1.1] }"
    assert main([*base, "--tta-copies", "2", "--tta-ranges", ranges, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["support_augment"] == {"copies": 2, "ranges": {"rotation": 10.0, "shear": 0.0, "scale": [0.9, 1.1],
                                                                 "translate": 0.0}}
    assert main([*base, "--tta-copies", "2", "--tta-ranges", ranges]) == 0
    assert "2 augmented copies of each support image" in capsys.readouterr().out
    # The shipped files were trained without augmentation: no ranges to reuse.
    assert main([*base, "--tta-copies", "2"]) == 2
    assert "trained without augmentation" in capsys.readouterr().err
    assert main([*base, "--tta-ranges", ranges]) == 2
    assert "--tta-ranges needs --tta-copies" in capsys.readouterr().err
    assert main([*base, "--tta-copies", "2", "--tta-ranges", "{ rotation = "]) == 2
    assert "must be a TOML inline table" in capsys.readouterr().err
    assert main([*base, "--tta-copies", "2", "--tta-ranges", "{ spin = 3 }"]) == 2
    assert "--tta-ranges: unknown key(s): spin" in capsys.readouterr().err
    assert main([*base, "--tta-copies", "-1", "--tta-ranges", ranges]) == 2
    assert "at least 1 copy" in capsys.readouterr().err


def test_info_names_the_inner_problem_and_the_estimator_of_a_proximal_checkpoint(tmp_path, capsys):
    """``info`` says what adapting the checkpoint solves: the proximal inner problem it was trained with."""
    import tomllib

    from core.config import config_from_dict
    from core.train import Trainer

    raw = tomllib.loads((REPO / "configs/sine/tune_tiny.toml").read_text())
    raw["output_dir"] = str(tmp_path / "run")
    raw["meta"].update(estimator="imaml", proximal_lambda=0.5, iterations=2, inner_steps=2, eval_inner_steps=3)
    raw["validation"] = {"every": 2, "episodes": 4}
    Trainer(config_from_dict(raw), device="cpu", progress=False).run()
    assert main(["info", "--checkpoint", str(tmp_path / "run" / "best.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "inner:     3 steps at evaluation (2 in training), support loss + 0.5/2 ||y - x||^2 (proximal)" in out
    assert "meta-gradient imaml" in out
