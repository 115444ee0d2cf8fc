"""The sine-regression MLP: its sizes, which tensors adapt, readable labels."""

from __future__ import annotations

import torch

from models.backbones import inner_parameter_names
from models.backbones.mlp import MLP


def test_sizes_of_the_sine_network():
    model = MLP()  # MAML/ALFA section 4.5: 1 -> 40 -> 40 -> 1
    assert model.feature_dim == 40
    assert model(torch.randn(7, 1), features_only=True).shape == (7, 40)
    assert model(torch.randn(7, 1)).shape == (7, 1)
    assert sum(p.numel() for p in model.parameters()) == (1 * 40 + 40) + (40 * 40 + 40) + (40 + 1)


def test_every_linear_tensor_adapts_and_labels_count_hidden_layers():
    model = MLP(hidden=(8, 8, 8))
    assert inner_parameter_names(model) == [name for name, _ in model.named_parameters()]
    labels = {label.name: label for label in model.layer_labels()}
    assert (labels["features.2.weight"].label, labels["features.2.weight"].depth) == ("hidden 2 weight", 1)
    assert (labels["head.bias"].label, labels["head.bias"].depth) == ("head bias", 3)
