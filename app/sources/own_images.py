"""The user's own classes and queries, from uploaded files, drawings on a canvas or webcam photos.

Every image a user adds is decoded and checked once, when it is added, and kept in the session (``OwnEpisode``)
whatever input it came from, so switching between Upload, Draw and Camera loses nothing. A class is known by a
stable id, never by its name: renaming a class keeps the queries labelled with it, and removing one says which
queries lost their label.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import streamlit as st

from app import gallery
from app.sources import CAMERA, DRAW, UPLOAD, Prepared, Readiness
from core.data.domain import StrokeDomain
from core.data.images import ImageError, ImageSpec, model_input_png, shown_image
from core.data.uploads import (
    ImageRef,
    duplicate_warnings,
    episode_from_uploads,
    image_input,
    image_warnings,
)
from core.settings import demo_mode, demo_upload_bytes, max_upload_bytes
from core.store import RunSource

STATE_KEY = "own_episode"
# What a run records as its source for images that all came from one input.
RUN_SOURCE_OF_ORIGIN: dict[str, RunSource] = {UPLOAD: "upload", DRAW: "drawing", CAMERA: "camera"}
QUERIES = "query"  # the target id of the query list (classes use their integer ids)
CANVAS_PX = 224  # the canvas side; 8-pixel strokes become about 1 pixel at 28x28, as Omniglot's pen strokes are
STROKE_PX = 8


@dataclass
class OwnImage:
    """One image the user added, checked when it was added."""

    image_id: int
    name: str
    data: bytes
    origin: str  # UPLOAD, DRAW or CAMERA
    shown: bytes  # what the page shows for it (display copy or the file itself)
    warnings: list[str] = field(default_factory=list)


@dataclass
class OwnClass:
    class_id: int
    images: list[OwnImage] = field(default_factory=list)


@dataclass
class OwnEpisode:
    """Everything the user has built so far in this session."""

    classes: list[OwnClass]
    queries: list[OwnImage] = field(default_factory=list)
    labels: dict[int, int | None] = field(default_factory=dict)  # query image id -> class id (None: unlabelled)
    next_id: int = 0  # image ids
    next_class_id: int = 0  # class ids: "class N" names follow them
    nonces: dict[str, int] = field(default_factory=dict)  # per target, in its inputs' keys: a new one empties them
    rejected: dict[str, list[str]] = field(default_factory=dict)  # target -> messages of files just refused
    notices: list[str] = field(default_factory=list)  # label changes to tell the user once
    # Bytes of every image this session added (removing one gives nothing back): the demo's per-session limit.
    added_bytes: int = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def nonce(self, target: str | int) -> int:
        return self.nonces.get(str(target), 0)

    def class_of(self, class_id: int) -> OwnClass | None:
        return next((c for c in self.classes if c.class_id == class_id), None)


def state() -> OwnEpisode:
    if STATE_KEY not in st.session_state:
        episode = OwnEpisode(classes=[])
        for _ in range(2):
            _add_class(episode)
        st.session_state[STATE_KEY] = episode
    return st.session_state[STATE_KEY]


def class_name_key(class_id: int) -> str:
    return f"class_name_{class_id}"


def class_name(class_id: int) -> str:
    return " ".join(str(st.session_state.get(class_name_key(class_id), f"class {class_id + 1}")).split())


def _target_label(target: str | int) -> str:
    return "the queries" if target == QUERIES else repr(class_name(int(target)))


# ------------------------------------------------------------------------------------------ adding images


def _add(target: str | int, files: list[tuple[str, bytes]], origin: str, spec: ImageSpec,
         domain: StrokeDomain | None) -> None:
    """Check each file and add the good ones to ``target``; the refused ones are named, nothing else is lost.

    In the read-only demo, files that would take the session past ``FEWSHOT_DEMO_UPLOAD_MB`` in all are refused
    together, with a message: none of them is kept, so nothing is half added."""
    episode = state()
    if demo_mode() and (refusal := _over_demo_limit(episode, files)) is not None:
        episode.rejected[str(target)] = [refusal]
        episode.nonces[str(target)] = episode.nonce(target) + 1  # empty the input: the files were not taken
        return
    rejected = []
    for name, data in files:
        try:
            _tensor, record = image_input(data, name, spec)
            warnings = image_warnings(data, name, spec, domain)
        except ImageError as error:
            rejected.append(str(error))
            continue
        image = OwnImage(episode.new_id(), name, record.data, origin, shown_image(record.data, record.preview),
                         warnings)
        episode.added_bytes += len(data)
        if target == QUERIES:
            episode.queries.append(image)
            episode.labels[image.image_id] = None
        else:
            own_class = episode.class_of(int(target))
            if own_class is not None:
                own_class.images.append(image)
    episode.rejected[str(target)] = rejected  # shown with this target until its next addition
    # Fresh inputs for this target: the files now live in the episode, not in the widget.
    episode.nonces[str(target)] = episode.nonce(target) + 1


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.2f} MB"


def _over_demo_limit(episode: OwnEpisode, files: list[tuple[str, bytes]]) -> str | None:
    """Why these files cannot be added in the demo (the session's total would pass the limit), or None."""
    incoming = sum(len(data) for _name, data in files)
    limit = demo_upload_bytes()
    if episode.added_bytes + incoming <= limit:
        return None
    names = ", ".join(name for name, _data in files)
    return (
        f"Not added: {names} ({_megabytes(incoming)}) would take this session past the demo's limit of "
        f"{_megabytes(limit)} of images ({_megabytes(episode.added_bytes)} used). None of these files was kept."
    )


def _take_uploads(target: str | int, key: str, spec: ImageSpec, domain: StrokeDomain | None) -> None:
    files = st.session_state.get(key) or []
    _add(target, [(f.name, f.getvalue()) for f in files], UPLOAD, spec, domain)


def _take_photo(target: str | int, key: str, spec: ImageSpec, domain: StrokeDomain | None) -> None:
    photo = st.session_state.get(key)
    if photo is not None:
        count = sum(1 for image in _images_of(target) if image.origin == CAMERA)
        _add(target, [(f"photo-{count + 1}.jpg", photo.getvalue())], CAMERA, spec, domain)


def _images_of(target: str | int) -> list[OwnImage]:
    episode = state()
    if target == QUERIES:
        return episode.queries
    own_class = episode.class_of(int(target))
    return own_class.images if own_class is not None else []


def _adder(target: str | int, source: str, spec: ImageSpec, domain: StrokeDomain | None) -> None:
    """The input that adds images to ``target`` for the chosen source."""
    episode = state()
    what = "query images" if target == QUERIES else "images"
    if source == UPLOAD:
        key = f"files_{target}_{episode.nonce(target)}"
        limit_mb = max_upload_bytes() / (1024 * 1024)
        st.file_uploader(
            f"Add {what} to {_target_label(target)}", accept_multiple_files=True, key=key,
            on_change=_take_uploads, args=(target, key, spec, domain), max_upload_size=max(1, int(limit_mb + 0.999)),
        )
    elif source == CAMERA:
        key = f"camera_{target}_{episode.nonce(target)}"
        st.camera_input(f"Take a photo for {_target_label(target)}", key=key, on_change=_take_photo,
                        args=(target, key, spec, domain))
    else:
        _canvas(target, spec, domain)


def _canvas(target: str | int, spec: ImageSpec, domain: StrokeDomain | None) -> None:
    from streamlit_drawable_canvas import st_canvas  # the component registers itself on import: only when drawing

    episode = state()
    left, right = st.columns([3, 2], vertical_alignment="center")
    with left:
        drawing = st_canvas(
            stroke_width=STROKE_PX, stroke_color="#000000", background_color="#FFFFFF", height=CANVAS_PX,
            width=CANVAS_PX, drawing_mode="freedraw", return_image_data=True, key=f"canvas_{target}_{episode.nonce(target)}",
        )
    with right:
        drawn = bool(drawing.json_data and drawing.json_data.get("objects"))
        st.caption("Draw dark strokes on the white square, then add the drawing. Draw each example anew.")
        if st.button("Add this drawing", key=f"add_drawing_{target}", disabled=not drawn, type="primary"):
            count = sum(1 for image in _images_of(target) if image.origin == DRAW)
            _add(target, [(f"drawing-{count + 1}.png", drawing.image_bytes)], DRAW, spec, domain)
            st.rerun()


# -------------------------------------------------------------------------------------- classes, removal


def _add_class(episode: OwnEpisode | None = None) -> None:
    episode = episode or state()
    episode.classes.append(OwnClass(episode.next_class_id))
    episode.next_class_id += 1


def _remove_class(class_id: int) -> None:
    episode = state()
    name = class_name(class_id)
    episode.classes = [c for c in episode.classes if c.class_id != class_id]
    lost = [q.name for q in episode.queries if episode.labels.get(q.image_id) == class_id]
    for query in episode.queries:
        if episode.labels.get(query.image_id) == class_id:
            episode.labels[query.image_id] = None
            st.session_state.pop(f"query_label_{query.image_id}", None)
    if lost:
        episode.notices.append(
            f"{len(lost)} quer{'y was' if len(lost) == 1 else 'ies were'} labelled {name!r}, which you removed; "
            f"now unlabelled: {', '.join(lost)}."
        )


def _remove_images(target: str | int, key: str) -> None:
    episode = state()
    doomed = set(st.session_state.get(key) or [])
    if target == QUERIES:
        episode.queries = [q for q in episode.queries if q.image_id not in doomed]
        for image_id in doomed:
            episode.labels.pop(image_id, None)
    else:
        own_class = episode.class_of(int(target))
        if own_class is not None:
            own_class.images = [i for i in own_class.images if i.image_id not in doomed]
    st.session_state.pop(key, None)


def _collected(target: str | int, spec: ImageSpec, model_view: bool) -> None:
    images = _images_of(target)
    if not images:
        return
    thumbnails = [
        gallery.Thumbnail(model_input_png(image.data, spec) if model_view else image.shown, image.name,
                          " ".join(image.warnings) or None)
        for image in images
    ]
    gallery.show(gallery.thumbnails_html(thumbnails, pixelated=model_view))
    with st.popover(f"Remove images ({len(images)})"):
        key = f"remove_{target}"
        st.multiselect("Images to remove", [i.image_id for i in images],
                       format_func=lambda i: next(im.name for im in images if im.image_id == i), key=key)
        st.button("Remove", key=f"remove_button_{target}", on_click=_remove_images, args=(target, key))


def _rejected(target: str | int) -> None:
    for message in state().rejected.get(str(target), []):
        st.error(message)


# ------------------------------------------------------------------------------------------------- page


def render(source: str, spec: ImageSpec, domain: StrokeDomain | None, model_view: bool) -> tuple[Prepared | None, Readiness]:
    """The class editor and the query list for ``source`` (UPLOAD, DRAW or CAMERA); the episode when ready."""
    episode = state()
    limit_mb = max_upload_bytes() / (1024 * 1024)
    st.caption(
        "Give each class a name and a few example images, then add queries to classify. Images from every input "
        f"(upload, drawing, camera) are kept together. Files up to {limit_mb:g} MB in any common format; the model "
        f"sees each as {spec.channels}×{spec.size}×{spec.size}" + (", inverted" if spec.invert else "") + "."
    )
    if demo_mode():
        st.caption(
            f"Read-only demo: this session may add {_megabytes(demo_upload_bytes())} of images in all; "
            f"{_megabytes(episode.added_bytes)} used."
        )
    for notice in episode.notices:
        st.info(notice)
    episode.notices = []

    for number, own_class in enumerate(episode.classes, start=1):
        with st.container(border=True):
            left, right = st.columns([5, 1], vertical_alignment="bottom")
            left.text_input(f"Class {number} name", value=f"class {own_class.class_id + 1}",
                            key=class_name_key(own_class.class_id))
            right.button("Remove class", key=f"remove_class_{own_class.class_id}", on_click=_remove_class,
                         args=(own_class.class_id,), disabled=len(episode.classes) <= 2,
                         help="An episode needs at least two classes." if len(episode.classes) <= 2 else None)
            _collected(own_class.class_id, spec, model_view)
            _adder(own_class.class_id, source, spec, domain)
            _rejected(own_class.class_id)
    st.button("Add a class", key="add_class", on_click=_add_class, args=(episode,))

    with st.container(border=True):
        st.markdown("**Queries**: images to classify")
        _collected(QUERIES, spec, model_view)
        _adder(QUERIES, source, spec, domain)
        _rejected(QUERIES)
        _query_labels(episode)
    return _episode(episode, spec)


UNLABELLED = -1  # the label widget's "no class" option: a None value would show as an empty choice


def _query_labels(episode: OwnEpisode) -> None:
    if not episode.queries:
        return
    class_ids = [c.class_id for c in episode.classes]
    # Names as of this run, captured: the widget compares labels, so its formatter must not change under it.
    names = {UNLABELLED: "unlabelled", **{c: class_name(c) for c in class_ids}}
    st.caption("Label the queries you know to get an accuracy (optional).")
    cells = st.columns(4)
    for index, query in enumerate(episode.queries):
        key = f"query_label_{query.image_id}"
        # A label widget still on the page holds the user's latest choice; the episode keeps it while the widget is
        # away (another input shown) and drops labels of removed classes. Reading the widget first means a choice
        # whose on_change did not reach the episode is not overwritten: in a browser test under heavy load, the
        # first of two quick label choices came back "unlabelled" when the episode alone was written back.
        shown = st.session_state.get(key)
        if shown is not None:
            episode.labels[query.image_id] = shown if shown in class_ids else None
        label = episode.labels.get(query.image_id)
        st.session_state[key] = label if label in class_ids else UNLABELLED  # the episode holds the truth
        with cells[index % 4]:
            st.selectbox(
                f"Label of {query.name}", [UNLABELLED, *class_ids], key=key, format_func=names.__getitem__,
                on_change=_set_label, args=(query.image_id, key),
            )


def _set_label(image_id: int, key: str) -> None:
    value = st.session_state.get(key)
    state().labels[image_id] = None if value in (None, UNLABELLED) else value


def _episode(episode: OwnEpisode, spec: ImageSpec) -> tuple[Prepared | None, Readiness]:
    names = {c.class_id: class_name(c.class_id) for c in episode.classes}
    refs = [ImageRef.of("support", i.name, i.data, names[c.class_id]) for c in episode.classes for i in c.images]
    refs += [ImageRef.of("query", q.name, q.data) for q in episode.queries]
    warnings = [w for c in episode.classes for i in c.images for w in i.warnings]
    warnings += [w for q in episode.queries for w in q.warnings]
    warnings += duplicate_warnings(refs)
    classes = [(names[c.class_id], [(i.name, i.data) for i in c.images]) for c in episode.classes]
    queries = [
        (q.name, q.data, None if episode.labels.get(q.image_id) is None else names.get(episode.labels[q.image_id]))
        for q in episode.queries
    ]
    try:
        built, items = episode_from_uploads(classes, queries, spec)
    except (ValueError, ImageError) as problem:
        return None, Readiness(problem=_sentence(str(problem)), warnings=warnings)
    origins = Counter(image.origin for c in episode.classes for image in c.images)
    origins.update(q.origin for q in episode.queries)
    # One input alone names the run's source; images from several inputs count as an upload.
    source = RUN_SOURCE_OF_ORIGIN[next(iter(origins))] if len(origins) == 1 else "upload"
    extra = {"origins": dict(origins)}
    return Prepared(built, items, source, source, extra_config=extra), Readiness(warnings=warnings)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
