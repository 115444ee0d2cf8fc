"""Shared, cached resources of the dashboard: the run store, loaded learners and benchmark image sets.

``st.cache_resource`` objects are shared by every session, so none of them is ever modified: the store is
thread-safe, ``core.adapt`` reads learners without writing them, and image sets only add to their own
decode cache.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import streamlit as st
import torch

from core.checkpoint import CheckpointMetadata, file_sha256, load_learner
from core.data.folders import FolderImageSet
from core.data.images import ImageSpec, model_input_png, shown_image
from core.data.omniglot import OmniglotImageSet
from core.learner import Learner
from core.settings import REPO_ROOT, database_url
from core.store import Store


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return Store(url)


def get_store() -> Store:
    """The store at ``$FEWSHOT_DATABASE_URL`` (or the default SQLite file), opened once per URL."""
    return _store(database_url())


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=8)
def _learner(path: str, sha256: str, rule: str, device: str) -> tuple[Learner, CheckpointMetadata]:
    # Keyed by the file's hash too: a checkpoint retrained in place is loaded afresh.
    return load_learner(path, rule=rule, device=device)


def cached_loader(path: Path, rule: str, device: torch.device) -> tuple[Learner, CheckpointMetadata]:
    """A ``core.runs.LearnerLoader`` backed by the resource cache (path + file hash + rule + device)."""
    return _learner(str(path), file_sha256(path), rule, str(device))


@st.cache_resource(show_spinner=False)
def run_executor() -> ThreadPoolExecutor:
    """The worker threads dashboard runs adapt in (``core.runs.start_run``), shared by every session.

    Two workers: each adaptation already uses torch's intra-op threads, and a third run would only queue.
    """
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="fewshot-run")


@st.cache_data(show_spinner=False, max_entries=64)
def shown_images(url: str, sha256s: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes a page shows for each stored image (``core.data.images.shown_image``), by hash."""
    store = _store(url)
    previews = store.get_previews(sha256s)
    missing = [sha for sha in sha256s if previews.get(sha) is None]
    originals = store.get_images(missing) if missing else {}
    return {sha: shown_image(originals[sha][0], previews[sha]) if sha in originals else previews[sha]
            for sha in sha256s}


@st.cache_data(show_spinner=False, max_entries=64)
def model_input_images(url: str, sha256s: tuple[str, ...], spec_json: str) -> dict[str, bytes]:
    """Each stored image as the model saw it (decoded with the run's image spec), by hash."""
    spec = ImageSpec.from_dict(json.loads(spec_json))
    originals = _store(url).get_images(sha256s)
    return {sha: model_input_png(originals[sha][0], spec, name=sha[:12]) for sha in sha256s}


@st.cache_resource(show_spinner="Reading the dataset…", max_entries=4)
def omniglot_set(root: str, alphabets: tuple[str, ...], spec_json: str) -> OmniglotImageSet:
    spec = ImageSpec.from_dict(json.loads(spec_json))
    return OmniglotImageSet(root, alphabets=list(alphabets) or None, spec=spec)


@st.cache_resource(show_spinner="Reading the folders…", max_entries=4)
def folder_set(root: str, split: str | None, spec_json: str) -> FolderImageSet:
    return FolderImageSet(root, split, ImageSpec.from_dict(json.loads(spec_json)))


def short_path(path: str | Path) -> str:
    """A path relative to the repository when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
