"""Dataset factories: the image sets a training config names, built in one place for training, evaluation and packaging."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.data.folders import FolderImageSet, MiniImageNetCSVImageSet
from core.data.images import ImageSpec
from core.data.mnist1d import MNIST1DSet
from core.data.omniglot import OmniglotImageSet, ensure_omniglot
from core.data.sampler import LabelledImageSet
from core.settings import omniglot_root

if TYPE_CHECKING:  # the data layer reads a config but does not depend on the config module (which checks registries)
    from core.config import TrainConfig

__all__ = ["build_image_set", "image_spec"]


def image_spec(config: TrainConfig) -> ImageSpec:
    """How the config's images are read and normalised (what a checkpoint records as ``image``)."""
    data = config.data
    return ImageSpec(
        channels=data.channels, size=data.image_size, invert=data.invert, mean=tuple(data.mean), std=tuple(data.std)
    )


def build_image_set(config: TrainConfig, role: str) -> LabelledImageSet:
    """The image set of ``role`` (train / val / test) described by ``config.data``."""
    data = config.data
    spec = image_spec(config)
    selection = getattr(data, role)
    if data.kind == "omniglot":
        root = ensure_omniglot(data.root or omniglot_root(), download=data.download)
        rotations = tuple(data.rotations) if role == "train" else (0,)
        return OmniglotImageSet(root, alphabets=selection or None, rotations=rotations, spec=spec, name=f"omniglot-{role}")
    if len(selection) != 1:
        raise ValueError(f"data.{role} must name exactly one split for data.kind {data.kind!r}")
    if data.kind == "mnist1d":  # generated in memory (core.data.mnist1d): no root
        return MNIST1DSet(selection[0])
    if not data.root:
        raise ValueError(f"data.root must point to the dataset folder for data.kind {data.kind!r}")
    if data.kind == "folder":
        return FolderImageSet(data.root, selection[0], spec, name=f"{Path(data.root).name}-{selection[0]}")
    if data.kind == "miniimagenet_csv":
        return MiniImageNetCSVImageSet(data.root, selection[0], spec, name=f"miniimagenet-{selection[0]}")
    raise ValueError(f"data.kind {data.kind!r} has no image sets")
