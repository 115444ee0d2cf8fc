"""Seeded random affine augmentation of training images (rotation, shear, scale, shift per image).

Meta-training on Omniglot sees each of its few hundred training characters in many episodes; a small random
affine distortion of every drawing makes each appearance a slightly different drawing, the usual way to make
a stronger character model from the same data. The transform of an image is a pure function of the run's
seed and the task's index (:func:`augment_generator`), so a resumed run sees exactly the augmented tasks an
uninterrupted one would. Only training tasks are augmented; validation and test episodes are the drawings as
they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from core.data.images import ImageSpec
from core.data.task import Task

__all__ = [
    "AffineParameters",
    "AugmentConfig",
    "SupportAugment",
    "augment_generator",
    "augment_task",
    "background_fill",
    "draw_affine",
    "expand_support",
    "random_affine",
]

# Third word of the seed sequence of a task's augmentation: the episode sampler seeds task ``index`` with
# ``[seed, index]``, so the augmentation's draws form a stream of their own, independent of which classes and
# drawings the episode picked.
_AUGMENT_STREAM = 0x61756720  # "aug "
# Test-time augmentation of held-out episodes draws from a stream of its own too, so that it never repeats a
# training task's distortions when a held-out seed and index happen to equal a training one.
_SUPPORT_STREAM = 0x74746120  # "tta "


def _number(name: str, value: Any) -> float:
    # bool is an int in Python; "rotation = true" is a mistake, not 1 degree.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class AugmentConfig:
    """The ranges of the random affine transform of training images; the defaults leave images unchanged.

    Each image gets its own transform, about the image's centre: a rotation by an angle drawn uniformly from
    ``[-rotation, rotation]`` degrees (counter-clockwise positive), shears along x and along y each drawn from
    ``[-shear, shear]`` degrees, a scale factor drawn from ``[scale[0], scale[1]]``, and a shift along x and
    along y each drawn from ``[-translate, translate]`` times the image's width / height and rounded to whole
    pixels (torchvision's ``RandomAffine`` convention).
    """

    rotation: float = 0.0  # degrees, 0 to 180
    shear: float = 0.0  # degrees, 0 to below 90
    scale: tuple[float, float] = (1.0, 1.0)  # 0 < low <= high
    translate: float = 0.0  # fraction of the image side, 0 to 1

    def __post_init__(self) -> None:
        rotation = _number("rotation", self.rotation)
        if not 0.0 <= rotation <= 180.0:
            raise ValueError(f"rotation must be from 0 to 180 degrees, not {self.rotation!r}")
        shear = _number("shear", self.shear)
        if not 0.0 <= shear < 90.0:
            raise ValueError(f"shear must be from 0 to below 90 degrees, not {self.shear!r}")
        if isinstance(self.scale, (str, bytes)) or not hasattr(self.scale, "__len__") or len(self.scale) != 2:
            raise ValueError(f"scale must be two numbers [low, high], not {self.scale!r}")
        low, high = (_number("scale", value) for value in self.scale)
        if not 0.0 < low <= high:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high, not {list(self.scale)!r}")
        translate = _number("translate", self.translate)
        if not 0.0 <= translate <= 1.0:
            raise ValueError(f"translate must be a fraction of the image side from 0 to 1, not {self.translate!r}")
        # Frozen: normalised through object.__setattr__, so configs from TOML (ints, lists) and from JSON compare equal.
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "shear", shear)
        object.__setattr__(self, "scale", (low, high))
        object.__setattr__(self, "translate", translate)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> AugmentConfig:
        """Read ``[data] augment = { rotation = 10, shear = 10, scale = [0.9, 1.1], translate = 0.1 }``; keys it
        leaves out keep their neutral default. ``ValueError`` for a key that is not an option or a bad value,
        ``TypeError`` when ``table`` is not a table."""
        if not isinstance(table, Mapping):
            raise TypeError(
                f"must be a table such as {{ rotation = 10, shear = 10, scale = [0.9, 1.1], translate = 0.1 }}, "
                f"not {table!r}"
            )
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ValueError(f"unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**table)

    @property
    def is_identity(self) -> bool:
        """Whether every transform it draws is the identity (the default: no augmentation)."""
        return self == AugmentConfig()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scale": list(self.scale)}


@dataclass(frozen=True)
class AffineParameters:
    """One image's transform, in ``torchvision.transforms.v2.functional.affine``'s terms."""

    angle: float  # degrees, counter-clockwise
    translate: tuple[int, int]  # pixels, (x, y)
    scale: float
    shear: tuple[float, float]  # degrees, (x, y)


def augment_generator(seed: int, index: int) -> np.random.Generator:
    """The generator of task ``index``'s augmentation in a run seeded ``seed``: a pure function of the two."""
    return np.random.default_rng([seed, index, _AUGMENT_STREAM])


def draw_affine(config: AugmentConfig, count: int, height: int, width: int, rng: np.random.Generator) -> list[AffineParameters]:
    """``count`` transforms drawn from ``config``'s ranges for ``height`` x ``width`` images (see :class:`AugmentConfig`)."""
    # One block of uniforms per parameter, always all of them, so the draws of one parameter do not depend on
    # which others are switched on.
    angles = rng.uniform(-config.rotation, config.rotation, size=count)
    shears = rng.uniform(-config.shear, config.shear, size=(count, 2))
    scales = rng.uniform(config.scale[0], config.scale[1], size=count)
    shifts = rng.uniform(-config.translate, config.translate, size=(count, 2)) * np.array([width, height])
    return [
        AffineParameters(
            angle=float(angles[i]),
            translate=(int(np.round(shifts[i, 0])), int(np.round(shifts[i, 1]))),
            scale=float(scales[i]),
            shear=(float(shears[i, 0]), float(shears[i, 1])),
        )
        for i in range(count)
    ]


def random_affine(
    images: torch.Tensor, config: AugmentConfig, rng: np.random.Generator, fill: list[float]
) -> torch.Tensor:
    """``images`` ``[B, C, H, W]``, each transformed by its own draw from ``config`` (bilinear interpolation,
    uncovered pixels set to ``fill``, one value per channel or one for all), as a new tensor.

    An identity ``config`` returns ``images`` itself, untouched: even an identity resampling is not bit-exact.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be a batch [B, C, H, W], got shape {tuple(images.shape)}")
    if config.is_identity:
        return images
    # Imported here: torchvision's transforms are slow to import and only training with augmentation needs them.
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2.functional import affine

    height, width = images.shape[-2:]
    parameters = draw_affine(config, images.shape[0], height, width, rng)
    return torch.stack([
        affine(
            image, angle=p.angle, translate=list(p.translate), scale=p.scale, shear=list(p.shear),
            interpolation=InterpolationMode.BILINEAR, fill=list(fill),
        )
        for image, p in zip(images, parameters)
    ])


def background_fill(spec: ImageSpec) -> list[float]:
    """Per channel, the model-input value of blank paper under ``spec``: what an affine transform uncovers.

    Blank paper is white (1.0 before normalisation; :func:`core.data.images.decode_image` composites
    transparency on white too), which inversion turns into 0.0 (Omniglot: light strokes on a black background).
    """
    paper = 0.0 if spec.invert else 1.0
    means = spec.mean * spec.channels if len(spec.mean) == 1 else spec.mean
    stds = spec.std * spec.channels if len(spec.std) == 1 else spec.std
    return [(paper - mean) / std for mean, std in zip(means, stds)]


def augment_task(task: Task, config: AugmentConfig, seed: int, index: int, fill: list[float]) -> Task:
    """Training task ``index`` of a run seeded ``seed`` with its support and query images randomly transformed
    (support first, then query, from :func:`augment_generator`); labels, class names and sources unchanged,
    the provenance records the ranges. An identity ``config`` returns ``task`` itself."""
    if config.is_identity:
        return task
    rng = augment_generator(seed, index)
    support_x = random_affine(task.support_x, config, rng, fill)
    query_x = random_affine(task.query_x, config, rng, fill)
    return replace(task, support_x=support_x, query_x=query_x,
                   provenance={**task.provenance, "augment": config.to_dict()})


@dataclass(frozen=True)
class SupportAugment:
    """Test-time augmentation of a held-out episode: ``copies`` randomly distorted copies of every support image
    (ranges ``ranges``) join the support set with the original's label, so a 1-shot episode is adapted on
    ``1 + copies`` drawings per class. Queries are never touched: they are what is being scored."""

    copies: int
    ranges: AugmentConfig

    def __post_init__(self) -> None:
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 1:
            raise ValueError(f"test-time augmentation needs at least 1 copy per support image, not {self.copies!r}")
        if not isinstance(self.ranges, AugmentConfig):
            raise TypeError(f"ranges must be an AugmentConfig, not {type(self.ranges).__name__}")
        if self.ranges.is_identity:
            raise ValueError("test-time augmentation with identity ranges only repeats each support image; "
                             "give a rotation, shear, scale or translate range")

    def to_dict(self) -> dict[str, Any]:
        return {"copies": self.copies, "ranges": self.ranges.to_dict()}


def expand_support(task: Task, augment: SupportAugment, seed: int, index: int, fill: list[float]) -> Task:
    """Held-out episode ``index`` of an evaluation seeded ``seed`` with ``augment.copies`` distorted copies of its
    support set appended (original first, then copy 1 of every image, copy 2, ...); the query set, class names
    and labels' meaning unchanged. The distortions are a pure function of ``(seed, index)``."""
    rng = np.random.default_rng([seed, index, _SUPPORT_STREAM])
    copies = [random_affine(task.support_x, augment.ranges, rng, fill) for _ in range(augment.copies)]
    sources = list(task.support_sources) + [
        f"{source} (augmented copy {copy + 1})" for copy in range(augment.copies) for source in task.support_sources
    ]
    return replace(
        task,
        support_x=torch.cat([task.support_x, *copies]),
        support_y=task.support_y.repeat(1 + augment.copies),
        support_sources=sources,
        provenance={**task.provenance, "test_time_augment": augment.to_dict()},
    )
