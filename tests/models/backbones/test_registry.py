"""The backbone registry and protocol: every registered network honours what the engine asks of it."""

from __future__ import annotations

import pkgutil

import pytest
import torch
from torch import nn
from torch.func import functional_call

import models.backbones
from models.backbones import (
    BACKBONES,
    Backbone,
    BackboneModule,
    LayerLabel,
    build_backbone,
    head_names,
    inner_parameter_names,
    register_backbone,
    registered_backbones,
    xavier_reinitialise,
)
from models.backbones.base import _REGISTRY

# One small configuration of every shipped backbone, with an input of the shape it takes.
SMALL = [
    ({"name": "conv4", "filters": 4}, (3, 1, 28, 28)),
    ({"name": "conv1d", "channels": 4}, (3, 1, 40)),
    ({"name": "conv4", "filters": 4, "n_blocks": 2}, (3, 1, 28, 28)),
    ({"name": "resnet12", "in_channels": 1, "image_size": 28, "widths": [4, 4, 4, 4]}, (3, 1, 28, 28)),
    ({"name": "mlp", "hidden": [8, 8, 8]}, (3, 1)),
]


@pytest.fixture
def scratch_registry():
    """Registrations made by a test are removed afterwards."""
    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)


def test_every_module_of_the_package_registers_its_backbone():
    modules = {m.name for m in pkgutil.iter_modules(models.backbones.__path__)} - {"base"}
    assert modules == {"conv1d", "conv4", "resnet12", "mlp"}
    assert {cls.__module__.rpartition(".")[2] for cls in BACKBONES.values()} == modules
    assert registered_backbones() == ["conv1d", "conv4", "mlp", "resnet12"]
    with pytest.raises(TypeError):
        BACKBONES["other"] = nn.Linear  # type: ignore[index]  # read-only: only @register_backbone adds


def test_an_unknown_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown backbone 'vit'; choose one of \['conv1d', 'conv4', 'mlp', 'resnet12'\]"):
        build_backbone({"name": "vit"})
    with pytest.raises(ValueError, match="unknown backbone None"):
        build_backbone({"filters": 4})
    with pytest.raises(ValueError, match="bad options for backbone 'conv4'.*width"):
        build_backbone({"name": "conv4", "width": 4})


@pytest.mark.parametrize(("config", "shape"), SMALL, ids=lambda c: str(c))
def test_every_backbone_follows_the_protocol(config, shape):
    model = build_backbone(config)
    assert isinstance(model, Backbone) and isinstance(model, nn.Module)
    assert build_backbone(model.config).config == model.config  # the stored config rebuilds it
    x = torch.randn(*shape)
    assert model(x, features_only=True).shape == (shape[0], model.feature_dim)
    assert model(x).shape == (shape[0], model.head.out_features)
    head = head_names(model)
    parameters = dict(model.named_parameters())
    assert parameters[head.weight] is model.head.weight and parameters[head.bias] is model.head.bias
    inner = inner_parameter_names(model)
    assert {head.weight, head.bias} <= set(inner) <= set(parameters)


@pytest.mark.parametrize(("config", "shape"), SMALL, ids=lambda c: str(c))
def test_every_parameter_has_one_readable_label_and_depth_grows_towards_the_head(config, shape):
    model = build_backbone(config)
    labels = model.layer_labels()
    assert [label.name for label in labels] == [name for name, _ in model.named_parameters()]
    assert len({label.label for label in labels}) == len(labels)
    assert not any(label.label == label.name for label in labels)
    depths = [label.depth for label in labels]
    assert depths[0] == 0 and depths == sorted(depths)
    head = head_names(model)
    assert {label.depth for label in labels if label.name in (head.weight, head.bias)} == {max(depths)}
    by_name = {label.name: label for label in labels}
    inner = inner_parameter_names(model)
    assert [by_name[name].depth for name in inner] == sorted(by_name[name].depth for name in inner)


def test_xavier_reinitialise_draws_weights_and_zeroes_biases():
    model = build_backbone({"name": "conv4", "filters": 4})
    xavier_reinitialise(model, torch.Generator().manual_seed(0))
    first = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    xavier_reinitialise(model, torch.Generator().manual_seed(0))
    assert all(torch.equal(first[name], tensor) for name, tensor in model.state_dict().items())  # seeded
    assert torch.count_nonzero(model.head.bias) == 0 and torch.count_nonzero(model.features[0].bias) == 0
    # Block 2's conv (4 -> 4 channels, 3x3): Xavier's bound sqrt(6 / (36 + 36)) = 0.289, above PyTorch's default
    # 1 / sqrt(36) = 0.167; of 144 uniform draws, the largest passes 0.25 but for a chance of about 1e-9.
    assert 0.25 < model.features[4].weight.abs().max() <= (6 / 72) ** 0.5
    assert torch.equal(model.features[1].weight, torch.ones(4))  # batch norm keeps its unit scale


class _TwoLayer(BackboneModule):
    """A backbone written in a test: one hidden linear layer whose bias alone adapts, besides the head."""

    def __init__(self, in_features: int = 3, n_classes: int = 2) -> None:
        super().__init__()
        self.config = {"name": "two_layer", "in_features": in_features, "n_classes": n_classes}
        self.features = nn.Sequential(nn.Linear(in_features, 4), nn.Tanh())
        self.feature_dim = 4
        self.head = nn.Linear(4, n_classes)

    def layer_labels(self) -> list[LayerLabel]:
        return [LayerLabel(name, f"layer {name}", 0 if name.startswith("features") else 1)
                for name, _ in self.named_parameters()]

    def inner_parameter_names(self) -> list[str]:
        return ["features.0.bias", "head.weight", "head.bias"]


def test_a_new_backbone_is_one_registered_class(scratch_registry):
    register_backbone("two_layer")(_TwoLayer)
    assert "two_layer" in registered_backbones()
    model = build_backbone({"name": "two_layer", "in_features": 3, "n_classes": 5})
    assert isinstance(model, _TwoLayer) and model(torch.randn(2, 3)).shape == (2, 5)
    assert inner_parameter_names(model) == ["features.0.bias", "head.weight", "head.bias"]
    fast = {name: tensor.detach() + 1 for name, tensor in model.named_parameters()}
    assert not torch.equal(functional_call(model, fast, (torch.zeros(1, 3),)), model(torch.zeros(1, 3)))


def test_registration_refuses_what_the_engine_could_not_use(scratch_registry):
    with pytest.raises(TypeError, match="must be an nn.Module class"):
        register_backbone("plain")(object)

    class NoLabels(nn.Module):
        def forward(self, x, features_only=False):
            return x

    with pytest.raises(TypeError, match="lacks layer_labels, inner_parameter_names"):
        register_backbone("no_labels")(NoLabels)

    class NoFeaturesOnly(_TwoLayer):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="forward must take features_only"):
        register_backbone("no_features_only")(NoFeaturesOnly)
    with pytest.raises(ValueError, match="two backbones are registered as 'conv4'"):
        register_backbone("conv4")(_TwoLayer)

    class NoHead(_TwoLayer):
        def __init__(self) -> None:
            nn.Module.__init__(self)
            self.config = {"name": "no_head"}

    register_backbone("no_head")(NoHead)
    with pytest.raises(TypeError, match="does not set feature_dim, head"):
        build_backbone({"name": "no_head"})


def test_inner_loop_tensors_must_be_parameters(scratch_registry):
    class Misnamed(_TwoLayer):
        def inner_parameter_names(self) -> list[str]:
            return ["features.0.bias", "head.kernel"]

    with pytest.raises(ValueError, match=r"declares inner-loop tensors it does not have: \['head.kernel'\]"):
        inner_parameter_names(Misnamed())
