"""Packaging a trained checkpoint for shipping: measure it on its held-out classes, write it under
``assets/checkpoints`` with the measurements in its metadata, and record its hash in the folder's manifest.

A workflow on top of :mod:`core.checkpoint` (``python -m core package``). Every shipped figure follows one
protocol: :data:`SETTINGS`, :data:`N_QUERY` queries per class and the episode seed :data:`EVAL_SEED`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from core.adapt import default_head_init
from core.checkpoint import (
    CheckpointError,
    CheckpointMetadata,
    HeldOutResult,
    HeldOutResults,
    ManifestEntry,
    ShippedInfo,
    file_sha256,
    load_learner,
    read_manifest,
    read_metadata,
    write_manifest,
)
from core.checkpoint.format import read_tensors, write_file
from core.config import config_from_dict
from core.data.factory import build_image_set
from core.evaluate import evaluate_classification

__all__ = ["EVAL_SEED", "N_QUERY", "SETTINGS", "EarlierMeasurement", "measure_heldout", "package"]

# The held-out protocol of every shipped figure: 600 episodes, 15 queries per class, a fixed episode seed.
SETTINGS = ((5, 1), (5, 5), (20, 1))
N_QUERY = 15
EVAL_SEED = 12345


@dataclass(frozen=True)
class EarlierMeasurement:
    """A measurement of the same file under the same protocol made before (``bench/paper_tables.py`` rows, the
    CLI's cache of an interrupted packaging run): taken as it is instead of measuring again."""

    rule: str
    way: int
    shot: int
    head_init: str
    episodes: int
    accuracy: float
    ci95: float
    seconds: float
    source: str  # where it was read from

    def matches(self, rule: str, way: int, shot: int, head_init: str, episodes: int) -> bool:
        return (self.rule, self.way, self.shot, self.head_init, self.episodes) == (rule, way, shot, head_init, episodes)


def measure_heldout(
    path: str | Path,
    rules: list[str],
    episodes: int = 600,
    reuse: list[EarlierMeasurement] | None = None,
    log: Callable[[str], None] = print,
    on_row: Callable[[HeldOutResult], None] | None = None,
) -> list[HeldOutResult]:
    """Accuracy of each rule on the checkpoint's held-out (test) classes in every setting of :data:`SETTINGS`.

    ``reuse`` rows matching rule, way, shot, head and episodes are taken instead of measuring again. ``on_row``
    gets every new measurement as soon as it is made (the CLI appends it to a cache, so an interrupted packaging
    run continues where it stopped).
    """
    metadata = read_metadata(path)
    if metadata.training is None or metadata.training.config is None:
        raise CheckpointError(f"{path} does not record its training config, so its held-out classes are unknown")
    test_set = build_image_set(config_from_dict(dict(metadata.training.config)), "test")
    steps = metadata.inner_steps.eval
    rows = []
    for rule in rules:
        learner, _ = load_learner(path, rule=rule)
        for way, shot in SETTINGS:
            head = default_head_init(learner, way)
            earlier = next((m for m in reuse or [] if m.matches(rule, way, shot, head, episodes)), None)
            if earlier is not None:
                accuracy, ci95, seconds, reused_from = earlier.accuracy, earlier.ci95, earlier.seconds, earlier.source
            else:
                result = evaluate_classification(learner, test_set, way, shot, N_QUERY, episodes, steps,
                                                 seed=EVAL_SEED, head_init=head, progress=False)
                accuracy, ci95, seconds, reused_from = result.mean, result.ci95, round(result.seconds, 1), None
            row = HeldOutResult(rule=rule, way=way, shot=shot, head_init=head, episodes=episodes, n_query=N_QUERY,
                                seed=EVAL_SEED, steps=steps, accuracy=accuracy, ci95=ci95, seconds=seconds,
                                reused_from=reused_from)
            if on_row is not None and reused_from is None:
                on_row(row)
            log(f"{Path(path).name}: {rule} {way}-way {shot}-shot ({head} head): "
                f"{100 * row.accuracy:.2f} ± {100 * row.ci95:.2f} %")
            rows.append(row)
    return rows


def _shippable_training(metadata: CheckpointMetadata) -> CheckpointMetadata:
    """Older runs recorded the absolute path of the entry point as their command; ship what a user types in any
    checkout, and keep the command as recorded beside it."""
    training = metadata.training
    if training is None:
        return metadata
    program, _, arguments = training.command.partition(" ")
    if not program.replace("\\", "/").endswith("core/__main__.py"):
        return metadata
    training = dataclasses.replace(training, command=f"python -m core {arguments}",
                                   command_as_recorded=training.command)
    return dataclasses.replace(metadata, training=training)


def package(
    source: str | Path,
    folder: str | Path,
    name: str,
    title: str,
    results: list[HeldOutResult],
    half_precision: bool = False,
    default: bool = False,
    notes: str = "",
) -> Path:
    """Write ``<folder>/<name>.safetensors``: the source's tensors, its metadata plus the held-out results and
    shipping details; then list it in the folder's manifest (as the default if asked)."""
    source = Path(source)
    metadata = _shippable_training(read_metadata(source))
    classes = metadata.heldout_classes
    shipped = dataclasses.replace(
        metadata,
        name=name,
        shipped=ShippedInfo(title=title, source_sha256=file_sha256(source), half_precision=half_precision,
                            packaged_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), notes=notes),
        heldout=HeldOutResults(
            classes=classes,
            protocol=f"{results[0].episodes if results else 0} episodes, {N_QUERY} queries per class, "
                     f"episode seed {EVAL_SEED}, mean and 95% CI (1.96 std / sqrt(n))",
            results=tuple(results),
        ),
        header=None,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = write_file(folder / f"{name}.safetensors", read_tensors(source), shipped.to_header(),
                     dtype=torch.float16 if half_precision else None)
    manifest = read_manifest(folder)
    manifest.checkpoints[out.name] = ManifestEntry(
        sha256=file_sha256(out), bytes=out.stat().st_size, title=title,
        backbone=shipped.backbone.name, rule=shipped.rule.name,
    )
    if default:
        manifest.default = out.name
    write_manifest(folder, manifest)
    return out
