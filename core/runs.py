"""One dashboard run: adapt an episode with one or more rules of a checkpoint and record it in the run store.

:func:`run_rules` is the only place the dashboard adapts; it loads each rule's learner through a ``loader``
(the app passes a cached one: a cached learner is only read, ``adapt`` works on detached copies), adapts, and
writes the run, its episode images, traces and predictions in one transaction.

Failure semantics (tested in ``tests/core/test_runs.py``):

- Input that cannot describe a run (no rules, negative steps, an unreadable or non-image checkpoint, images
  that do not fit the checkpoint, items that do not match the episode) raises ``ValueError`` /
  ``CheckpointError`` before anything is stored.
- Rules run in the order given. The first rule that fails (an unsupported rule, a load error, a non-finite
  loss or probability, any exception) stops the run: it is stored with ``save_failed_run`` carrying the
  error text and the adaptations of the rules that had *completely* finished before it (never a partial
  one), then :class:`RunFailed` is raised with the run id. Later rules are not attempted.
- Otherwise the run is stored as succeeded with exactly the values ``adapt`` returned.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from core.adapt import AdaptationResult, adapt
from core.checkpoint import (
    CheckpointError,
    CheckpointMetadata,
    file_sha256,
    find_checkpoints,
    load_learner,
    read_metadata,
    supported_rules,
)
from core.data.images import ImageSpec, decode_image
from core.data.task import Task
from core.data.uploads import EpisodeImage, ImageFile
from core.device import describe_device
from core.learner import Learner
from core.rules import rule_label
from core.store import RUN_SOURCES, AdaptationInput, CheckpointInput, EpisodeItemInput, ImageInput, RunInput, Store

__all__ = [
    "LearnerLoader",
    "RuleProgress",
    "RunFailed",
    "RunTicket",
    "checkpoint_record",
    "checkpoint_spec",
    "episode_from_items",
    "rerun",
    "run_rules",
    "start_rerun",
    "start_run",
]

# (checkpoint path, rule, device) -> (learner, metadata); must return a learner the caller may only read.
LearnerLoader = Callable[[Path, str, torch.device], tuple[Learner, CheckpointMetadata]]


@dataclass(frozen=True)
class RuleProgress:
    """What :func:`run_rules` reports to ``on_progress``: before each rule, after each of its steps, after it."""

    rule: str
    label: str
    index: int  # 0-based position of the rule in this run
    total: int
    stage: Literal["loading", "adapting", "done", "failed"]
    seconds: float | None = None
    accuracy: float | None = None
    error: str | None = None
    step: int = 0  # inner steps finished so far by this rule ("adapting" is reported again after each)
    steps: int = 0


class RunFailed(RuntimeError):
    """A rule failed; the run was stored as failed (``run_id``) with ``error`` as its message."""

    def __init__(self, run_id: int, rule: str, error: str) -> None:
        super().__init__(f"run #{run_id} failed: {error}")
        self.run_id = run_id
        self.rule = rule
        self.error = error


def _default_loader(path: Path, rule: str, device: torch.device) -> tuple[Learner, CheckpointMetadata]:
    return load_learner(path, rule=rule, device=device)


def checkpoint_spec(metadata: CheckpointMetadata, name: str = "checkpoint") -> ImageSpec:
    """The image preprocessing of an image-classification checkpoint; ``ValueError`` for any other kind."""
    if not metadata.is_image_classifier or metadata.image is None:
        raise ValueError(
            f"{name} is not an image-classification checkpoint (task {metadata.task_kind!r}); "
            f"pick one trained on images"
        )
    return metadata.image


def checkpoint_record(path: str | Path, metadata: CheckpointMetadata, sha256: str | None = None) -> CheckpointInput:
    """The store's description of a checkpoint file (identified by the hash of its bytes); the metadata is
    kept as the file holds it."""
    path = Path(path)
    return CheckpointInput(
        name=metadata.name or path.stem,
        path=str(path),
        file_sha256=sha256 or file_sha256(path),
        backbone=metadata.backbone.config,
        rule=metadata.rule.config,
        image_spec={} if metadata.image is None else metadata.image.to_dict(),
        metadata=metadata.verbatim(),
    )


def _check_items(episode: Task, items: Sequence[EpisodeImage]) -> None:
    support = sorted((i for i in items if i.role == "support"), key=lambda i: i.position)
    query = sorted((i for i in items if i.role == "query"), key=lambda i: i.position)
    if len(support) != len(episode.support_y) or len(query) != len(episode.query_x):
        raise ValueError(
            f"the episode has {len(episode.support_y)} support and {len(episode.query_x)} query images "
            f"but {len(support)} support and {len(query)} query items were given"
        )
    if [i.label for i in support] != [int(v) for v in episode.support_y]:
        raise ValueError("support item labels do not match the episode's support labels")
    if episode.query_y is not None and [i.label for i in query] != [int(v) for v in episode.query_y]:
        raise ValueError("query item labels do not match the episode's query labels")


def _non_finite(result: AdaptationResult) -> str | None:
    for step, value in enumerate(result.support_loss):
        if not math.isfinite(value):
            return f"the support loss became {value} at step {step}"
    if any(not math.isfinite(p) for row in result.probabilities for p in row):
        return "the query probabilities are not finite"
    if result.query_loss is not None and not math.isfinite(result.query_loss):
        return f"the query loss is {result.query_loss}"
    return None


def _adaptation_input(result: AdaptationResult, query_items: list[EpisodeImage]) -> AdaptationInput:
    record = AdaptationInput.from_result(result, rule_label(result.rule))
    if record.truths is None and any(item.label is not None for item in query_items):
        # Partly labelled queries: the episode carries no labels, so adapt scored nothing; keep every known
        # label and score the labelled queries (plain counting, no model involved).
        record.truths = [item.label for item in query_items]
        known = [(p, t) for p, t in zip(record.predictions, record.truths) if t is not None]
        record.accuracy = sum(p == t for p, t in known) / len(known)
    return record


def run_rules(
    *,
    store: Store,
    checkpoint_path: str | Path,
    rules: Sequence[str],
    episode: Task,
    items: Sequence[EpisodeImage],
    steps: int,
    device: torch.device | str,
    source: str,
    dataset: str | None,
    split: str | None,
    seed: int | None,
    head_init: str | None = None,
    on_progress: Callable[[RuleProgress], None] | None = None,
    loader: LearnerLoader | None = None,
    note: str | None = None,
    extra_config: dict[str, Any] | None = None,
) -> int:
    """Adapt ``episode`` with each of ``rules`` and store the run; returns its id (see the module docstring).

    ``items`` are the files of the episode's images (``core.data.uploads``). ``loader`` defaults to
    :func:`core.checkpoint.load_learner`; whatever it returns is never modified. Raises :class:`RunFailed`
    (carrying ``run_id``) when a rule failed and the run was stored as failed.
    """
    started = time.perf_counter()
    rules = list(rules)
    _check_request(rules, steps, source)
    path = Path(checkpoint_path)
    metadata = read_metadata(path)  # CheckpointError for a missing or broken file
    spec = checkpoint_spec(metadata, path.name)
    expected = (spec.channels, spec.size, spec.size)
    if tuple(episode.support_x.shape[1:]) != expected or tuple(episode.query_x.shape[1:]) != expected:
        raise ValueError(
            f"the episode's images are {tuple(episode.support_x.shape[1:])} but {path.name} expects {expected}; "
            f"decode them with the checkpoint's image spec"
        )
    items = list(items)
    _check_items(episode, items)
    device = torch.device(device)
    query_items = sorted((i for i in items if i.role == "query"), key=lambda i: i.position)
    run = _run_input(
        path, metadata, spec, rules, episode, items, query_items, steps, device, source, dataset, split, seed,
        head_init, note, extra_config,
    )
    done: list[AdaptationInput] = []
    for index, rule in enumerate(rules):
        label = rule_label(rule)

        def report(stage: str, index: int = index, rule: str = rule, label: str = label, **fields: Any) -> None:
            if on_progress is not None:
                on_progress(RuleProgress(total=len(rules), rule=rule, label=label, index=index, stage=stage, **fields))

        try:
            report("loading")
            learner, _meta = (loader or _default_loader)(path, rule, device)
            report("adapting", steps=steps)
            result = adapt(learner, episode, steps=steps, head_init=head_init, device=device,
                           on_step=lambda step, report=report: report("adapting", step=step, steps=steps))
            problem = _non_finite(result)
            if problem:
                raise FloatingPointError(f"{problem}; try fewer steps or another rule")
            record = _adaptation_input(result, query_items)
        except Exception as error:  # any failure of a rule is recorded, then reported
            message = f"{label}: {error}"
            run_id = store.save_failed_run(run, message, done, total_seconds=time.perf_counter() - started)
            report("failed", error=message)
            raise RunFailed(run_id, rule, message) from error
        done.append(record)
        report("done", seconds=record.seconds, accuracy=record.accuracy, step=steps, steps=steps)
    return store.save_run(run, done, total_seconds=time.perf_counter() - started)


def _check_request(rules: list[str], steps: int, source: str) -> None:
    if not rules:
        raise ValueError("choose at least one inner-loop rule to adapt with")
    if len(set(rules)) != len(rules):
        raise ValueError(f"each rule can be chosen once, got {rules}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a whole number, 0 or more, got {steps!r}")
    if source not in RUN_SOURCES:
        raise ValueError(f"unknown run source {source!r}; choose from {', '.join(RUN_SOURCES)}")


def _run_input(
    path: Path, metadata: CheckpointMetadata, spec: ImageSpec, rules: list[str], episode: Task,
    items: list[EpisodeImage], query_items: list[EpisodeImage], steps: int, device: torch.device, source: str,
    dataset: str | None, split: str | None, seed: int | None, head_init: str | None, note: str | None,
    extra_config: dict[str, Any] | None,
) -> RunInput:
    """What the store keeps of the run besides its adaptations: where the episode came from, how it was run."""
    plain = (str, int, float, bool, list, type(None))
    provenance = {k: v for k, v in episode.provenance.items() if isinstance(v, plain)}
    return RunInput(
        source=source,  # type: ignore[arg-type] - validated by the store
        dataset=dataset,
        split=split,
        n_way=episode.n_way,
        k_shot=min(episode.shots_per_class),
        n_query=int(episode.provenance.get("n_query") or len(query_items)),
        seed=seed,
        checkpoint=checkpoint_record(path, metadata),
        checkpoint_name=metadata.name or path.stem,
        device=describe_device(device),
        steps=steps,
        class_names=list(episode.class_names),
        config={
            "rules": rules,
            "head_init": head_init,
            "checkpoint_path": str(path),
            "image_spec": spec.to_dict(),
            "shots_per_class": episode.shots_per_class,
            "queries": len(query_items),
            "labelled_queries": sum(item.label is not None for item in query_items),
            "supported_rules": supported_rules(metadata),
            "provenance": provenance,
            **(extra_config or {}),
        },
        items=[_item_record(item) for item in items],
        note=note,
    )


def _item_record(item: EpisodeImage) -> EpisodeItemInput:
    """The run store's record of one episode image (the store keeps the bytes, keyed by their hash)."""
    image = item.image
    record = ImageInput(image.data, image.mime, image.width, image.height, image.source_name, image.preview)
    return EpisodeItemInput(item.role, item.position, item.label, record)


def episode_from_items(
    items: Sequence[EpisodeImage], class_names: Sequence[str], spec: ImageSpec
) -> Task:
    """Rebuild an episode from stored items (decoded with ``spec``); query labels only if all are known."""
    support = sorted((i for i in items if i.role == "support"), key=lambda i: i.position)
    query = sorted((i for i in items if i.role == "query"), key=lambda i: i.position)
    if not support or not query:
        raise ValueError("the stored episode has no support or no query images")
    labels = [item.label for item in query]
    return Task(
        support_x=torch.stack([decode_image(i.image.data, spec, i.image.source_name) for i in support]),
        support_y=torch.tensor([int(i.label) for i in support if i.label is not None], dtype=torch.int64),
        query_x=torch.stack([decode_image(i.image.data, spec, i.image.source_name) for i in query]),
        query_y=None if any(v is None for v in labels) else torch.tensor(labels, dtype=torch.int64),
        class_names=list(class_names),
        support_sources=[i.image.source_name for i in support],
        query_sources=[i.image.source_name for i in query],
    )


def _locate_checkpoint(path: Path, sha256: str) -> Path:
    if path.is_file() and file_sha256(path) == sha256:
        return path
    for entry in find_checkpoints():
        if entry.error is None and entry.path.is_file() and file_sha256(entry.path) == sha256:
            return entry.path
    if path.is_file():
        raise CheckpointError(
            f"{path} has changed since the run (its contents no longer match); the exact checkpoint is not found"
        )
    raise FileNotFoundError(f"checkpoint {path} is gone and no other checkpoint file has the same contents")


def rerun(
    store: Store,
    run_id: int,
    *,
    device: torch.device | str = "cpu",
    loader: LearnerLoader | None = None,
    on_progress: Callable[[RuleProgress], None] | None = None,
) -> int:
    """Adapt a stored run's episode again (same images, checkpoint file, rules, steps); returns the new run id.

    The checkpoint is found by the hash of its contents (at its stored path, or any other checkpoint file).
    Raises ``KeyError`` for an unknown run, ``FileNotFoundError`` / ``CheckpointError`` when the exact
    checkpoint is not available any more, and :class:`RunFailed` like :func:`run_rules`.
    """
    detail = store.get_run(run_id)
    if detail.checkpoint is None:
        raise ValueError(f"run #{run_id} has no checkpoint record; it cannot be re-run")
    path = _locate_checkpoint(Path(detail.checkpoint.path), detail.checkpoint.file_sha256)
    spec = checkpoint_spec(read_metadata(path), path.name)
    items = []
    for item in detail.items:
        data, mime = store.get_image(item.image_sha256)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        stored = ImageFile(data, mime, width, height, item.source_name)
        items.append(EpisodeImage(item.role, item.position, item.label, stored))  # type: ignore[arg-type]
    episode = episode_from_items(items, detail.class_names, spec)
    # Every rule the run asked for (a failed run may have stopped before some of them), in its order.
    rules = list(detail.config.get("rules") or [a.rule for a in detail.adaptations])
    return run_rules(
        store=store,
        checkpoint_path=path,
        rules=rules,
        episode=episode,
        items=items,
        steps=detail.steps,
        device=device,
        source=detail.source,
        dataset=detail.dataset,
        split=detail.split,
        seed=detail.seed,
        head_init=detail.config.get("head_init"),
        on_progress=on_progress,
        loader=loader,
        note=f"re-run of run #{run_id}",
        extra_config={"rerun_of": run_id, "provenance": detail.config.get("provenance", {})},
    )


@dataclass
class RunTicket:
    """A run adapting in a worker thread (:func:`start_run`): its progress so far and, once over, its outcome.

    The dashboard keeps the ticket in the session and reads it on every rerun, so a run goes on and is stored
    whatever the user clicks meanwhile. ``events`` only grows (appended by the worker, read by the page).
    """

    checkpoint_path: str
    rules: list[str]
    steps: int
    started_at: float
    future: Future[int]
    events: list[RuleProgress] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.future.done()

    def latest(self) -> RuleProgress | None:
        return self.events[-1] if self.events else None

    def outcome(self) -> tuple[int | None, str | None]:
        """``(run id, error)`` of a finished run: ``(id, None)`` stored, ``(id, text)`` stored as failed,
        ``(None, text)`` refused before anything was stored (bad input)."""
        error = self.future.exception()
        if error is None:
            return self.future.result(), None
        if isinstance(error, RunFailed):
            return error.run_id, error.error
        return None, str(error)


def _submit(executor: Executor, work: Callable[..., int], ticket: tuple[str, list[str], int],
            **arguments: Any) -> RunTicket:
    """Submit ``work(on_progress=..., **arguments)``; ``ticket`` is the (checkpoint path, rules, steps) it shows."""
    if "on_progress" in arguments:
        raise ValueError("a started run records its progress in its ticket; do not pass on_progress")
    events: list[RuleProgress] = []
    lock = threading.Lock()

    def record(event: RuleProgress) -> None:
        with lock:  # appends are atomic in CPython, the lock keeps that true on free-threaded builds too
            events.append(event)

    future = executor.submit(work, on_progress=record, **arguments)
    checkpoint_path, rules, steps = ticket
    return RunTicket(checkpoint_path=checkpoint_path, rules=rules, steps=steps, started_at=time.time(),
                     future=future, events=events)


def start_run(executor: Executor, **run_arguments: Any) -> RunTicket:
    """Submit :func:`run_rules` (same keyword arguments, without ``on_progress``) to ``executor``.

    Everything ``run_rules`` validates before adapting is still reported through the ticket's outcome; a
    run that starts is always stored, as succeeded or failed, even if nobody looks at the ticket again.
    """
    shown = (str(run_arguments.get("checkpoint_path")), list(run_arguments.get("rules") or []),
             int(run_arguments.get("steps") or 0))
    return _submit(executor, run_rules, shown, **run_arguments)


def start_rerun(executor: Executor, store: Store, run_id: int, **rerun_arguments: Any) -> RunTicket:
    """Submit :func:`rerun` of a stored run to ``executor``; the ticket follows it like :func:`start_run`'s."""
    detail = store.get_run(run_id)  # KeyError for an unknown run, before anything is submitted
    path = detail.checkpoint.path if detail.checkpoint is not None else str(detail.config.get("checkpoint_path"))
    rules = list(detail.config.get("rules") or [a.rule for a in detail.adaptations])
    return _submit(executor, rerun, (path, rules, detail.steps), store=store, run_id=run_id, **rerun_arguments)
