"""The inner loop's shortcut for rules that adapt only the head: the same numbers as running the whole network."""

from __future__ import annotations

import pytest
import torch

from core.learner import Learner
from core.meta import inner
from core.meta.inner import adapts_head_only, forward, head_forward, inner_loop, prepare_head
from core.rules import build_rule
from models.backbones import head_names

BACKBONES = [
    {"name": "conv4", "in_channels": 1, "image_size": 8, "filters": 3, "n_blocks": 2, "n_classes": 3},
    {"name": "resnet12", "in_channels": 1, "image_size": 8, "widths": [2, 3, 4, 5], "n_classes": 3},
    {"name": "mlp", "in_features": 1, "hidden": [5, 5], "n_classes": 1},
]


def _inputs(backbone: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if backbone["name"] == "mlp":
        return torch.randn(6, 1, generator=g)
    return torch.randn(6, 1, 8, 8, generator=g)


@pytest.mark.parametrize("backbone", BACKBONES, ids=lambda b: b["name"])
def test_the_head_on_the_embedding_is_the_whole_network(backbone):
    learner = Learner(backbone, {"name": "sgd", "lr": 0.1}, seed=0, task_kind="regression" if backbone["name"] == "mlp" else "classification")
    params = learner.initial_params()
    x = _inputs(backbone)
    with torch.no_grad():
        # Exact: the backbone's forward is head(features(x)), the same kernels on the same tensors.
        assert torch.equal(forward(learner, params, x), head_forward(learner, params, forward(learner, params, x, True)))


@pytest.mark.parametrize("differentiable", [False, True])
def test_adapting_only_the_head_reuses_one_embedding_and_gives_the_same_weights(monkeypatch, differentiable):
    learner = Learner(BACKBONES[0], {"name": "sgd", "lr": 0.5}, seed=0, head_init="prototype")
    names = head_names(learner.backbone)
    # What a head-only rule (ANIL) makes of the learner: only the head's tensors are adapted, by plain SGD.
    learner.inner_names = [names.weight, names.bias]
    shapes = {n: p.shape for n, p in learner.backbone.named_parameters()}
    learner.rule = build_rule({"name": "sgd", "lr": 0.5}, learner.inner_names, shapes)
    assert adapts_head_only(learner)
    x, y = _inputs(BACKBONES[0]), torch.tensor([0, 0, 1, 1, 2, 2])
    params = prepare_head(learner, learner.initial_params(), x, y, 3, "prototype")
    calls = []
    original = inner.forward

    def counting(*args, **kwargs):
        calls.append(kwargs.get("features_only", args[3] if len(args) > 3 else False))
        return original(*args, **kwargs)

    monkeypatch.setattr(inner, "forward", counting)
    shortcut = inner_loop(learner, params, x, y, 3, create_graph=differentiable, differentiable=differentiable,
                          record_final=True)
    assert calls == [True]  # one embedding, then the head alone at every step
    monkeypatch.setattr(inner, "adapts_head_only", lambda _learner: False)
    calls.clear()
    whole = inner_loop(learner, params, x, y, 3, create_graph=differentiable, differentiable=differentiable,
                       record_final=True)
    assert calls == [False] * 4
    for name in shortcut.params:
        assert torch.equal(shortcut.params[name], whole.params[name]), name
    assert [float(v) for v in shortcut.support_losses] == [float(v) for v in whole.support_losses]
    assert not torch.equal(shortcut.params[names.weight], params[names.weight])
