"""The 1-D CNN: sizes, the registry and config route, readable labels, fast weights, batch statistics only."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from core.config import config_from_dict
from models.backbones import Backbone, build_backbone, head_names, inner_parameter_names, xavier_reinitialise
from models.backbones.conv1d import Conv1d


def test_sizes_follow_the_pooling():
    # Length 40 halves three times to 5: five positions of `channels` features; four blocks floor 5 to 2.
    assert Conv1d(channels=32).feature_dim == 160
    assert Conv1d(channels=8, n_blocks=4).feature_dim == 16
    model = Conv1d(channels=8, n_classes=3)
    x = torch.randn(6, 1, 40)
    assert model(x, features_only=True).shape == (6, 40) and model(x).shape == (6, 3)
    with pytest.raises(ValueError, match="length 4 is too short for 3 pooling blocks"):
        Conv1d(length=4)
    with pytest.raises(ValueError, match="at least one channel"):
        Conv1d(channels=0)


def test_registry_and_config_build_the_same_network():
    model = build_backbone({"name": "conv1d", "channels": 8})
    assert isinstance(model, Conv1d) and isinstance(model, Backbone)
    assert build_backbone(model.config).config == model.config
    raw = {
        "data": {"kind": "mnist1d", "image_size": 40, "channels": 1, "invert": False, "train": ["train"]},
        "task": {"n_way": 4},
        "model": {"backbone": {"name": "conv1d", "channels": 8}},
    }
    # The data's channel count, signal length and the task's classes complete the stored backbone options.
    assert config_from_dict(raw).backbone_config() == {
        "name": "conv1d",
        "channels": 8,
        "n_classes": 4,
        "in_channels": 1,
        "length": 40,
    }


def test_inner_loop_adapts_convolutions_and_head_not_batch_norm():
    model = Conv1d(channels=4, n_blocks=2)
    assert inner_parameter_names(model) == [
        "features.0.weight",
        "features.0.bias",
        "features.4.weight",
        "features.4.bias",
        "head.weight",
        "head.bias",
    ]
    assert head_names(model).weight == "head.weight"


def test_readable_labels_name_block_part_and_tensor():
    labels = {label.name: label for label in Conv1d(channels=4).layer_labels()}
    assert len(labels) == len(dict(Conv1d(channels=4).named_parameters()))
    assert (labels["features.4.weight"].label, labels["features.4.weight"].depth) == ("block 2 conv weight", 1)
    assert labels["features.5.weight"].label == "block 2 BN scale (γ)"
    assert labels["features.9.bias"].label == "block 3 BN shift"
    assert (labels["head.weight"].label, labels["head.weight"].depth) == ("head weight", 3)


def test_functional_call_uses_fast_weights_and_leaves_module_alone():
    model = Conv1d(channels=8)
    before = {n: p.clone() for n, p in model.named_parameters()}
    x = torch.randn(5, 1, 40)
    # Zero head weights with a bias b: every logit row is exactly b, whatever the features.
    fast = {n: p.detach() for n, p in model.named_parameters()}
    fast["head.weight"] = torch.zeros_like(model.head.weight)
    fast["head.bias"] = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    out = functional_call(model, fast, (x,))
    assert torch.equal(out, fast["head.bias"].expand(5, 5))
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


def test_batch_norm_uses_current_batch_statistics_only():
    model = Conv1d(channels=4)
    assert not any(b.numel() for b in model.buffers())
    model.eval()  # no running statistics exist, so eval mode still normalises per batch
    x = torch.randn(6, 1, 40)
    # The first block's batch norm makes the network blind to one scale applied to the whole batch (up to eps).
    assert torch.allclose(model(x), model(3 * x), atol=1e-4)
    # Scaling only half the batch moves the statistics every item is normalised with.
    assert not torch.allclose(model(x)[:3], model(torch.cat([x[:3], 10 * x[3:]]))[:3], atol=1e-3)


def test_xavier_reinitialise_covers_the_one_dimensional_convolutions():
    model = Conv1d(channels=4)
    xavier_reinitialise(model, torch.Generator().manual_seed(0))
    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            fan_in, fan_out = module.in_channels * 3, module.out_channels * 3
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert float(module.weight.abs().max()) <= bound and torch.equal(module.bias, torch.zeros_like(module.bias))
            if module.in_channels > 1:  # Xavier's bound 0.5 there, PyTorch's default 1/sqrt(12) = 0.29: redrawn
                assert float(module.weight.abs().max()) > fan_in**-0.5
