"""Image galleries as one HTML block: hundreds of thumbnails render as fast as one element.

One ``st.html`` element per gallery instead of a Streamlit column and ``st.image`` per picture: a 20-way run with
300 queries is one element to send and lay out, not 900. Thumbnails travel inline as ``data:`` URIs of the
stored display copies (a few hundred bytes each for drawings). Names never break mid-word: a name too long for
its cell ends in an ellipsis and shows whole on hover.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import streamlit as st

_STYLE = """
<style>
.fs-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--fs-cell, 150px), 1fr));
           gap: 8px; font-size: 0.85rem; line-height: 1.35; }
.fs-cell { border: 1px solid rgba(128, 128, 128, 0.35); border-radius: 6px; padding: 6px; min-width: 0; }
.fs-cell.fs-wrong { border-color: #d33; box-shadow: inset 0 0 0 1px #d33; }
.fs-cell img.fs-main { display: block; width: var(--fs-image, 84px); height: var(--fs-image, 84px);
                       object-fit: contain; margin: 0 auto 4px auto; background: #fff;
                       image-rendering: var(--fs-rendering, auto); }
.fs-line { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.fs-name { font-weight: 600; }
.fs-file { color: rgba(128, 128, 128, 0.95); font-size: 0.75rem; }
.fs-ok { color: #1a7f37; } .fs-bad { color: #d33; font-weight: 600; }
.fs-note { color: #b26b00; font-size: 0.75rem; white-space: normal; overflow-wrap: normal; }
.fs-example { width: 22px; height: 22px; object-fit: contain; vertical-align: middle; background: #fff;
              border: 1px solid rgba(128, 128, 128, 0.5); margin-left: 3px; }
.fs-row { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; }
.fs-thumb { text-align: center; width: var(--fs-image, 64px); }
.fs-thumb img { width: var(--fs-image, 64px); height: var(--fs-image, 64px); object-fit: contain; background: #fff;
                border: 1px solid rgba(128, 128, 128, 0.35); border-radius: 4px;
                image-rendering: var(--fs-rendering, auto); }
.fs-thumb .fs-line { font-size: 0.7rem; }
</style>
"""


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_mime(data: bytes) -> str:
    """The mime type of a browser image from its first bytes (PNG, JPEG, GIF or WebP)."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _text(value: str) -> str:
    return html.escape(str(value), quote=True)


@dataclass
class Prediction:
    """One rule's answer for a query: the guessed class, its probability, and whether it is right (if known)."""

    rule: str
    guess: str
    confidence: float
    correct: bool | None
    guess_example: bytes | None = None  # a support image of the guessed class, shown beside a wrong guess


@dataclass
class QueryCell:
    image: bytes
    file_name: str
    truth: str | None
    predictions: list[Prediction] = field(default_factory=list)


@dataclass
class Thumbnail:
    image: bytes
    caption: str
    note: str | None = None  # e.g. a warning about this image, shown under it


def _sizing(image_px: int, pixelated: bool) -> str:
    return f"--fs-image: {image_px}px; --fs-rendering: {'pixelated' if pixelated else 'auto'};"


def query_gallery_html(cells: Sequence[QueryCell], image_px: int = 84, pixelated: bool = False) -> str:
    """Queries with their truth and every rule's guess (a wrong one with an example of the class it guessed)."""
    parts = [_STYLE, f'<div class="fs-grid" style="{_sizing(image_px, pixelated)}">']
    for cell in cells:
        wrong = any(p.correct is False for p in cell.predictions)
        parts.append(f'<div class="fs-cell{" fs-wrong" if wrong else ""}">')
        parts.append(f'<img class="fs-main" src="{data_uri(cell.image, image_mime(cell.image))}" '
                     f'alt="{_text(cell.file_name)}">')
        parts.append(f'<div class="fs-line fs-file" title="{_text(cell.file_name)}">{_text(cell.file_name)}</div>')
        if cell.truth is None:
            parts.append('<div class="fs-line">truth: <i>unlabelled</i></div>')
        else:
            parts.append(f'<div class="fs-line" title="{_text(cell.truth)}">truth: '
                         f'<span class="fs-name">{_text(cell.truth)}</span></div>')
        for prediction in cell.predictions:
            mark = ""
            if prediction.correct is True:
                mark = ' <span class="fs-ok">✓</span>'
            elif prediction.correct is False:
                mark = ' <span class="fs-bad">✗</span>'
                if prediction.guess_example is not None:
                    mark += (f'<img class="fs-example" src="{data_uri(prediction.guess_example, image_mime(prediction.guess_example))}" '
                             f'title="a support image of {_text(prediction.guess)}" alt="example of {_text(prediction.guess)}">')
            parts.append(
                f'<div class="fs-line" title="{_text(prediction.rule)}: {_text(prediction.guess)} '
                f'{100 * prediction.confidence:.1f}%">{_text(prediction.rule)}: <span class="fs-name">'
                f'{_text(prediction.guess)}</span> {100 * prediction.confidence:.0f}%{mark}</div>'
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def thumbnails_html(thumbnails: Sequence[Thumbnail], image_px: int = 64, pixelated: bool = False) -> str:
    """A wrapping row of small captioned images (support sets, a class's collected drawings)."""
    parts = [_STYLE, f'<div class="fs-row" style="{_sizing(image_px, pixelated)}">']
    for thumb in thumbnails:
        parts.append('<div class="fs-thumb">')
        parts.append(f'<img src="{data_uri(thumb.image, image_mime(thumb.image))}" alt="{_text(thumb.caption)}">')
        parts.append(f'<div class="fs-line" title="{_text(thumb.caption)}">{_text(thumb.caption)}</div>')
        if thumb.note:
            parts.append(f'<div class="fs-note" title="{_text(thumb.note)}">⚠</div>')
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def show(html_text: str) -> None:
    st.html(html_text)
