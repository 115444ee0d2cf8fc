"""Readable names of a backbone's parameter tensors, for every chart and table that shows per-layer values.

Each backbone declares its labels (``models.backbones``: ``layer_labels()``); this module is how the app reads
them, since the app does not import ``models``. A tensor no backbone declares keeps its raw name.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import torch

from models.backbones import LayerLabel, build_backbone

__all__ = ["LayerLabel", "label_layers", "layer_labels"]


@functools.lru_cache(maxsize=32)
def _declared(config_json: str) -> tuple[LayerLabel, ...]:
    # Built on the meta device: shapes and names only, no memory and no initialisation work, so even a
    # full-width ResNet12 is labelled in milliseconds.
    with torch.device("meta"):
        backbone = build_backbone(json.loads(config_json))
    return tuple(backbone.layer_labels())


def layer_labels(backbone_config: dict[str, Any] | None) -> list[LayerLabel]:
    """Every parameter tensor of the backbone ``backbone_config`` describes, input to output.

    ``[]`` when there is no config (a run whose checkpoint row was deleted) or it describes no known backbone.
    """
    if not backbone_config:
        return []
    try:
        return list(_declared(json.dumps(backbone_config, sort_keys=True)))
    except (ValueError, TypeError, KeyError):
        return []


def label_layers(names: Sequence[str], backbone_config: dict[str, Any] | None) -> list[LayerLabel]:
    """``names`` (e.g. the tensors of an alpha/beta trace) labelled and put in input-to-output order.

    Names the backbone declares come first, in its order, with its labels and depths; any other name keeps
    its raw name as label and follows in the given order, one depth further each, so that colouring by depth
    still tells them apart.
    """
    declared = {label.name: (index, label) for index, label in enumerate(layer_labels(backbone_config))}
    known = sorted((declared[name] for name in dict.fromkeys(names) if name in declared), key=lambda pair: pair[0])
    labelled = [label for _, label in known]
    depth = max((label.depth for label in labelled), default=-1)
    for name in dict.fromkeys(names):
        if name not in declared:
            depth += 1
            labelled.append(LayerLabel(name, name, depth))
    return labelled
