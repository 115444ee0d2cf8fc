"""Adapt page: pick a checkpoint, build an episode (benchmark or uploads), adapt with chosen rules, see the run.

The result view is rendered from the stored run (``core.store``), the same view the Runs page uses.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from app.checkpoint_view import TRAIN_COMMAND, is_image_classifier, render_checkpoint_summary
from app.formatting import rule_label
from app.resources import cached_loader, folder_set, get_store, omniglot_set, short_path
from app.views import render_run
from core.checkpoints import find_checkpoints
from core.data.episode import Episode
from core.data.images import ImageError, ImageSpec
from core.data.omniglot import default_omniglot_root, ensure_omniglot, list_alphabets
from core.data.sampler import EpisodeSampler
from core.data.uploads import episode_from_uploads, items_from_benchmark, max_upload_bytes
from core.device import describe_device, pick_device
from core.model_io import supported_rules
from core.runs import RuleProgress, RunFailed, run_rules
from core.store import EpisodeItemInput
from models.checkpoint import CheckpointError

INPUT_ERRORS = (ValueError, ImageError, CheckpointError, FileNotFoundError, KeyError)
UNLABELLED = "unlabelled"
SOURCES = ("Benchmark episode", "Upload images")
DATASETS = ("Omniglot", "Folder-per-class tree")


@dataclass
class Prepared:
    """An episode ready to run, with what the run record says about where it came from."""

    episode: Episode
    items: list[EpisodeItemInput]
    source: str
    dataset: str
    split: str | None = None
    seed: int | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)


st.title("Adapt to a new episode")

try:
    device = pick_device()
except (ValueError, RuntimeError) as error:  # torch raises RuntimeError for a malformed device string
    st.error(f"Cannot choose a device: {error}")
    st.stop()
st.caption(f"Device: {describe_device(device)}")

# ------------------------------------------------------------------------------------------ checkpoint

entries = find_checkpoints()
usable = [entry for entry in entries if entry.error is None and is_image_classifier(entry.metadata)]
if not usable:
    st.warning(
        "No image-classification checkpoint found yet. Train one (it is written under `runs/`), or put a "
        "`.safetensors` checkpoint under `assets/checkpoints/`:"
    )
    st.code(TRAIN_COMMAND, language="bash")
    if len(entries) > len(usable):
        st.page_link("pages/checkpoints.py", label="See the files that were found but cannot be used")
    st.stop()

labels = [f"{entry.name} — {short_path(entry.path)}" for entry in usable]
chosen_label = st.selectbox("Checkpoint", labels, key="checkpoint")
checkpoint = usable[labels.index(chosen_label)]
metadata = checkpoint.metadata
with st.expander("About this checkpoint"):
    render_checkpoint_summary(metadata)
if len(entries) > len(usable):
    st.caption(f"{len(entries) - len(usable)} other file(s) cannot be used here; see the Checkpoints page.")
try:
    spec = ImageSpec.from_dict(metadata["image"])
    rule_options = supported_rules(metadata)
except (KeyError, TypeError, ValueError) as error:
    st.error(f"{checkpoint.path}: its metadata is incomplete ({error})")
    st.stop()
spec_json = json.dumps(spec.to_dict(), sort_keys=True)

# ------------------------------------------------------------------------------------------------ episode

source = st.radio("Episode", SOURCES, horizontal=True, key="source")


def _benchmark_episode() -> Prepared | None:
    """The sampled benchmark episode, or None (with the reason shown) when it cannot be built."""
    dataset = st.radio("Dataset", DATASETS, horizontal=True, key="dataset")
    image_set = None
    if dataset == DATASETS[0]:
        root = default_omniglot_root()
        try:
            alphabets = list_alphabets(root)
        except OSError:
            alphabets = {}
        if not alphabets:
            try:
                ensure_omniglot(root, download=False)
            except FileNotFoundError as missing:
                st.warning(str(missing))
            if st.button("Download Omniglot", key="download_omniglot"):
                with st.spinner("Downloading Omniglot (about 9 MB)…"):
                    try:
                        ensure_omniglot(root, download=True)
                    except FileNotFoundError as failed:
                        st.error(str(failed))
                    else:
                        st.rerun()
            return None
        held_out = [a for a in ((metadata.get("training") or {}).get("data") or {}).get("test") or [] if a in alphabets]
        chosen = st.multiselect(
            "Alphabets (none chosen: all of them)",
            list(alphabets),
            default=held_out,
            format_func=lambda a: f"{a} ({alphabets[a]} characters)",
            key="alphabets",
            help="The checkpoint's held-out (test) alphabets are chosen by default.",
        )
        try:
            image_set = omniglot_set(str(root), tuple(chosen), spec_json)
        except INPUT_ERRORS as error:
            st.error(str(error))
            return None
        dataset_name, split_name = "omniglot", None
        extra = {"alphabets": chosen, "dataset_root": str(root)}
    else:
        left, right = st.columns([3, 1])
        folder = left.text_input("Folder (one sub-folder per class)", key="folder_root", placeholder="/data/cub")
        split = right.text_input("Split (optional)", key="folder_split", placeholder="test")
        if not folder.strip():
            st.info("Enter a folder laid out as `<folder>/<split>/<class>/<images>` (or without the split level).")
            return None
        try:
            image_set = folder_set(folder.strip(), split.strip() or None, spec_json)
        except INPUT_ERRORS as error:
            st.error(str(error))
            return None
        dataset_name, split_name = image_set.name, split.strip() or None
        extra = {"dataset_root": folder.strip()}

    columns = st.columns(4)
    n_way = columns[0].number_input(
        "N-way", min_value=2, max_value=max(2, len(image_set.class_names)),
        value=min(int(metadata.get("n_way") or 5), len(image_set.class_names)), key="n_way",
    )
    k_shot = columns[1].number_input("K-shot", min_value=1, max_value=50, value=1, key="k_shot")
    n_query = columns[2].number_input("Queries per class", min_value=1, max_value=50, value=3, key="n_query")
    seed_value = columns[3].number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="seed")
    try:
        sampler = EpisodeSampler(image_set, int(n_way), int(k_shot), int(n_query), seed=int(seed_value))
        episode = sampler.episode(0)
        items = items_from_benchmark(episode)
    except INPUT_ERRORS as error:
        st.error(str(error))
        return None
    with st.expander(f"Preview: {len(episode.class_names)} classes", expanded=True):
        for label, name in enumerate(episode.class_names):
            shots = [i for i in items if i.label == label and i.role == "support"]
            queries = [i for i in items if i.label == label and i.role == "query"]
            cells = st.columns([2] + [1] * 10)
            cells[0].markdown(f"**{name}**  \n{len(shots)} support · {len(queries)} query")
            for cell, item in zip(cells[1:], shots + queries):
                cell.image(item.image.data, width=48, caption="S" if item.role == "support" else "Q")
    kind = "benchmark" if dataset == DATASETS[0] else "folder"
    return Prepared(episode, items, kind, dataset_name, split_name, int(seed_value), extra)


def _add_class() -> None:
    st.session_state.upload_classes.append(st.session_state.next_class_id)
    st.session_state.next_class_id += 1


def _remove_class(class_id: int) -> None:
    st.session_state.upload_classes.remove(class_id)


def _upload_episode() -> Prepared | None:
    """The uploaded episode, or None; the reason it is not ready is kept in ``upload_problem``."""
    if "upload_classes" not in st.session_state:
        st.session_state.upload_classes = [0, 1]
        st.session_state.next_class_id = 2
    limit_mb = max_upload_bytes() / (1024 * 1024)
    st.caption(
        f"Give each class a name and its support images; then add query images to classify. Any common image "
        f"format works (up to {limit_mb:g} MB per file); images are turned into "
        f"{spec.channels}×{spec.size}×{spec.size} as the checkpoint expects."
    )
    classes = []
    for number, class_id in enumerate(st.session_state.upload_classes, start=1):
        with st.container(border=True):
            left, right = st.columns([5, 1])
            name = left.text_input(f"Class {number} name", value=f"class {class_id + 1}", key=f"class_name_{class_id}")
            right.button("Remove", key=f"remove_class_{class_id}", on_click=_remove_class, args=(class_id,))
            files = st.file_uploader(
                f"Support images of class {number}", accept_multiple_files=True, key=f"class_files_{class_id}",
                max_upload_size=max(1, math.ceil(limit_mb)),
            )
            classes.append((name, [(f.name, f.getvalue()) for f in files or []]))
    st.button("Add a class", key="add_class", on_click=_add_class)
    query_files = st.file_uploader(
        "Query images to classify", accept_multiple_files=True, key="query_files",
        max_upload_size=max(1, math.ceil(limit_mb)),
    ) or []
    class_names = [" ".join(name.split()) for name, _files in classes]
    options = [UNLABELLED] + [n for n in class_names if n]
    queries = []
    if query_files:
        st.caption("Label the queries you know to get an accuracy (optional).")
        cells = st.columns(4)
        for index, uploaded in enumerate(query_files):
            with cells[index % 4]:
                label = st.selectbox(
                    f"Label of {uploaded.name}", options, key=f"query_label_{uploaded.file_id}",
                )
            queries.append((uploaded.name, uploaded.getvalue(), None if label == UNLABELLED else label))
    try:
        episode, items = episode_from_uploads(classes, queries, spec)
    except ImageError as error:
        st.error(str(error))  # a bad file is worth saying at once
        st.session_state["upload_problem"] = str(error)
        return None
    except INPUT_ERRORS as error:
        st.session_state["upload_problem"] = str(error)
        return None
    st.session_state.pop("upload_problem", None)
    return Prepared(episode, items, "upload", "upload")


prepared = _benchmark_episode() if source == SOURCES[0] else _upload_episode()

# ---------------------------------------------------------------------------------------------- rules

st.divider()
left, right = st.columns([2, 1])
rules = left.multiselect(
    "Inner-loop rules", rule_options, default=rule_options, format_func=rule_label,
    key=f"rules_{checkpoint.path}",
)
trained_steps = int((metadata.get("inner_steps") or {}).get("eval") or (metadata.get("rule") or {}).get("steps") or 5)
steps = right.slider(
    "Inner steps", min_value=0, max_value=max(20, 4 * trained_steps), value=trained_steps, key="steps",
    help=f"Trained with {trained_steps}; steps beyond the learned ones reuse the last step's learned values.",
)
with st.expander("Advanced"):
    head = st.selectbox(
        "Classifier head at step 0", ["auto", "learned", "prototype", "zero"], key="head_init",
        help="auto: the meta-learned head when the class count matches the checkpoint's, else class prototypes (a zero head for ALFA, whose generator reads the head weights).",
    )

if st.button("Run", type="primary", key="run"):
    problem = st.session_state.get("upload_problem") if source == SOURCES[1] else None
    if prepared is None:
        st.error(problem or "The episode is not ready: fix the settings above first.")
    elif not rules:
        st.error("Choose at least one inner-loop rule.")
    else:
        with st.status(f"Adapting with {len(rules)} rule(s)…", expanded=True) as status:

            def progress(event: RuleProgress) -> None:
                step = f"[{event.index + 1}/{event.total}] {event.label}"
                if event.stage == "loading":
                    status.update(label=f"{step}: loading…")
                elif event.stage == "adapting":
                    status.update(label=f"{step}: adapting {steps} steps…")
                elif event.stage == "done":
                    accuracy = "" if event.accuracy is None else f", accuracy {100 * event.accuracy:.1f}%"
                    st.write(f"✓ {event.label}: {event.seconds:.2f} s{accuracy}")
                else:
                    st.write(f"✗ {event.error}")

            try:
                run_id = run_rules(
                    store=get_store(), checkpoint_path=checkpoint.path, rules=rules, episode=prepared.episode,
                    items=prepared.items, steps=int(steps), device=device, source=prepared.source,
                    dataset=prepared.dataset, split=prepared.split, seed=prepared.seed,
                    head_init=None if head == "auto" else head, on_progress=progress, loader=cached_loader,
                    extra_config=prepared.extra_config,
                )
            except RunFailed as failure:
                status.update(label=f"Run #{failure.run_id} failed and was stored", state="error")
                st.session_state["adapt_run_id"] = failure.run_id
                st.session_state["adapt_failure"] = failure.error
            except INPUT_ERRORS as error:
                status.update(label="Nothing was run", state="error")
                st.session_state.pop("adapt_run_id", None)
                st.session_state["adapt_failure"] = str(error)
            else:
                status.update(label=f"Run #{run_id} stored", state="complete", expanded=False)
                st.session_state["adapt_run_id"] = run_id
                st.session_state.pop("adapt_failure", None)
elif source == SOURCES[1] and prepared is None and st.session_state.get("upload_problem"):
    st.info(st.session_state["upload_problem"])

if st.session_state.get("adapt_failure"):
    st.error(st.session_state["adapt_failure"])

run_id = st.session_state.get("adapt_run_id")
if run_id is not None:
    st.divider()
    try:
        detail = get_store().get_run(run_id)
    except KeyError:
        st.session_state.pop("adapt_run_id", None)
        st.info(f"Run #{run_id} was deleted.")
    else:
        render_run(get_store(), detail, key="adapt_result")
