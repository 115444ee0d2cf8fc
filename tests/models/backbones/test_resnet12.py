"""ResNet12: paper sizes, which tensors adapt, readable labels."""

from __future__ import annotations

import torch

from models.backbones import build_backbone, inner_parameter_names
from models.backbones.resnet12 import ResNet12


def test_paper_sizes():
    # ALFA's ResNet12 (64-128-256-512) has about 7.9M parameters; the MetaOpt/TADAM widths end in 640 features.
    assert 7.8e6 < sum(p.numel() for p in ResNet12().parameters()) < 8.1e6
    assert ResNet12(widths=(64, 160, 320, 640)).feature_dim == 640
    model = build_backbone({"name": "resnet12", "in_channels": 1, "image_size": 28, "widths": [8, 16, 24, 32]})
    assert model(torch.randn(2, 1, 28, 28), features_only=True).shape == (2, 32)


def test_inner_parameters_are_conv_and_linear_only():
    names = inner_parameter_names(build_backbone({"name": "resnet12", "widths": [4, 4, 4, 4]}))
    assert len(names) == 4 * 4 + 2  # 4 convs per block (3 + shortcut, no bias), head weight and bias
    assert not any("bn" in n for n in names)
    assert "head.bias" in names


def test_readable_labels_name_block_part_and_tensor():
    resnet = {label.name: label for label in ResNet12(1, 28, (4, 4, 4, 4)).layer_labels()}
    assert resnet["features.1.conv2.weight"].label == "block 2 conv 2 weight"
    assert resnet["features.1.conv2.weight"].depth == 4
    assert resnet["features.0.shortcut_conv.weight"].label == "block 1 shortcut conv weight"
    assert resnet["features.0.shortcut_bn.weight"].label == "block 1 shortcut BN scale (γ)"
    assert resnet["features.0.shortcut_conv.weight"].depth == resnet["features.0.conv3.weight"].depth == 2
    assert resnet["head.bias"].label == "head bias" and resnet["head.bias"].depth == 12
