"""The checkpoints in assets/checkpoints: listed with their hashes, measured for every rule they supported when
packaged, small; those with a meta-learned rule carry their adaptivity figures."""

from __future__ import annotations

import math
import shlex

import pytest
import torch

from core.checkpoint import file_sha256, load_learner, read_manifest, read_metadata, supported_rules
from core.checkpoint.format import read_header, rewrite_header
from core.config import load_config
from core.packaging import ADAPTIVITY_EPISODES, ADAPTIVITY_SEED, SETTINGS
from core.rules import rule_spec
from core.settings import REPO_ROOT, SHIPPED_CHECKPOINT_DIR
from tests.tolerances import gamma

MANIFEST = read_manifest(SHIPPED_CHECKPOINT_DIR)
SHIPPED = sorted(SHIPPED_CHECKPOINT_DIR.glob("*.safetensors"))
SHIPPED_ALFA = [path for path in SHIPPED if read_metadata(path).rule.name.startswith("alfa")]
SHIPPED_META_LEARNED = [path for path in SHIPPED
                        if rule_spec(read_metadata(path).rule.name).capabilities.meta_learned]


def test_the_manifest_lists_exactly_the_shipped_files_with_their_hashes() -> None:
    assert SHIPPED, "no shipped checkpoints"
    assert sorted(MANIFEST.checkpoints) == [path.name for path in SHIPPED]
    for path in SHIPPED:
        entry = MANIFEST.checkpoints[path.name]
        assert entry.sha256 == file_sha256(path), path.name
        assert entry.bytes == path.stat().st_size
    assert MANIFEST.default in MANIFEST.checkpoints


def test_the_default_and_both_backbones_ship_an_alfa_checkpoint() -> None:
    assert MANIFEST.default in {path.name for path in SHIPPED_ALFA}
    assert {read_metadata(path).backbone.name for path in SHIPPED_ALFA} == {"conv4", "resnet12"}


def test_all_shipped_files_together_stay_well_under_100_mb() -> None:
    assert sum(path.stat().st_size for path in SHIPPED) < 60 * 2**20


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_each_is_measured_on_held_out_alphabets_for_every_rule_it_supports(path) -> None:
    metadata = read_metadata(path)
    heldout = metadata.heldout
    data = metadata.training.data
    assert heldout.classes == data.test and len(data.test) >= 2
    assert not set(data.test) & (set(data.train) | set(data.val))
    measured = {(r.rule, r.setting) for r in heldout.results if r.episodes == 600}
    # Packaging measured the trained rule and the SGD baseline of the same initialisation; rules registered since
    # (ANIL) may be added later (bench/add_heldout.py --rule anil), in every setting like the others.
    measured_rules = {rule for rule, _ in measured}
    assert {metadata.rule.name, "sgd"} <= measured_rules <= set(supported_rules(metadata))
    # Every setting, the within-alphabet 20-way 1-shot protocol included, for every rule measured.
    assert measured == {(rule, setting.label) for rule in measured_rules for setting in SETTINGS}
    # Task accuracies lie in [0, 1], so their variance is at most a (1 - a) for mean a (Bhatia-Davis), and
    # the interval 1.96 std / sqrt(n) at most 1.96 sqrt(a (1 - a) / n): 0.012 to 0.040 for these n = 600
    # (a float64 mean and std over 600 values add gamma_1200 at most).
    for r in heldout.results:
        a, n = r.accuracy, r.episodes
        assert 0 < a <= 1 and 0 < r.ci95 <= 1.96 * math.sqrt(a * (1 - a) / n) * (1 + gamma(2 * n, torch.float64))
    training = metadata.training
    assert training.command.startswith("python -m core train --config configs/")
    assert training.tasks_seen > 0 and training.wall_seconds > 0
    learner, _ = load_learner(path)
    assert learner.rule.name == metadata.rule.name


@pytest.mark.parametrize("path", SHIPPED_ALFA, ids=[p.stem for p in SHIPPED_ALFA])
def test_shipped_alfa_checkpoints_are_meta_trained_for_any_class_count(path) -> None:
    """ALFA's generator reads the mean of the head it updates, so a head it never saw in meta-training (a
    prototype head, or a zero head after training with a learned one) is out of distribution for it: the
    learned-head Conv4 ALFA+MAML fell to 40.5 % at 20-way (README, "Head choice"). Every shipped ALFA file is
    therefore meta-trained with a zero head, and the config its command names still says so."""
    metadata = read_metadata(path)
    assert metadata.head_init == "zero"
    assert {r.head_init for r in metadata.heldout.results} == {"zero"}
    words = shlex.split(metadata.training.command)
    config = load_config(REPO_ROOT / words[words.index("--config") + 1])
    assert config.model.head_init == "zero"
    recorded = metadata.training.train_config()
    assert (config.model, config.rule) == (recorded.model, recorded.rule)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_meta_learned_checkpoints_carry_their_adaptivity_figures(path, tmp_path) -> None:
    metadata = read_metadata(path)
    spread = metadata.adaptivity
    if path not in SHIPPED_META_LEARNED:
        assert spread is None  # fixed alpha and beta: nothing to measure
        return
    assert spread is not None, "run bench/record_adaptivity.py"
    assert tuple(layer.layer for layer in spread.layers) == metadata.inner_tensors
    assert spread.steps == metadata.inner_steps.eval
    task = metadata.training.train_config().task
    assert (spread.rule, spread.n_way, spread.k_shot) == (metadata.rule.name, task.n_way, task.k_shot)
    assert (spread.episodes, spread.seed, spread.head_init) == (ADAPTIVITY_EPISODES, ADAPTIVITY_SEED, metadata.head_init)
    assert spread.data == "omniglot: " + ", ".join(metadata.heldout_classes)
    # Measured on these tensors: the figures name the file as it was without them (a version-1 header without the
    # key, a current one with null).
    header = read_header(path)
    unmeasured = ({**header, "adaptivity": None} if "schema_version" in header
                  else {key: value for key, value in header.items() if key != "adaptivity"})
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    assert file_sha256(rewrite_header(copy, unmeasured)) == spread.checkpoint_sha256
