"""Benchmark source: a seeded N-way K-shot episode from Omniglot alphabets or any folder-per-class tree."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import gallery
from app.resources import folder_set, omniglot_set
from app.sources import Prepared, Readiness
from core.checkpoint import CheckpointError, CheckpointMetadata
from core.data.images import ImageError, ImageSpec, model_input_png, shown_image
from core.data.omniglot import ensure_omniglot, list_alphabets
from core.data.sampler import EpisodeSampler
from core.data.uploads import items_from_benchmark
from core.settings import omniglot_root
from core.store import RunSource

INPUT_ERRORS = (ValueError, ImageError, CheckpointError, FileNotFoundError, KeyError)
OMNIGLOT, FOLDERS = "omniglot", "folders"
DATASET_LABELS = {OMNIGLOT: "Omniglot", FOLDERS: "Folder-per-class tree"}


@st.cache_data(show_spinner=False, ttl=60)
def omniglot_alphabets(root: str) -> dict[str, int]:
    """Alphabets found under ``root`` (cached a minute: listing walks every character folder)."""
    try:
        return list_alphabets(root)
    except OSError:
        return {}


def omniglot_available() -> bool:
    return bool(omniglot_alphabets(str(omniglot_root())))


def _short_download_error(error: FileNotFoundError) -> str:
    cause = error.__cause__
    reason = " ".join(str(cause).split()) if cause is not None else "the data is not there"
    return f"Omniglot could not be downloaded ({reason[:120]}). Upload images instead."


def _download_omniglot(root: Path) -> None:
    try:
        ensure_omniglot(root, download=True)
    except FileNotFoundError as failed:
        st.session_state["benchmark_problem"] = _short_download_error(failed)
    else:
        st.session_state.pop("benchmark_problem", None)
        omniglot_alphabets.clear()


def _omniglot_set(metadata: CheckpointMetadata, spec_json: str):
    root = omniglot_root()
    alphabets = omniglot_alphabets(str(root))
    if not alphabets:
        st.info(f"Omniglot is not on this machine (looked in `{root}`).")
        st.button("Download Omniglot (about 9 MB)", key="download_omniglot", on_click=_download_omniglot,
                  args=(root,))
        if st.session_state.get("benchmark_problem"):
            st.error(st.session_state["benchmark_problem"])
        return None, {}
    held_out = [a for a in metadata.heldout_classes if a in alphabets]
    chosen = st.multiselect(
        "Alphabets (none chosen: all of them)",
        list(alphabets),
        default=held_out,
        format_func=lambda a: f"{a} ({alphabets[a]} characters)",
        key="alphabets",
        help="The checkpoint's held-out (test) alphabets are chosen by default.",
    )
    image_set = omniglot_set(str(root), tuple(chosen), spec_json)
    return image_set, {"alphabets": chosen, "dataset_root": str(root)}


def _folder_set(spec_json: str):
    left, right = st.columns([3, 1])
    folder = left.text_input("Folder (one sub-folder per class)", key="folder_root", placeholder="/data/cub")
    split = right.text_input("Split (optional)", key="folder_split", placeholder="test")
    if not folder.strip():
        st.info("Enter a folder laid out as `<folder>/<split>/<class>/<images>` (or without the split level).")
        return None, {}
    image_set = folder_set(folder.strip(), split.strip() or None, spec_json)
    if image_set.skipped_files:
        listed = ", ".join(f"`{path.relative_to(image_set.root)}`" for path in image_set.skipped_files[:50])
        more = "" if len(image_set.skipped_files) <= 50 else f" and {len(image_set.skipped_files) - 50} more"
        st.warning(f"Skipped {len(image_set.skipped_files)} file(s) that are not images by their extension: "
                   f"{listed}{more}.")
    return image_set, {"dataset_root": folder.strip(), "split": split.strip() or None}


def render(
    metadata: CheckpointMetadata, spec: ImageSpec, spec_json: str, model_view: bool
) -> tuple[Prepared | None, Readiness]:
    """The dataset and sampling widgets, a preview of the sampled episode, and the episode itself."""
    dataset = st.radio("Dataset", list(DATASET_LABELS), format_func=DATASET_LABELS.get, horizontal=True,
                       key="dataset")
    try:
        image_set, extra = _omniglot_set(metadata, spec_json) if dataset == OMNIGLOT else _folder_set(spec_json)
    except INPUT_ERRORS as error:
        return None, Readiness(problem=str(error))
    if image_set is None:
        return None, Readiness(problem="Choose a dataset that is on this machine, or use your own images.")

    columns = st.columns(4)
    trained_way = metadata.trained_way or 5
    n_way = columns[0].number_input(
        "N-way", min_value=2, max_value=max(2, len(image_set.class_names)),
        value=min(trained_way, len(image_set.class_names)), key="n_way",
    )
    k_shot = columns[1].number_input("K-shot", min_value=1, max_value=50, value=1, key="k_shot")
    n_query = columns[2].number_input("Queries per class", min_value=1, max_value=50, value=3, key="n_query")
    seed = columns[3].number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="seed")
    try:
        episode = EpisodeSampler(image_set, int(n_way), int(k_shot), int(n_query), seed=int(seed)).episode(0)
        items = items_from_benchmark(episode)
    except INPUT_ERRORS as error:
        return None, Readiness(problem=str(error))

    queries_shown = 3  # per class: enough to see the task without sending hundreds of pictures on every rerun
    previewed = [item for item in items if item.role == "support"] + [
        item for item in items if item.role == "query" and item.position % int(n_query) < queries_shown
    ]
    title = f"Preview: {len(episode.class_names)} classes, {len(items)} images"
    if len(previewed) < len(items):
        title += f" (queries: {queries_shown} of {int(n_query)} per class shown)"
    with st.expander(title, expanded=True):
        thumbnails = []
        for item in sorted(previewed, key=lambda i: (i.label, i.role != "support", i.position)):
            data = item.image.data
            shown = model_input_png(data, spec) if model_view else shown_image(data, item.image.preview)
            role = "S" if item.role == "support" else "Q"
            thumbnails.append(gallery.Thumbnail(shown, f"{role} · {episode.class_names[item.label]}"))
        gallery.show(gallery.thumbnails_html(thumbnails, image_px=56, pixelated=model_view))
    name = "omniglot" if dataset == OMNIGLOT else image_set.name
    kind: RunSource = "benchmark" if dataset == OMNIGLOT else "folder"
    split = extra.pop("split", None)
    return Prepared(episode, items, kind, name, split, int(seed), extra), Readiness()
