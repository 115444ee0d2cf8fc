"""Regression network of the sine experiments (MAML / ALFA section 4.5)."""

from __future__ import annotations

from torch import nn

from models.backbones.base import BackboneModule, LayerLabel, register_backbone


@register_backbone("mlp")
class MLP(BackboneModule):
    """ReLU hidden layers (default 40-40), linear output (``n_classes`` outputs: 1 for sine regression)."""

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

    def layer_labels(self) -> list[LayerLabel]:
        """Every parameter tensor, input to output: ``features.2.weight`` -> "hidden 2 weight" (depth 1),
        ``head.bias`` -> "head bias" (depth = number of hidden layers)."""
        modules = dict(self.named_modules())
        labels = []
        for name, _ in self.named_parameters():
            module_name, _, tensor = name.rpartition(".")
            if modules[module_name] is self.head:
                labels.append(LayerLabel(name, f"head {tensor}", len(self.config["hidden"])))
                continue
            # features = [linear, ReLU] per hidden layer.
            layer = int(module_name.split(".")[1]) // 2
            labels.append(LayerLabel(name, f"hidden {layer + 1} {tensor}", layer))
        return labels
