"""What the engine needs of a network (:class:`Backbone`), the registry backbones add themselves to, and the
shared building blocks.

Every backbone is run through ``torch.func.functional_call`` with a dict of fast weights during adaptation,
so nothing here keeps per-task state. Batch norm always normalises with the statistics of the batch it sees
(``track_running_stats=False``), as in ALFA and MAML: support and query sets are normalised separately and no
running statistics exist to be corrupted by an adaptation.

Each backbone splits into ``features`` (image -> embedding) and ``head`` (``nn.Linear`` embedding -> class
scores). ``forward(x, features_only=True)`` returns the embedding; that is what a prototype head is built
from and why the head can be replaced by one for any number of classes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

__all__ = [
    "Backbone",
    "BackboneModule",
    "HeadNames",
    "LayerLabel",
    "batch_norm",
    "register_backbone",
    "tensor_role",
]


@dataclass(frozen=True)
class LayerLabel:
    """A parameter tensor's readable name (``label``) and its ``depth``: 0 for the layer nearest the input, one
    more for each layer further along the forward path; a layer's weight and bias share a depth."""

    name: str
    label: str
    depth: int


@dataclass(frozen=True)
class HeadNames:
    """The fast-weight names of a backbone's linear classifier head (``weight`` [n_classes, feature_dim], ``bias``)."""

    weight: str
    bias: str


@runtime_checkable
class Backbone(Protocol):
    """What the engine needs of a network; the functions of :mod:`models.backbones` read nothing else.

    - ``config``: the JSON options that rebuild it with ``build_backbone`` (stored in every checkpoint), its
      registry name under ``"name"``;
    - ``feature_dim``: the length of the embedding ``forward(x, features_only=True)`` returns;
    - ``head``: the linear classifier on the embedding; the engine builds zero and prototype heads in its place
      (under the names :func:`models.backbones.head_names` finds);
    - ``layer_labels()``: a readable name and a depth for every parameter tensor, input to output;
    - ``inner_parameter_names()``: the tensors the inner loop may update (the rest are learned in the outer
      loop only), head included, in input-to-output order.
    """

    config: dict[str, Any]
    feature_dim: int
    head: nn.Linear

    def forward(self, x: torch.Tensor, features_only: bool = False) -> torch.Tensor: ...

    def layer_labels(self) -> list[LayerLabel]: ...

    def inner_parameter_names(self) -> list[str]: ...


class BackboneModule(nn.Module):
    """A :class:`Backbone` made of ``self.features`` then ``self.head``, whose convolutions and linear layers adapt.

    Subclasses set ``config``, ``features``, ``feature_dim`` and ``head`` and say how their tensors read
    (``layer_labels``); they override ``inner_parameter_names`` when other tensors should adapt.
    """

    config: dict[str, Any]
    features: nn.Module
    feature_dim: int
    head: nn.Linear

    def forward(self, x: torch.Tensor, features_only: bool = False) -> torch.Tensor:
        z = self.features(x)
        return z if features_only else self.head(z)

    def layer_labels(self) -> list[LayerLabel]:
        raise NotImplementedError(f"{type(self).__name__} must label its parameter tensors")

    def inner_parameter_names(self) -> list[str]:
        """Every convolution and linear weight and bias: batch-norm affine parameters are learned in the outer
        loop only (as in the ALFA code)."""
        names = []
        for module_name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                for param_name, _ in module.named_parameters(recurse=False):
                    names.append(f"{module_name}.{param_name}" if module_name else param_name)
        return names


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """Batch norm on the statistics of the current batch only, with a learned scale and shift."""
    return nn.BatchNorm2d(channels, affine=True, track_running_stats=False)


def tensor_role(module: nn.Module, tensor: str) -> str:
    """What a parameter does in its module: batch norm's pair is a scale (γ) and a shift, the rest weight and bias.

    The shift is not written "β" because the dashboard plots ALFA's β (the weight multiplier) beside these names.
    """
    if isinstance(module, nn.BatchNorm2d):
        return {"weight": "scale (γ)", "bias": "shift"}.get(tensor, tensor)
    return tensor


# --------------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[nn.Module]] = {}
_Network = TypeVar("_Network", bound=type[nn.Module])
_REQUIRED_METHODS = ("forward", "layer_labels", "inner_parameter_names")


def register_backbone(name: str) -> Callable[[_Network], _Network]:
    """Class decorator: make the backbone buildable as ``{"name": name, ...}`` (its constructor's options).

    The class must be an ``nn.Module`` with the :class:`Backbone` methods; ``config``, ``feature_dim`` and
    ``head`` are instance attributes, checked by ``build_backbone`` on each network it builds.
    """

    def register(cls: _Network) -> _Network:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"backbone {name!r} must be an nn.Module class, got {cls!r}")
        missing = [method for method in _REQUIRED_METHODS if not callable(getattr(cls, method, None))]
        if missing:
            raise TypeError(f"backbone {name!r} ({cls.__name__}) lacks {', '.join(missing)}")
        if "features_only" not in inspect.signature(cls.forward).parameters:
            raise TypeError(f"backbone {name!r} ({cls.__name__}): forward must take features_only")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"two backbones are registered as {name!r}: {_REGISTRY[name].__name__} and {cls.__name__}")
        _REGISTRY[name] = cls
        return cls

    return register
