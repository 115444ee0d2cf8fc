"""Packaging a trained checkpoint for shipping: measure it on its held-out classes, write it under
``assets/checkpoints`` with the measurements in its metadata, and record its hash in the folder's manifest.

A workflow on top of :mod:`core.checkpoint` (``python -m core package``). Every shipped figure follows one
protocol: :data:`SETTINGS`, :data:`N_QUERY` queries per class and the episode seed :data:`EVAL_SEED`.

A checkpoint whose rule is meta-learned also ships its *adaptivity figures* (ALFA, Baik et al. 2020, Figure 3):
the spread of the alpha/beta its rule generates over held-out episodes (:func:`measure_adaptivity`, protocol
:data:`ADAPTIVITY_EPISODES` and :data:`ADAPTIVITY_SEED`). :func:`record_adaptivity` adds them to a file
packaged before they existed, rewriting its header only.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    parse_metadata,
    read_manifest,
    read_metadata,
    write_manifest,
)
from core.checkpoint.format import read_tensors, rewrite_header, write_file
from core.config import ConfigError, config_from_dict
from core.data.factory import build_image_set
from core.evaluate import evaluate_classification
from core.rule_spread import HeldOutDataMissing, LearnerLoader, RuleSpread, find_heldout_data, rule_spread
from core.rules import rule_spec

__all__ = [
    "ADAPTIVITY_EPISODES",
    "ADAPTIVITY_SEED",
    "EVAL_SEED",
    "N_QUERY",
    "SETTINGS",
    "AdaptivityProtocol",
    "AdaptivityUnavailable",
    "EarlierMeasurement",
    "HeldOutSetting",
    "adaptivity_protocol",
    "add_heldout_results",
    "measure_adaptivity",
    "measure_heldout",
    "package",
    "record_adaptivity",
]



@dataclass(frozen=True)
class HeldOutSetting:
    """One column of the shipped tables: way, shot, and how an episode's classes are chosen
    (``core.evaluate``: "any-classes", or "within-alphabet": all from one alphabet)."""

    way: int
    shot: int
    protocol: str = "any-classes"

    @property
    def within_group(self) -> bool:
        return self.protocol != "any-classes"

    @property
    def label(self) -> str:
        """ "5-way 1-shot", "20-way 1-shot within-alphabet" (as ``HeldOutResult.setting``)."""
        return f"{self.way}-way {self.shot}-shot" + ("" if not self.within_group else f" {self.protocol}")


# The held-out protocol of every shipped figure: 600 episodes, 15 queries per class, a fixed episode seed.
SETTINGS = (HeldOutSetting(5, 1), HeldOutSetting(5, 5), HeldOutSetting(20, 1), HeldOutSetting(20, 1, "within-alphabet"))
N_QUERY = 15
EVAL_SEED = 12345
# The adaptivity figures: the checkpoint's own rule over 20 held-out episodes of the class and shot count it was
# trained for, its evaluation inner steps and its default head, episode seed 0 (with core.rule_spread's 5 queries
# per class these are ``python -m core inspect-rule``'s defaults, so that command shows the same episodes).
ADAPTIVITY_EPISODES = 20
ADAPTIVITY_SEED = 0


class AdaptivityUnavailable(ValueError):
    """A checkpoint's adaptivity figures cannot be measured here; the message says why, in one line."""


@dataclass(frozen=True)
class AdaptivityProtocol:
    """What a checkpoint's adaptivity figures measure: its rule, steps, class and shot count, episodes and seed."""

    rule: str
    steps: int
    n_way: int
    k_shot: int
    episodes: int = ADAPTIVITY_EPISODES
    seed: int = ADAPTIVITY_SEED

    @property
    def described(self) -> str:
        """ "20 held-out 5-way 1-shot episodes, 5 inner steps" """
        return (f"{self.episodes} held-out {self.n_way}-way {self.k_shot}-shot episodes, "
                f"{self.steps} inner steps")


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
    protocol: str = "any-classes"

    def matches(self, rule: str, setting: HeldOutSetting, head_init: str, episodes: int) -> bool:
        return (self.rule, self.way, self.shot, self.protocol, self.head_init, self.episodes) == (
            rule, setting.way, setting.shot, setting.protocol, head_init, episodes)


def measure_heldout(
    path: str | Path,
    rules: list[str],
    episodes: int = 600,
    reuse: list[EarlierMeasurement] | None = None,
    log: Callable[[str], None] = print,
    on_row: Callable[[HeldOutResult], None] | None = None,
    settings: tuple[HeldOutSetting, ...] = SETTINGS,
) -> list[HeldOutResult]:
    """Accuracy of each rule on the checkpoint's held-out (test) classes in every setting of ``settings``.

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
        for setting in settings:
            way, shot = setting.way, setting.shot
            head = default_head_init(learner, way)
            earlier = next((m for m in reuse or [] if m.matches(rule, setting, head, episodes)), None)
            if earlier is not None:
                accuracy, ci95, seconds, reused_from = earlier.accuracy, earlier.ci95, earlier.seconds, earlier.source
            else:
                result = evaluate_classification(learner, test_set, way, shot, N_QUERY, episodes, steps,
                                                 seed=EVAL_SEED, head_init=head, progress=False,
                                                 within_group=setting.within_group)
                accuracy, ci95, seconds, reused_from = result.mean, result.ci95, round(result.seconds, 1), None
            row = HeldOutResult(rule=rule, way=way, shot=shot, head_init=head, episodes=episodes, n_query=N_QUERY,
                                seed=EVAL_SEED, steps=steps, accuracy=accuracy, ci95=ci95, seconds=seconds,
                                reused_from=reused_from, protocol=setting.protocol)
            if on_row is not None and reused_from is None:
                on_row(row)
            log(f"{Path(path).name}: {rule} {setting.label} ({head} head): "
                f"{100 * row.accuracy:.2f} ± {100 * row.ci95:.2f} %")
            rows.append(row)
    return rows


def adaptivity_protocol(
    metadata: CheckpointMetadata, omniglot_root: str | Path | None = None
) -> AdaptivityProtocol | None:
    """How the checkpoint's adaptivity figures are measured; ``None`` when its rule has no meta-learned parameters
    (its alpha and beta are fixed settings, the same in every episode: nothing to measure).

    Raises :class:`AdaptivityUnavailable` when there is something to measure but not here: the checkpoint does
    not record the class and shot count it was trained for (its training config), or its held-out classes are
    not on this machine (``core.rule_spread.find_heldout_data``; checked without reading them).
    """
    try:
        meta_learned = rule_spec(metadata.rule.name).capabilities.meta_learned
    except ValueError as error:
        raise AdaptivityUnavailable(str(error)) from None
    if not meta_learned:
        return None
    training = metadata.training
    try:
        config = training.train_config() if training is not None else None
    except ConfigError as error:
        raise AdaptivityUnavailable(f"its training config cannot be read ({error})") from None
    if config is None:
        raise AdaptivityUnavailable("it does not record its training config, so the class and shot count it was "
                                    "trained for are unknown")
    try:
        find_heldout_data(metadata, omniglot_root)
    except HeldOutDataMissing as missing:
        raise AdaptivityUnavailable(str(missing)) from None
    return AdaptivityProtocol(rule=metadata.rule.name, steps=metadata.inner_steps.eval, n_way=config.task.n_way,
                              k_shot=config.task.k_shot)


def _measurable(path: Path, metadata: CheckpointMetadata, omniglot_root: str | Path | None) -> AdaptivityProtocol:
    protocol = adaptivity_protocol(metadata, omniglot_root)
    if protocol is None:
        raise AdaptivityUnavailable(f"{path.name}: its rule has no meta-learned parameters, so its alpha and beta "
                                    "are fixed settings, the same in every episode")
    return protocol


def measure_adaptivity(
    path: str | Path,
    device: torch.device | str = "cpu",
    loader: LearnerLoader | None = None,
    omniglot_root: str | Path | None = None,
    on_episode: Callable[[int, int], None] | None = None,
    expected_sha256: str | None = None,
) -> RuleSpread:
    """The checkpoint's adaptivity figures (:func:`adaptivity_protocol`, measured with
    ``core.rule_spread.rule_spread``; its other arguments go there). Raises :class:`AdaptivityUnavailable` when
    they cannot be measured here, and for a rule without meta-learned parameters."""
    path = Path(path)
    protocol = _measurable(path, read_metadata(path), omniglot_root)
    return rule_spread(path, protocol.rule, protocol.steps, protocol.n_way, protocol.k_shot,
                       episodes=protocol.episodes, seed=protocol.seed, device=device, loader=loader,
                       omniglot_root=omniglot_root, on_episode=on_episode, expected_sha256=expected_sha256)


def _list_in_manifest(path: Path, metadata: CheckpointMetadata, title: str, default: bool = False) -> None:
    """Record the file's current hash and size in its folder's manifest (as the default if asked)."""
    manifest = read_manifest(path.parent)
    manifest.checkpoints[path.name] = ManifestEntry(
        sha256=file_sha256(path), bytes=path.stat().st_size, title=title,
        backbone=metadata.backbone.name, rule=metadata.rule.name,
    )
    if default:
        manifest.default = path.name
    write_manifest(path.parent, manifest)


def _set_adaptivity(path: Path, spread: RuleSpread | None) -> None:
    """Put ``spread`` into the file's header as it is, or take the figures out (``None``)."""
    header = dict(read_metadata(path).verbatim())
    if spread is not None:
        header["adaptivity"] = spread.to_dict()
    elif "schema_version" in header:
        header["adaptivity"] = None  # as a file of the current schema is written before it is measured
    else:
        header.pop("adaptivity", None)  # a version-1 file, as it was written before the key existed
    _rewrite_header(path, header)


def add_heldout_results(path: str | Path, rows: list[HeldOutResult]) -> None:
    """Record held-out results measured after packaging (a new setting or rule) in an already packaged file:
    each replaces a recorded result of the same rule, way, shot, protocol and head, the others are kept. Only the
    header is rewritten, as :func:`record_adaptivity` does."""
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.heldout is None:
        raise CheckpointError(f"{path} is not a packaged checkpoint (it records no held-out results)")

    def key(row: HeldOutResult) -> tuple[str, int, int, str, str]:
        return row.rule, row.way, row.shot, row.protocol, row.head_init

    new = {key(row): row for row in rows}
    kept = [row for row in metadata.heldout.results if key(row) not in new]
    header = dict(metadata.verbatim())
    header["heldout"] = {**header["heldout"], "results": [dataclasses.asdict(row) for row in [*kept, *new.values()]]}
    _rewrite_header(path, header)


def _rewrite_header(path: Path, header: dict[str, Any]) -> None:
    """Write ``header`` over the file's own (the tensor bytes stay); a file its folder's manifest lists gets its
    new hash and size there. Nothing is written when the header is unchanged."""
    if header == read_metadata(path).verbatim():
        return
    # Parsed back before anything is written: a value JSON cannot carry (NaN) is refused with the parser's message.
    metadata = parse_metadata(json.loads(json.dumps(header)), str(path), path.stem)
    rewrite_header(path, header)
    listed = read_manifest(path.parent).checkpoints.get(path.name)
    if listed is not None:
        _list_in_manifest(path, metadata, listed.title)


def record_adaptivity(
    path: str | Path,
    device: torch.device | str = "cpu",
    omniglot_root: str | Path | None = None,
    on_episode: Callable[[int, int], None] | None = None,
) -> RuleSpread:
    """Measure the adaptivity figures of an already packaged file and record (or replace) them in its header.

    Nothing else is measured again (the held-out accuracies stay as they are); only the header is rewritten, the
    tensor bytes are kept (``core.checkpoint.format.rewrite_header``), and a file its folder's manifest lists gets
    its new hash there. The file measured is this one without figures (any recorded ones are taken out first, and
    put back if the measurement fails), so the figures name its hash as packaged and a refresh that measures the
    same values writes the same bytes. Raises :class:`AdaptivityUnavailable` as :func:`measure_adaptivity`,
    before changing anything.
    """
    path = Path(path)
    metadata = read_metadata(path)
    _measurable(path, metadata, omniglot_root)
    _set_adaptivity(path, None)
    try:
        spread = measure_adaptivity(path, device=device, omniglot_root=omniglot_root, on_episode=on_episode)
    except BaseException:
        _set_adaptivity(path, metadata.adaptivity)
        raise
    _set_adaptivity(path, spread)
    return spread


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
    shipping details, and the adaptivity figures of the written file when it can be measured here (a meta-learned
    rule, the training config and the held-out classes present: :func:`adaptivity_protocol`); then list it in the
    folder's manifest (as the default if asked)."""
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
        adaptivity=None,  # the source's figures, if any, are not this file's: measured below
        header=None,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = write_file(folder / f"{name}.safetensors", read_tensors(source), shipped.to_header(),
                     dtype=torch.float16 if half_precision else None)
    # Listed first: loading a listed file checks its hash, and the adaptivity figures are measured on this file
    # (with half precision its weights are not the source's).
    _list_in_manifest(out, shipped, title, default)
    try:
        measurable = adaptivity_protocol(shipped) is not None
    except AdaptivityUnavailable:
        measurable = False  # shipped without the figures; record_adaptivity adds them where the data is
    if measurable:
        record_adaptivity(out)
    return out
