"""Warnings about accepted uploads that would mislead: tiny images, duplicated files, stored display copies."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from core.data.domain import OMNIGLOT_STROKES
from core.data.images import ImageSpec
from core.data.uploads import ImageRef, duplicate_warnings, image_input, image_warnings
from tests.app.builders import encode, every_mode_image_files, shape_image, shape_png

SPEC = ImageSpec(channels=1, size=28, invert=True)


def test_an_image_smaller_than_the_model_input_is_named_with_its_size() -> None:
    tiny = encode(Image.new("L", (5, 5), 255))
    assert image_warnings(tiny, "dot.png", SPEC) == [
        "dot.png is only 5×5 pixels; the model enlarges it to 28×28 and sees a blurred copy."
    ]
    assert image_warnings(shape_png(0, 0), "circle.png", SPEC) == []  # 40x40: large enough


def test_a_reversed_drawing_is_warned_about_only_for_a_stroke_domain() -> None:
    night = encode(ImageOps.invert(shape_image(0, 0, 60)))
    assert image_warnings(night, "night.png", SPEC) == []
    [warning] = image_warnings(night, "night.png", SPEC, OMNIGLOT_STROKES)
    assert warning.startswith("night.png looks like light strokes on a dark background")


def test_duplicates_name_both_places_and_why() -> None:
    a, b, c = shape_png(0, 0), shape_png(1, 0), shape_png(2, 0)
    refs = [
        ImageRef.of("support", "a.png", a, "circle"),
        ImageRef.of("support", "b.png", b, "square"),
        ImageRef.of("support", "b-copy.png", b, "cross"),
        ImageRef.of("support", "a-again.png", a, "circle"),
        ImageRef.of("query", "q.png", a),
        ImageRef.of("query", "fresh.png", c),
    ]
    assert duplicate_warnings(refs) == [
        ("Support image b-copy.png of 'cross' is the same file as support image b.png of 'square': one image in "
        "two classes contradicts itself."),
        ("Support image a-again.png of 'circle' is the same file as support image a.png of 'circle': it counts "
        "twice in its class."),
        ("Query q.png is the same file as support image a.png of 'circle': the model is shown the answer, so its "
        "prediction says nothing about new images."),
    ]
    assert duplicate_warnings(refs[:2] + refs[5:]) == []


def test_uploads_store_a_display_copy_only_when_the_file_cannot_be_shown_as_it_is() -> None:
    files = dict(every_mode_image_files())
    _tensor, plain = image_input(files["grey.png"], "grey.png", SPEC)
    assert plain.preview is None  # a small 8-bit PNG is shown as it is
    _tensor, deep = image_input(files["grey16.png"], "grey16.png", SPEC)
    with Image.open(io.BytesIO(deep.preview)) as preview:
        assert preview.format == "PNG" and preview.mode == "L"
    big = encode(Image.new("RGB", (640, 480), (10, 200, 30)), "JPEG")
    _tensor, photo = image_input(big, "photo.jpg", SPEC)
    with Image.open(io.BytesIO(photo.preview)) as preview:
        assert preview.size == (128, 96) and preview.mode == "RGB"
