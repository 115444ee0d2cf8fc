"""One meta-training iteration of the shipped MNIST-1D configs, with every estimator: finite meta-gradients for
every meta-parameter, and an outer step that moves them."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

import core.data.factory
from core.config import load_config
from core.data.mnist1d import MNIST1DSet
from core.train import Trainer

ROOT = Path(__file__).resolve().parents[2]
ESTIMATORS = ("maml", "fomaml", "reptile", "imaml", "fo_b_maml", "fo_b_maml_sym")


@pytest.mark.slow  # about 30 s for the six on a shared core, most of it generating the signals and the second order
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_one_iteration_gives_finite_meta_gradients_and_moves_the_meta_parameters(estimator, monkeypatch, tmp_path):
    # 80 signals per digit (16 validate: 1 shot + 15 queries) instead of 1000: the same code path, a fraction of the time.
    monkeypatch.setattr(core.data.factory, "MNIST1DSet", functools.partial(MNIST1DSet, samples_per_class=80))
    config = load_config(ROOT / "configs" / "mnist1d" / f"conv1d_{estimator}.toml")
    config.meta.meta_batch = 2
    config.output_dir = str(tmp_path)
    trainer = Trainer(config, device="cpu", progress=False)
    assert trainer.train_source.image_set.name == "mnist1d-train"
    assert trainer.val_source.image_set.name == "mnist1d-val"
    tasks = trainer.tasks(0)
    assert tasks[0].support_x.shape == (5, 1, 40) and tasks[0].query_x.shape == (75, 1, 40)

    estimate = trainer.estimator.meta_grad(tasks)
    assert set(estimate.grads) == set(trainer.trainable)
    grads = estimate.grads
    assert all(bool(torch.isfinite(grad).all()) for grad in grads.values())
    # Batch norm subtracts the batch mean right after each convolution, so a convolution's bias changes nothing
    # and its exact meta-gradient is zero: what the estimators give is rounding, far below the weight's.
    conv_biases = {f"backbone.features.{4 * block}.bias" for block in range(3)}
    for bias in conv_biases:
        weight = bias.replace(".bias", ".weight")
        assert float(grads[bias].norm()) <= 1e-3 * float(grads[weight].norm()), bias
    # Every other meta-parameter (batch norm's pair and the head too) gets a gradient.
    assert all(float(grad.norm()) > 0 for name, grad in grads.items() if name not in conv_biases)

    before = {name: p.detach().clone() for name, p in trainer.trainable.items()}
    diagnostics = trainer.step(0)
    assert "skipped" not in diagnostics
    assert all(not torch.equal(before[name], p) for name, p in trainer.trainable.items() if name not in conv_biases)
