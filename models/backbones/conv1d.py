"""A small 1-D CNN for signals such as MNIST-1D (Greydanus and Kobak, 2024): the 4-CONV of MAML (Finn et al., 2017)
with one-dimensional convolutions, the network of the revised FO-B-MAML paper's MNIST-1D experiment."""

from __future__ import annotations

from torch import nn

from models.backbones.base import BackboneModule, LayerLabel, register_backbone


@register_backbone("conv1d")
class Conv1d(BackboneModule):
    """``n_blocks`` x [conv1d k=3 (bias) - BN (batch statistics) - ReLU - max-pool 2] + linear head.

    ``channels`` is the width of every block. MNIST-1D (length 40, one channel) with 3 blocks: 40 -> 20 -> 10 -> 5,
    so ``feature_dim = 5 * channels``. Batch norm keeps no running statistics, as in every backbone here
    (``models.backbones.base``); its affine pair is learned in the outer loop only.
    """

    def __init__(
        self,
        in_channels: int = 1,
        length: int = 40,
        channels: int = 32,
        n_blocks: int = 3,
        n_classes: int = 5,
    ) -> None:
        super().__init__()
        if channels < 1 or n_blocks < 1 or in_channels < 1:
            raise ValueError(
                f"conv1d needs at least one channel, block and input channel, got channels={channels}, "
                f"n_blocks={n_blocks}, in_channels={in_channels}"
            )
        self.config = {
            "name": "conv1d",
            "in_channels": in_channels,
            "length": length,
            "channels": channels,
            "n_blocks": n_blocks,
            "n_classes": n_classes,
        }
        blocks: list[nn.Module] = []
        width, side = in_channels, length
        for _ in range(n_blocks):
            blocks += [
                nn.Conv1d(width, channels, kernel_size=3, padding=1, bias=True),
                nn.BatchNorm1d(channels, affine=True, track_running_stats=False),
                nn.ReLU(),
                nn.MaxPool1d(2),
            ]
            width, side = channels, side // 2
        if side < 1:
            raise ValueError(f"length {length} is too short for {n_blocks} pooling blocks")
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.feature_dim = channels * side
        self.head = nn.Linear(self.feature_dim, n_classes)

    def inner_parameter_names(self) -> list[str]:
        """Every convolution's and the head's weight and bias (batch norm's pair adapts in the outer loop only)."""
        names = []
        for module_name, module in self.named_modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                names += [f"{module_name}.{tensor}" for tensor, _ in module.named_parameters(recurse=False)]
        return names

    def layer_labels(self) -> list[LayerLabel]:
        """``features.4.weight`` -> "block 2 conv weight" (depth 1), ``features.5.weight`` -> "block 2 BN scale (γ)",
        ``head.weight`` -> "head weight" (depth ``n_blocks``)."""
        modules = dict(self.named_modules())
        labels = []
        for name, _ in self.named_parameters():
            module_name, _, tensor = name.rpartition(".")
            module = modules[module_name]
            if module is self.head:
                labels.append(LayerLabel(name, f"head {tensor}", self.config["n_blocks"]))
                continue
            # features = n_blocks x [conv, BN, ReLU, max-pool], so module index // 4 is the block.
            block = int(module_name.split(".")[1]) // 4
            if isinstance(module, nn.BatchNorm1d):
                role = {"weight": "BN scale (γ)", "bias": "BN shift"}[tensor]
            else:
                role = f"conv {tensor}"
            labels.append(LayerLabel(name, f"block {block + 1} {role}", block))
        return labels
