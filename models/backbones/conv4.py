"""4-CONV of MAML (Finn et al., 2017) and ALFA (Baik et al., 2020)."""

from __future__ import annotations

from torch import nn

from models.backbones.base import BackboneModule, LayerLabel, batch_norm, register_backbone, tensor_role


@register_backbone("conv4")
class Conv4(BackboneModule):
    """``n_blocks`` x [conv3x3 (bias) - BN - leaky ReLU(0.01) - max-pool 2] + linear head.

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
                batch_norm(filters),
                nn.LeakyReLU(0.01),
                nn.MaxPool2d(2),
            ]
            channels, side = filters, side // 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {n_blocks} pooling blocks")
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.feature_dim = filters * side * side
        self.head = nn.Linear(self.feature_dim, n_classes)

    def layer_labels(self) -> list[LayerLabel]:
        """Every parameter tensor, input to output: ``features.4.weight`` -> "block 2 conv weight" (depth 1),
        ``features.5.weight`` -> "block 2 BN scale (γ)", ``head.weight`` -> "head weight" (depth ``n_blocks``)."""
        modules = dict(self.named_modules())
        labels = []
        for name, _ in self.named_parameters():
            module_name, _, tensor = name.rpartition(".")
            module = modules[module_name]
            if module is self.head:
                labels.append(LayerLabel(name, f"head {tensor}", self.config["n_blocks"]))
                continue
            # features = n_blocks x [conv, BN, leaky ReLU, max-pool], so module index // 4 is the block.
            block = int(module_name.split(".")[1]) // 4
            part = "BN" if isinstance(module, nn.BatchNorm2d) else "conv"
            labels.append(LayerLabel(name, f"block {block + 1} {part} {tensor_role(module, tensor)}", block))
        return labels
