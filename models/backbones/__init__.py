"""Backbones for few-shot learning: a registry of plain ``nn.Module``s that follow the :class:`Backbone` protocol.

A new backbone is one module in this package plus its test: a class decorated with
``@register_backbone("name")`` (usually a :class:`BackboneModule`). Every module here is imported when the
package is, so it is buildable as ``build_backbone({"name": "name", ...})`` and nothing else names it.
The engine asks a network only what :class:`Backbone` declares, through the functions below.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from models.backbones.base import (
    _REGISTRY,
    Backbone,
    BackboneModule,
    HeadNames,
    LayerLabel,
    register_backbone,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneModule",
    "HeadNames",
    "LayerLabel",
    "backbone_parameters",
    "build_backbone",
    "head_names",
    "inner_parameter_names",
    "register_backbone",
    "registered_backbones",
    "xavier_reinitialise",
]

# Registry name -> class, read-only; filled by the modules of this package as they are imported.
BACKBONES: Mapping[str, type[nn.Module]] = MappingProxyType(_REGISTRY)


def _import_backbone_modules() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_backbone_modules()


def registered_backbones() -> list[str]:
    """The names ``build_backbone`` accepts, sorted."""
    return sorted(_REGISTRY)


def backbone_parameters(name: str | None) -> set[str]:
    """The constructor options backbone ``name`` takes (empty for an unknown name; ``build_backbone`` reports it)."""
    if name not in _REGISTRY:
        return set()
    return set(inspect.signature(_REGISTRY[name]).parameters)


def build_backbone(config: dict[str, Any]) -> Backbone:
    """Build a backbone from its JSON config (``{"name": "conv4", ...}``), as stored in checkpoint metadata."""
    options = dict(config)
    name = options.pop("name", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; choose one of {registered_backbones()}")
    try:
        model = _REGISTRY[name](**options)
    except TypeError as error:
        raise ValueError(f"bad options for backbone {name!r}: {error}") from None
    if not isinstance(model, Backbone):
        missing = [member for member in ("config", "feature_dim", "head") if not hasattr(model, member)]
        raise TypeError(f"backbone {name!r} ({type(model).__name__}) does not set {', '.join(missing)}")
    return model


def head_names(model: Backbone) -> HeadNames:
    """Where the backbone keeps its ``head``: the engine builds zero and prototype heads under these names."""
    head = model.head
    if not isinstance(head, nn.Linear) or head.bias is None:
        raise TypeError(f"{type(model).__name__}.head must be an nn.Linear with a bias")
    assert isinstance(model, nn.Module)
    prefix = next(name for name, module in model.named_modules() if module is head)
    return HeadNames(weight=f"{prefix}.weight", bias=f"{prefix}.bias")


def inner_parameter_names(model: Backbone) -> list[str]:
    """The tensors the inner loop may update, as the backbone declares them (``inner_parameter_names()``).

    Raises ``ValueError`` for a declared name that is not one of the network's parameters or is given twice.
    """
    names = list(model.inner_parameter_names())
    assert isinstance(model, nn.Module)
    parameters = dict(model.named_parameters())
    unknown = [name for name in names if name not in parameters]
    if unknown:
        raise ValueError(f"{type(model).__name__} declares inner-loop tensors it does not have: {unknown}")
    if len(set(names)) != len(names):
        raise ValueError(f"{type(model).__name__} declares an inner-loop tensor twice: {names}")
    return names


def xavier_reinitialise(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Random initialisation of ALFA's random-init experiments: Xavier-uniform weights, zero biases, for every
    convolution and linear layer (batch norm keeps its unit scale and zero shift)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
