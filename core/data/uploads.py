"""Episodes built from uploaded files (the dashboard's "upload" source) and the files behind benchmark episodes.

Both functions return the episode's images as :class:`EpisodeImage` values carrying the original file bytes,
so that the run service (``core.runs``) can store exactly what the model saw and an old run can be shown and
re-run. They are plain data: this module knows nothing of the run store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from PIL import Image

from core.data.domain import StrokeDomain, domain_warnings
from core.data.images import ImageError, ImageSpec, decode_image, preview_png
from core.data.task import Task
from core.settings import max_upload_bytes

__all__ = [
    "EpisodeImage",
    "ImageFile",
    "ImageRef",
    "duplicate_warnings",
    "episode_from_uploads",
    "image_input",
    "image_warnings",
    "items_from_benchmark",
    "normalise_class_name",
]



@dataclass(frozen=True)
class ImageFile:
    """One image file as uploaded or read from disk, described without decoding it again."""

    data: bytes
    mime: str
    width: int  # of the upright image (EXIF rotation applied)
    height: int
    source_name: str  # file name, or the last parts of a dataset path
    preview: bytes | None = None  # a small display PNG (``core.data.images.preview_png``)


@dataclass(frozen=True)
class EpisodeImage:
    """One support or query image of an episode; ``label`` indexes the episode's ``class_names``."""

    role: Literal["support", "query"]
    position: int  # order within its role: the episode's tensors follow it
    label: int | None  # None only for an unlabelled query
    image: ImageFile


UploadedFile = tuple[str, bytes]  # (file name, bytes)
UploadedQuery = tuple[str, bytes, str | None]  # (file name, bytes, class name or None when unlabelled)

_ROTATED = re.compile(r"^(?P<path>.+)@rot(?P<degrees>90|180|270)$")


def normalise_class_name(name: str) -> str:
    """The form class names are compared in: surrounding/inner whitespace collapsed, case folded."""
    return " ".join(str(name).split()).casefold()


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def image_input(
    data: bytes, name: str, spec: ImageSpec, max_bytes: int | None = None
) -> tuple[torch.Tensor, ImageFile]:
    """Decode one file for the model and describe it (mime type, upright width and height, preview).

    Raises :class:`ImageError` naming ``name`` for an empty, oversized, non-image, truncated or bomb file.
    """
    limit = max_upload_bytes() if max_bytes is None else max_bytes
    data = bytes(data)
    if len(data) > limit:
        raise ImageError(f"{name}: file is too large ({_megabytes(len(data))}; the limit is {_megabytes(limit)})")
    tensor = decode_image(data, spec, name=name)  # every content check (empty, corrupt, bomb, mode) lives here
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        mime = Image.MIME.get(image.format or "", "application/octet-stream")
        try:
            orientation = image.getexif().get(0x0112, 1)
        except Exception:  # noqa: BLE001 - a malformed EXIF block: decode_image kept the stored orientation too
            orientation = 1
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees: the upright image is transposed
        width, height = height, width
    preview = preview_png(data, name=name)
    return tensor, ImageFile(data=data, mime=mime, width=width, height=height, source_name=name, preview=preview)


def image_warnings(data: bytes, name: str, spec: ImageSpec, domain: StrokeDomain | None = None) -> list[str]:
    """What may mislead about one accepted image, in words: too small for the model's input (it is enlarged
    and blurred), or unlike the checkpoint's training drawings (``domain``, see :mod:`core.data.domain`)."""
    warnings = []
    with Image.open(io.BytesIO(bytes(data))) as image:
        width, height = image.size
        # A malformed EXIF block: the stored orientation is what is decoded.
        with contextlib.suppress(Exception):
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
    if min(width, height) < spec.size:
        warnings.append(
            f"{name} is only {width}×{height} pixels; the model enlarges it to {spec.size}×{spec.size} and sees "
            "a blurred copy."
        )
    if domain is not None:
        warnings.extend(domain_warnings(data, name, spec, domain))
    return warnings


@dataclass(frozen=True)
class ImageRef:
    """Where one image of a user episode is: its role, its class (support) and file name, and its hash."""

    role: str  # "support" or "query"
    name: str
    sha256: str
    class_name: str | None = None

    @classmethod
    def of(cls, role: str, name: str, data: bytes, class_name: str | None = None) -> ImageRef:
        return cls(role, name, hashlib.sha256(bytes(data)).hexdigest(), class_name)

    def describe(self) -> str:
        return f"support image {self.name} of {self.class_name!r}" if self.role == "support" else f"query {self.name}"


def duplicate_warnings(images: Sequence[ImageRef]) -> list[str]:
    """The same file used twice in one episode, in words: a query that is also a support image (its answer
    says nothing about generalisation), or one support image in two classes or twice in one class."""
    first: dict[str, ImageRef] = {}
    warnings = []
    for ref in images:
        seen = first.get(ref.sha256)
        if seen is None:
            first[ref.sha256] = ref
            continue
        if ref.role == "query" and seen.role == "support":
            why = "the model is shown the answer, so its prediction says nothing about new images"
        elif ref.role == "support" and seen.class_name != ref.class_name:
            why = "one image in two classes contradicts itself"
        elif ref.role == "support":
            why = "it counts twice in its class"
        else:
            why = "it is classified twice"
        warnings.append(f"{ref.describe()[0].upper()}{ref.describe()[1:]} is the same file as {seen.describe()}: {why}.")
    return warnings


def _class_names(classes: Sequence[tuple[str, Sequence[UploadedFile]]]) -> tuple[list[str], dict[str, int]]:
    """The classes' names as typed (trimmed) and each normalised name's label; refuses what cannot be an episode."""
    if len(classes) < 2:
        raise ValueError(f"an episode needs at least 2 classes to classify between, got {len(classes)}")
    class_names: list[str] = []
    label_of: dict[str, int] = {}
    for position, (raw_name, _files) in enumerate(classes, start=1):
        name = " ".join(str(raw_name or "").split())
        if not name:
            raise ValueError(f"class {position} has no name; give every class a name")
        key = normalise_class_name(name)
        if key in label_of:
            raise ValueError(
                f"two classes are both called {name!r} (names are compared ignoring case and spaces: "
                f"{class_names[label_of[key]]!r}); give each class its own name"
            )
        label_of[key] = len(class_names)
        class_names.append(name)
    empty = [class_names[index] for index, (_name, files) in enumerate(classes) if not files]
    if empty:
        raise ValueError(f"these classes have no support images: {', '.join(repr(n) for n in empty)}")
    return class_names, label_of


def _query_labels(
    queries: Sequence[UploadedQuery], class_names: list[str], label_of: dict[str, int]
) -> list[int | None]:
    """Each query's label (``None`` when it has none); a label that names no class is refused."""
    labels: list[int | None] = []
    for file_name, _data, label in queries:
        if label is None or not str(label).strip():
            labels.append(None)
            continue
        key = normalise_class_name(label)
        if key not in label_of:
            raise ValueError(
                f"query {file_name} is labelled {label!r}, which is not one of the classes "
                f"({', '.join(repr(n) for n in class_names)})"
            )
        labels.append(label_of[key])
    return labels


def episode_from_uploads(
    classes: Sequence[tuple[str, Sequence[UploadedFile]]],
    queries: Sequence[UploadedQuery],
    spec: ImageSpec,
    max_bytes: int | None = None,
) -> tuple[Task, list[EpisodeImage]]:
    """An episode from uploaded files: ``classes`` is ``[(class name, [(file name, bytes), ...]), ...]`` (the
    support set, in class order), ``queries`` is ``[(file name, bytes, class name or None), ...]``.

    Class names are kept as typed (trimmed); query labels match them ignoring case and whitespace. The
    task's ``query_y`` is set only when every query is labelled; the items always carry each
    query's own label (``None`` when unlabelled), so partly labelled uploads keep what is known.

    Raises ``ValueError`` for structural problems (fewer than two classes, an empty or duplicate class name,
    a class without images, no queries, a query label that is not a class) and :class:`ImageError` naming
    every file that cannot be used (too large for ``max_bytes``, default ``core.settings.max_upload_bytes``; empty,
    not an image, truncated, a decompression bomb).
    """
    limit = max_upload_bytes() if max_bytes is None else max_bytes
    class_names, label_of = _class_names(classes)
    if not queries:
        raise ValueError("no query images: upload at least one image to classify")
    query_labels = _query_labels(queries, class_names, label_of)
    errors: list[str] = []

    def decode(data: bytes, name: str) -> tuple[torch.Tensor, ImageFile] | None:
        try:
            return image_input(data, name, spec, max_bytes=limit)
        except ImageError as error:
            errors.append(str(error))
            return None

    support: list[tuple[int, tuple[torch.Tensor, ImageFile] | None]] = [
        (label, decode(data, file_name))
        for label, (_name, files) in enumerate(classes)
        for file_name, data in files
    ]
    decoded_queries = [decode(data, file_name) for file_name, data, _label in queries]
    if errors:
        listed = "; ".join(errors)
        raise ImageError(f"{len(errors)} file(s) cannot be used: {listed}" if len(errors) > 1 else listed)

    items: list[EpisodeImage] = []
    for position, (label, decoded) in enumerate(support):
        assert decoded is not None
        items.append(EpisodeImage("support", position, label, decoded[1]))
    for position, (label, decoded) in enumerate(zip(query_labels, decoded_queries)):
        assert decoded is not None
        items.append(EpisodeImage("query", position, label, decoded[1]))

    all_labelled = all(label is not None for label in query_labels)
    episode = Task(
        support_x=torch.stack([decoded[0] for _label, decoded in support if decoded is not None]),
        support_y=torch.tensor([label for label, _decoded in support], dtype=torch.int64),
        query_x=torch.stack([decoded[0] for decoded in decoded_queries if decoded is not None]),
        query_y=torch.tensor(query_labels, dtype=torch.int64) if all_labelled else None,
        class_names=class_names,
        support_sources=[item.image.source_name for item in items if item.role == "support"],
        query_sources=[item.image.source_name for item in items if item.role == "query"],
        provenance={
            "dataset": "upload",
            "shots_per_class": [len(files) for _name, files in classes],
            "n_query": len(queries),
            "labelled_queries": sum(label is not None for label in query_labels),
        },
    )
    return episode, items


def _source_bytes(source: str) -> bytes:
    """The file behind a sampler ``source`` (PNG-encoded and rotated for Omniglot's ``path@rotNN`` classes)."""
    match = _ROTATED.match(source)
    if match and not Path(source).is_file():
        with Image.open(match["path"]) as image:
            image.load()
            # Image.rotate(90) turns counter-clockwise, as torch.rot90 over (H, W) does.
            rotated = image.rotate(int(match["degrees"]), expand=True)
        buffer = io.BytesIO()
        rotated.save(buffer, format="PNG")
        return buffer.getvalue()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"episode image {source} does not exist any more")
    return path.read_bytes()


def _readable_name(source: str) -> str:
    match = _ROTATED.match(source)
    path, suffix = (match["path"], f"@rot{match['degrees']}") if match and not Path(source).is_file() else (source, "")
    return "/".join(Path(path).parts[-3:]) + suffix


def items_from_benchmark(episode: Task) -> list[EpisodeImage]:
    """The files behind a sampled episode: each support and query source file's bytes, labels and order.

    ``source_name`` keeps the last three path parts (``Alphabet/characterNN/file.png``) so runs stay readable
    without saving machine-specific absolute paths. Omniglot's rotated classes (``path@rot90``) are stored as the
    rotated drawing (PNG); decoding it matches the sampler's tensor to within one 8-bit grey level, because
    the rotation then comes before the resize instead of after it.
    """
    if len(episode.support_sources) != len(episode.support_y) or len(episode.query_sources) != len(
        episode.query_x
    ):
        raise ValueError("the episode does not name the source file of every image; it cannot be stored")
    items: list[EpisodeImage] = []
    roles: tuple[tuple[Literal["support", "query"], list[str], list[int | None]], ...] = (
        ("support", episode.support_sources, [int(v) for v in episode.support_y]),
        (
            "query",
            episode.query_sources,
            [None] * len(episode.query_sources)
            if episode.query_y is None
            else [int(v) for v in episode.query_y],
        ),
    )
    for role, sources, labels in roles:
        for position, (source, label) in enumerate(zip(sources, labels)):
            data = _source_bytes(source)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                mime = Image.MIME.get(image.format or "", "application/octet-stream")
            image_file = ImageFile(data, mime, width, height, source_name=_readable_name(source),
                                   preview=preview_png(data, name=source))
            items.append(EpisodeImage(role, position, label, image_file))
    return items

