"""How far a user's image lies from what a checkpoint was trained on: the checks behind the upload warnings.

A checkpoint trained on line drawings (Omniglot) has only ever seen dark strokes on light paper, turned by its
image spec into light strokes (1.0) on black (0.0), covering a small share of the picture. An image drawn the
other way round (white on black), a photo, or a filled shape gives the model inputs unlike anything it saw,
and it then answers with confidence but at random. These checks measure the model input itself, so they
apply the same preprocessing the model does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.data.images import ImageSpec, decode_image

__all__ = ["OMNIGLOT_STROKES", "StrokeDomain", "domain_warnings", "ink_statistics", "stroke_domain_of"]

# Pixels brighter than this in the model's [0, 1] input count as ink.
INK_LEVEL = 0.5
# Width in pixels of the border ring whose ink tells the background's polarity.
BORDER = 2


@dataclass(frozen=True)
class StrokeDomain:
    """Line drawings as a stroke-trained model sees them, described by the extremes of its training images.

    ``max_ink`` is the largest share of ink pixels of any training image at the model's input size, and
    ``max_border_ink`` the largest mean value of its outer ``BORDER``-pixel ring. An image beyond either has
    more ink, or ink along its edges, than anything the checkpoint saw.
    """

    dataset: str
    max_ink: float
    max_border_ink: float


# Measured over all 5,840 images of the 8 Omniglot alphabets in ../shared/datasets/omniglot at 28x28 with the
# Omniglot spec (largest ink share 0.208, largest border ink 0.152), rounded up; tests/core/data/test_domain.py
# measures them again on the real data and fails if any image lies outside.
OMNIGLOT_STROKES = StrokeDomain(dataset="Omniglot", max_ink=0.21, max_border_ink=0.16)

_STROKE_DATASETS = {"omniglot": OMNIGLOT_STROKES}


def stroke_domain_of(image: ImageSpec | None, dataset_kind: str | None) -> StrokeDomain | None:
    """The stroke domain of a checkpoint trained on line drawings (today: Omniglot), else ``None``: its image
    preprocessing and the kind of dataset it was trained on (``core.checkpoint.TrainingData.kind``)."""
    if image is None or not image.invert or image.channels != 1 or dataset_kind is None:
        return None
    return _STROKE_DATASETS.get(dataset_kind.lower())


def ink_statistics(model_input: torch.Tensor) -> tuple[float, float]:
    """``(ink share, border ink)`` of one grey model input in [0, 1] (shape ``[1, H, W]`` or ``[H, W]``)."""
    pixels = model_input.reshape(model_input.shape[-2:]).float()
    border = torch.ones_like(pixels, dtype=torch.bool)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    return float((pixels > INK_LEVEL).float().mean()), float(pixels[border].mean())


def domain_warnings(data: bytes, name: str, spec: ImageSpec, domain: StrokeDomain) -> list[str]:
    """What makes this image unlike the checkpoint's training drawings, in words (empty when nothing does)."""
    tensor = decode_image(data, spec, name)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    ink, border_ink = ink_statistics((tensor * std + mean).clamp(0.0, 1.0))
    if border_ink > domain.max_border_ink and ink > 0.5:
        reversed_colours = (
            f"{name} looks like light strokes on a dark background. The checkpoint learned dark strokes on light "
            f"paper ({domain.dataset}), so it sees this image with its colours reversed; draw dark on light."
        )
        return [reversed_colours]
    warnings = []
    if ink > domain.max_ink:
        warnings.append(
            f"{name} is {100 * ink:.0f}% ink as the model sees it; no {domain.dataset} character has more than "
            f"{100 * domain.max_ink:.0f}%. Thin strokes on a plain background work best."
        )
    elif border_ink > domain.max_border_ink:
        warnings.append(
            f"{name} has ink along its edges; {domain.dataset} characters sit inside a blank margin. Leave space "
            "around the drawing."
        )
    return warnings
