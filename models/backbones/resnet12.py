"""ResNet12 as in the ALFA code (Baik et al., 2020), after TADAM (Oreshkin et al., 2018)."""

from __future__ import annotations

import torch
from torch import nn

from models.backbones.base import BackboneModule, LayerLabel, batch_norm, register_backbone, tensor_role

# Readable name of each part of a ResNet12 block and where it sits along the block's main path of three 3x3
# convolutions; the shortcut's output joins that path at the addition after conv 3, so it takes conv 3's depth.
_RESIDUAL_BLOCK_PARTS: dict[str, tuple[str, int]] = {
    "conv1": ("conv 1", 0), "bn1": ("BN 1", 0), "conv2": ("conv 2", 1), "bn2": ("BN 2", 1),
    "conv3": ("conv 3", 2), "bn3": ("BN 3", 2), "shortcut_conv": ("shortcut conv", 2), "shortcut_bn": ("shortcut BN", 2),
}


class ResidualBlock(nn.Module):
    """ResNet12 block: 3 x conv3x3 (no bias) with BN, ReLU between; 1x1 conv + BN shortcut; add; ReLU; max-pool 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = batch_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = batch_norm(out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn3 = batch_norm(out_channels)
        self.shortcut_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.shortcut_bn = batch_norm(out_channels)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(out + self.shortcut_bn(self.shortcut_conv(x)))
        return self.pool(out)


@register_backbone("resnet12")
class ResNet12(BackboneModule):
    """4 residual blocks (default widths 64-128-256-512), global average pool, linear head.

    ``widths=(64, 160, 320, 640)`` gives the other common variant (MetaOpt, TADAM).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 84,
        widths: tuple[int, ...] | list[int] = (64, 128, 256, 512),
        n_classes: int = 5,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.config = {
            "name": "resnet12",
            "in_channels": in_channels,
            "image_size": image_size,
            "widths": list(widths),
            "n_classes": n_classes,
        }
        blocks: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            blocks.append(ResidualBlock(channels, width))
            channels = width
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = channels
        self.head = nn.Linear(channels, n_classes)

    def layer_labels(self) -> list[LayerLabel]:
        """Every parameter tensor, input to output: ``features.1.conv2.weight`` -> "block 2 conv 2 weight",
        ``features.0.shortcut_bn.weight`` -> "block 1 shortcut BN scale (γ)", ``head.bias`` -> "head bias".

        Depth counts the three convolutions of each block (block b, conv k, both from 1: ``3 (b - 1) + k - 1``);
        the head comes last.
        """
        modules = dict(self.named_modules())
        labels = []
        for name, _ in self.named_parameters():
            module_name, _, tensor = name.rpartition(".")
            if modules[module_name] is self.head:
                labels.append(LayerLabel(name, f"head {tensor}", 3 * len(self.config["widths"])))
                continue
            _, block, part = module_name.split(".")
            words, position = _RESIDUAL_BLOCK_PARTS[part]
            role = tensor_role(modules[module_name], tensor)
            labels.append(LayerLabel(name, f"block {int(block) + 1} {words} {role}", 3 * int(block) + position))
        return labels
