"""Backbones for few-shot learning, written as plain ``nn.Module``s.

Every backbone is run through ``torch.func.functional_call`` with a dict of fast weights during
adaptation, so nothing here keeps per-task state. Batch norm always normalises with the statistics of the
batch it sees (``track_running_stats=False``), as in ALFA and MAML: support and query sets are normalised
separately and no running statistics exist to be corrupted by an adaptation.

Each backbone splits into ``features`` (image -> embedding) and ``head`` (``nn.Linear`` embedding -> class
scores). ``forward(x, features_only=True)`` returns the embedding; that is what a prototype head is built
from and why the head can be replaced by one for any number of classes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=True, track_running_stats=False)


@dataclass(frozen=True)
class LayerLabel:
    """A parameter tensor's readable name (``label``) and its ``depth``: 0 for the layer nearest the input, one
    more for each layer further along the forward path; a layer's weight and bias share a depth."""

    name: str
    label: str
    depth: int


def _tensor_role(module: nn.Module, tensor: str) -> str:
    """What a parameter does in its module: batch norm's pair is a scale (γ) and a shift, the rest weight and bias.

    The shift is not written "β" because the dashboard plots ALFA's β (the weight multiplier) beside these names.
    """
    if isinstance(module, nn.BatchNorm2d):
        return {"weight": "scale (γ)", "bias": "shift"}.get(tensor, tensor)
    return tensor


class Conv4(nn.Module):
    """4-CONV of MAML / ALFA: ``n_blocks`` x [conv3x3 (bias) - BN - leaky ReLU(0.01) - max-pool 2] + linear head.

    Omniglot: 64 filters, 28x28 grayscale (64 features). ALFA miniImageNet: 48 filters, 84x84 RGB (1200 features).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        filters: int = 64,
        n_blocks: int = 4,
        n_classes: int = 5,
    ) -> None:
        super().__init__()
        self.config = {
            "name": "conv4",
            "in_channels": in_channels,
            "image_size": image_size,
            "filters": filters,
            "n_blocks": n_blocks,
            "n_classes": n_classes,
        }
        blocks: list[nn.Module] = []
        channels, side = in_channels, image_size
        for _ in range(n_blocks):
            blocks += [
                nn.Conv2d(channels, filters, kernel_size=3, padding=1, bias=True),
                _bn(filters),
                nn.LeakyReLU(0.01),
                nn.MaxPool2d(2),
            ]
            channels, side = filters, side // 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {n_blocks} pooling blocks")
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.feature_dim = filters * side * side
        self.head = nn.Linear(self.feature_dim, n_classes)

    def forward(self, x: torch.Tensor, features_only: bool = False) -> torch.Tensor:
        z = self.features(x)
        return z if features_only else self.head(z)

    def layer_labels(self) -> list[LayerLabel]:
        """Every parameter tensor, input to output: ``features.4.weight`` -> "block 2 conv weight" (depth 1),
        ``features.5.weight`` -> "block 2 BN scale (γ)", ``head.weight`` -> "head weight" (depth ``n_blocks``)."""
        modules = dict(self.named_modules())
        labels = []
        for name, _ in self.named_parameters():
            module_name, _, tensor = name.rpartition(".")
            if module_name == "head":
                labels.append(LayerLabel(name, f"head {tensor}", self.config["n_blocks"]))
                continue
            # features = n_blocks x [conv, BN, leaky ReLU, max-pool], so module index // 4 is the block.
            module = modules[module_name]
            block = int(module_name.split(".")[1]) // 4
            part = "BN" if isinstance(module, nn.BatchNorm2d) else "conv"
            labels.append(LayerLabel(name, f"block {block + 1} {part} {_tensor_role(module, tensor)}", block))
        return labels


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
        self.bn1 = _bn(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = _bn(out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn3 = _bn(out_channels)
        self.shortcut_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.shortcut_bn = _bn(out_channels)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(out + self.shortcut_bn(self.shortcut_conv(x)))
        return self.pool(out)


class ResNet12(nn.Module):
    """ResNet12 as in the ALFA code: 4 residual blocks (default widths 64-128-256-512), global average pool, linear head.

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

    def forward(self, x: torch.Tensor, features_only: bool = False) -> torch.Tensor:
        z = self.features(x)
        return z if features_only else self.head(z)

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
            if module_name == "head":
                labels.append(LayerLabel(name, f"head {tensor}", 3 * len(self.config["widths"])))
                continue
            _, block, part = module_name.split(".")
            words, position = _RESIDUAL_BLOCK_PARTS[part]
            role = _tensor_role(modules[module_name], tensor)
            labels.append(LayerLabel(name, f"block {int(block) + 1} {words} {role}", 3 * int(block) + position))
        return labels


class MLP(nn.Module):
    """Regression network of the sine experiments (MAML / ALFA section 4.5): ReLU hidden layers, linear output."""

    def __init__(
        self,
        in_features: int = 1,
        hidden: tuple[int, ...] | list[int] = (40, 40),
        n_classes: int = 1,
    ) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        self.config = {"name": "mlp", "in_features": in_features, "hidden": list(hidden), "n_classes": n_classes}
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.feature_dim = width
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor, features_only: bool = False) -> torch.Tensor:
        z = self.features(x)
        return z if features_only else self.head(z)

    def layer_labels(self) -> list[LayerLabel]:
        """Every parameter tensor, input to output: ``features.2.weight`` -> "hidden 2 weight" (depth 1),
        ``head.bias`` -> "head bias" (depth = number of hidden layers)."""
        labels = []
        for name, _ in self.named_parameters():
            module_name, _, tensor = name.rpartition(".")
            if module_name == "head":
                labels.append(LayerLabel(name, f"head {tensor}", len(self.config["hidden"])))
                continue
            # features = [linear, ReLU] per hidden layer.
            layer = int(module_name.split(".")[1]) // 2
            labels.append(LayerLabel(name, f"hidden {layer + 1} {tensor}", layer))
        return labels


BACKBONES: dict[str, type[nn.Module]] = {"conv4": Conv4, "resnet12": ResNet12, "mlp": MLP}


def backbone_parameters(name: str | None) -> set[str]:
    """The constructor options backbone ``name`` takes (empty for an unknown name; ``build_backbone`` reports it)."""
    if name not in BACKBONES:
        return set()
    return set(inspect.signature(BACKBONES[name]).parameters)


def build_backbone(config: dict[str, Any]) -> nn.Module:
    """Build a backbone from its JSON config (``{"name": "conv4", ...}``), as stored in checkpoint metadata."""
    options = dict(config)
    name = options.pop("name", None)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    try:
        return BACKBONES[name](**options)
    except TypeError as error:
        raise ValueError(f"bad options for backbone {name!r}: {error}") from None


@dataclass(frozen=True)
class HeadNames:
    """The fast-weight names of a backbone's linear classifier head (``weight`` [n_classes, feature_dim], ``bias``)."""

    weight: str
    bias: str


def head_names(model: nn.Module) -> HeadNames:
    """Where the backbone keeps its ``head``: the engine builds zero and prototype heads under these names."""
    head = model.head
    if not isinstance(head, nn.Linear) or head.bias is None:
        raise TypeError(f"{type(model).__name__}.head must be an nn.Linear with a bias")
    prefix = next(name for name, module in model.named_modules() if module is head)
    return HeadNames(weight=f"{prefix}.weight", bias=f"{prefix}.bias")


def inner_parameter_names(model: nn.Module) -> list[str]:
    """Names of the tensors the inner loop updates: every conv / linear weight and bias.

    Batch-norm affine parameters are learned in the outer loop only (as in the ALFA code).
    """
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            for param_name, _ in module.named_parameters(recurse=False):
                names.append(f"{module_name}.{param_name}" if module_name else param_name)
    return names


def xavier_reinitialise(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Random initialisation of ALFA's random-init experiments: Xavier-uniform weights, zero biases."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
