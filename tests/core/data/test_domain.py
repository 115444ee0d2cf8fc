"""Domain checks of user drawings against a stroke-trained checkpoint's training images."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from PIL import Image, ImageOps

from core.data.domain import OMNIGLOT_STROKES, domain_warnings, ink_statistics, stroke_domain_of
from core.data.images import OMNIGLOT_SPEC, ImageSpec, decode_image
from tests.app.builders import TINY_IMAGE, encode, shape_image


def test_omniglot_bounds_hold_for_every_real_image(real_omniglot: Path) -> None:
    """The constants are the extremes of the real data: no Omniglot image may lie outside them."""
    files = sorted(real_omniglot.rglob("*.png"))
    assert len(files) > 1000
    stats = [ink_statistics(decode_image(f, OMNIGLOT_SPEC)) for f in files]  # mean 0, std 1: the input is in [0, 1]
    largest_ink = max(ink for ink, _border in stats)
    largest_border = max(border for _ink, border in stats)
    assert largest_ink <= OMNIGLOT_STROKES.max_ink and largest_border <= OMNIGLOT_STROKES.max_border_ink
    # ... and they are tight: rounded up by at most 0.01 from what the data gives.
    assert OMNIGLOT_STROKES.max_ink - largest_ink < 0.01 and OMNIGLOT_STROKES.max_border_ink - largest_border < 0.01


def test_a_dark_drawing_on_light_paper_raises_nothing() -> None:
    data = encode(shape_image(0, 0, size=105))
    assert domain_warnings(data, "circle.png", OMNIGLOT_SPEC, OMNIGLOT_STROKES) == []


def test_white_on_black_drawing_is_called_reversed() -> None:
    data = encode(ImageOps.invert(shape_image(0, 0, size=105)))
    [warning] = domain_warnings(data, "night.png", OMNIGLOT_SPEC, OMNIGLOT_STROKES)
    assert "night.png looks like light strokes on a dark background" in warning and "draw dark on light" in warning


def test_a_filled_shape_has_too_much_ink() -> None:
    image = Image.new("L", (105, 105), 255)
    image.paste(0, (20, 20, 85, 85))  # a solid square: (65/105)^2 = 38% of the picture, inside a margin
    [warning] = domain_warnings(encode(image), "blob.png", OMNIGLOT_SPEC, OMNIGLOT_STROKES)
    assert "more than 21%" in warning
    # At 28x28 the square is 17.3 pixels wide; antialiasing may add or remove one pixel on each side of its
    # edge: (15..19)^2 / 784 = 29%..46% ink.
    share = int(re.search(r"blob.png is (\d+)% ink", warning)[1])
    assert 29 <= share <= 46


def test_ink_along_the_edges_is_named() -> None:
    image = shape_image(0, 0, size=105)
    image.paste(0, (0, 0, 105, 8))  # a ruled line along the top edge (2 of 28 rows: within the border ring)
    [warning] = domain_warnings(encode(image), "ruled.png", OMNIGLOT_SPEC, OMNIGLOT_STROKES)
    assert "ink along its edges" in warning


def test_ink_statistics_counts_ink_share_and_border_mean() -> None:
    pixels = torch.zeros(1, 10, 10)
    pixels[0, 4:6, 4:6] = 1.0  # 4 ink pixels of 100, none on the 2-pixel border ring (100 - 6*6 = 64 pixels)
    pixels[0, 0, 0] = 0.5  # on the border, not ink (ink is > 0.5)
    ink, border = ink_statistics(pixels)
    # Means of a few exact values in float32: equal to the float32 rounding of the exact result.
    assert ink == float(torch.tensor(4 / 100)) and border == float(torch.tensor(0.5 / 64))


def test_only_stroke_trained_checkpoints_have_a_stroke_domain() -> None:
    image = ImageSpec.from_dict(TINY_IMAGE)
    assert stroke_domain_of(image, "omniglot") is OMNIGLOT_STROKES
    assert stroke_domain_of(ImageSpec.from_dict({**TINY_IMAGE, "invert": False}), "omniglot") is None
    assert stroke_domain_of(image, "folder") is None
    assert stroke_domain_of(image, None) is None  # the checkpoint does not say what it was trained on
    assert stroke_domain_of(None, "omniglot") is None
