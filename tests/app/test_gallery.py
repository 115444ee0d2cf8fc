"""The HTML galleries: names escaped and never broken mid-word, wrong guesses with an example of their class."""

from __future__ import annotations

import re

from app.gallery import Prediction, QueryCell, Thumbnail, image_mime, query_gallery_html, thumbnails_html
from tests.app.builders import encode, shape_image, shape_png

LONG = "Mkhedruli (Georgian) character twenty-seven with a very long descriptive name"


def test_long_names_stay_on_one_line_with_the_whole_name_on_hover() -> None:
    cell = QueryCell(shape_png(0, 0), "query.png", LONG, [Prediction("ALFA", LONG, 0.9, True)])
    page = query_gallery_html([cell])
    # Every text line is one no-wrap line cut with an ellipsis (CSS below), never a word split over two lines.
    assert ".fs-line { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }" in page
    assert "word-break" not in page and "overflow-wrap: anywhere" not in page
    assert f'<div class="fs-line" title="{LONG}">truth: <span class="fs-name">{LONG}</span></div>' in page


def test_names_and_file_names_are_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    page = query_gallery_html([QueryCell(shape_png(0, 0), evil, evil, [Prediction("ALFA", evil, 0.5, None)])])
    assert evil not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    thumbs = thumbnails_html([Thumbnail(shape_png(0, 0), evil, note=evil)])
    assert evil not in thumbs


def test_a_wrong_guess_shows_an_example_of_the_class_it_guessed() -> None:
    example = shape_png(1, 0)
    cells = [
        QueryCell(shape_png(0, 0), "right.png", "circle", [Prediction("ALFA", "circle", 0.8, True)]),
        QueryCell(shape_png(0, 1), "wrong.png", "circle", [Prediction("ALFA", "square", 0.7, False, example)]),
        QueryCell(shape_png(0, 2), "unknown.png", None, [Prediction("ALFA", "square", 0.6, None, example)]),
    ]
    page = query_gallery_html(cells)
    assert page.count('class="fs-cell fs-wrong"') == 1 and page.count('class="fs-example"') == 1
    assert re.search(r'wrong\.png.*?ALFA: <span class="fs-name">square</span> 70% <span class="fs-bad">✗</span>'
                     r'<img class="fs-example" src="data:image/png;base64,[^"]+" title="a support image of square"',
                     page, re.DOTALL)
    assert "truth: <i>unlabelled</i>" in page and page.count('<span class="fs-ok">✓</span>') == 1


def test_mime_types_are_read_from_the_bytes() -> None:
    image = shape_image(0, 0)
    assert image_mime(encode(image)) == "image/png"
    assert image_mime(encode(image.convert("RGB"), "JPEG")) == "image/jpeg"
    assert image_mime(encode(image, "GIF")) == "image/gif"
    assert image_mime(encode(image.convert("RGB"), "WEBP")) == "image/webp"
