"""What a deployable checkpoint says about itself: typed, versioned metadata.

:class:`CheckpointMetadata` is written by training (``Trainer.checkpoint_metadata``) and packaging
(:mod:`core.packaging`), and read by the CLI, the dashboard and the run service. In the file it is the JSON
header of :mod:`core.checkpoint.format`, laid out as below (``to_header``), with ``schema_version``.

Versions
--------
* ``schema_version`` 2 (written from now on): every key below is present (``null`` where a value does not
  exist, e.g. ``heldout`` before packaging); a missing or unknown key is an error, except the keys added since.
* No ``schema_version`` (version 1): every file written before the schema was versioned, the six shipped
  checkpoints among them (their bytes are hash-checked, so they are parsed, never rewritten into the current
  schema). Their layout is the same, but keys may be missing; :data:`LEGACY_FALLBACKS` lists what each missing
  key means, and keys this code does not know are ignored (they stay in :attr:`CheckpointMetadata.header`).
* A higher version than :data:`SCHEMA_VERSION` is refused with a message that says to update the tool.
* Keys added to the schema after files of its version were written (:data:`ADDED_KEYS`: ``adaptivity``) may be
  missing from a file of any version, and then mean what that table says ("not measured"). Recording one later
  rewrites the header only (:func:`core.packaging.record_adaptivity`): a version-1 file keeps its version-1
  header, with the added key beside its other keys.

The header as it was read stays available (:attr:`CheckpointMetadata.header`) for what must keep it verbatim
(the run store records it with each run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.checkpoint.format import FORMAT, CheckpointError
from core.config import _LEGACY_ALGORITHMS, TrainConfig, config_from_dict
from core.data.images import ImageSpec
from core.spread import RuleSpread

__all__ = [
    "ADDED_KEYS",
    "LEGACY_FALLBACKS",
    "SCHEMA_VERSION",
    "BackboneSetting",
    "CheckpointMetadata",
    "HeldOutResult",
    "HeldOutResults",
    "InnerSteps",
    "PretrainingRecord",
    "RuleSetting",
    "ShippedInfo",
    "TrainingData",
    "TrainingRecord",
    "TuningRecord",
    "ValidationResult",
    "parse_metadata",
    "pretraining_dict",
]

SCHEMA_VERSION = 2

# Keys of a version-1 header that may be missing, and the (JSON) value each then takes. "Not recorded" is None (or
# an empty list); a default is used only where the code that wrote those files used the same one.
LEGACY_FALLBACKS: dict[str, Any] = {
    "description": "",
    "head_init": "learned",  # Learner's default, also the loader's fallback before this schema
    "task_kind": "classification",  # regression checkpoints have always recorded their kind
    "frozen_backbone": None,
    "inner_tensors": None,
    "image": None,
    "n_way": None,
    "training": None,
    "metrics": {},
    "heldout": None,
    "shipped": None,
    "code_version": "unknown",
    "training.command": "",
    "training.command_as_recorded": None,
    "training.config": None,
    "training.data": None,
    "training.iterations": None,
    "training.tasks_seen": None,
    "training.wall_seconds": None,
    "training.device": None,
    "training.estimator": None,  # (unless the header has training.algorithm: see _LEGACY_ALGORITHMS)
    "training.skipped_nonfinite_steps": None,
    "training.pretraining": None,
    "training.data.root": None,
    "training.data.train": [],
    "training.data.val": [],
    "training.data.test": [],
    "training.data.rotations": [],
    "heldout.classes": [],
    "heldout.protocol": "",
    "heldout.results.reused_from": None,
    "shipped.notes": "",
    "shipped.half_precision": False,
    # Computed, not constant: "name" is the file's stem; "inner_steps" is the rule's "steps" option for both
    # training and evaluation when the rule has one, else 5 (``MetaConfig``'s default of both).
}
_DEFAULT_INNER_STEPS = 5
# Keys added after files of the current version were written, and the (JSON) value each takes in a file of any
# version that lacks it; new files always write them.
ADDED_KEYS: dict[str, Any] = {
    "adaptivity": None,  # not measured (core.packaging measures it for meta-learned rules)
    "heldout.results.protocol": "any-classes",  # every result before the within-alphabet protocol existed
    "training.tuning": None,  # not a trial of a tuning study (core.tune)
}
# Version-1 headers recorded ``training.algorithm`` before meta-gradient estimators were registered; its values map
# to estimators as ``core.config`` maps ``meta.algorithm`` of the configs stored beside it (one mapping, there).
# How training recorded "the dataset's default place" in ``training.data.root``.
_DEFAULT_ROOT = "(default)"

T = TypeVar("T")


# ----- the parts ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegisteredSetting:
    """A registered thing's name and its options: the JSON config its registry builds it from."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}


@dataclass(frozen=True)
class BackboneSetting(RegisteredSetting):
    """The network, exactly as ``models.backbones.build_backbone`` takes it."""

    @property
    def n_classes(self) -> int | None:
        """Outputs of the head the checkpoint was trained with (classification backbones)."""
        value = self.options.get("n_classes")
        return int(value) if value is not None else None


@dataclass(frozen=True)
class RuleSetting(RegisteredSetting):
    """The inner-loop rule, exactly as ``core.rules.build_rule`` takes it."""


@dataclass(frozen=True)
class InnerSteps:
    """Inner-loop steps the checkpoint was meta-trained with, and the ones evaluation uses by default."""

    train: int
    eval: int


@dataclass(frozen=True)
class ValidationResult:
    """What training measured on the validation classes when it saved this checkpoint (``best`` = top score)."""

    metric: str  # "accuracy" (classification) or "mse" (regression)
    mean: float
    ci95: float | None
    score: float  # higher is better: the accuracy, or minus the MSE


@dataclass(frozen=True)
class TrainingData:
    """Which data training used: the dataset kind, where it was, and the classes of each split."""

    kind: str
    root: str | None  # None: the kind's default place on the machine that trained
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()  # the held-out classes
    rotations: tuple[int, ...] = ()


@dataclass(frozen=True)
class PretrainingRecord:
    """The supervised pre-training a run started from (``core.pretrain``)."""

    file: str
    sha256: str
    command: str
    epochs: int
    classes: int
    images: int
    train: tuple[str, ...]  # training classes (alphabets) and rotations it used
    rotations: tuple[int, ...]
    wall_seconds: float
    final_train_accuracy: float | None
    recipe: Mapping[str, Any]  # the [pretrain] settings (batch size, rate, momentum...), as configured


@dataclass(frozen=True)
class TuningRecord:
    """The tuning trial that trained the checkpoint (``python -m core tune``, :mod:`core.tune`)."""

    study: str  # the Optuna study's name
    trial: int  # the trial's number in the study
    params: Mapping[str, Any]  # the sampled values, by config key (``meta.outer_lr``), as the [tune] space names them


@dataclass(frozen=True)
class TrainingRecord:
    """How the checkpoint was trained: enough to run it again and to know what it has seen."""

    command: str
    config: Mapping[str, Any] | None  # ``TrainConfig.to_dict()``; read back with ``core.config.config_from_dict``
    data: TrainingData | None
    iterations: int | None
    tasks_seen: int | None
    wall_seconds: float | None
    device: str | None
    estimator: str | None  # the meta-gradient estimator (``meta.estimator``)
    skipped_nonfinite_steps: int | None
    pretraining: PretrainingRecord | None
    command_as_recorded: str | None = None  # when packaging rewrote an absolute entry point into ``command``
    tuning: TuningRecord | None = None  # the tuning trial this run was; None: not a trial

    def train_config(self) -> TrainConfig | None:
        """The stored config read back (``core.config.config_from_dict``); None when none is recorded."""
        return None if self.config is None else config_from_dict(dict(self.config))


@dataclass(frozen=True)
class HeldOutResult:
    """Accuracy of one rule in one setting on the held-out classes (:mod:`core.packaging`)."""

    rule: str
    way: int
    shot: int
    head_init: str
    episodes: int
    n_query: int
    seed: int
    steps: int
    accuracy: float
    ci95: float
    seconds: float
    reused_from: str | None = None  # an earlier measurement of the same file and protocol, taken as it was
    # How an episode's classes are chosen (core.evaluate.PROTOCOLS): from all held-out classes ("any-classes"), or
    # all from one alphabet ("within-alphabet", Lake et al.'s harder one-shot test).
    protocol: str = "any-classes"

    @property
    def setting(self) -> str:
        """ "5-way 1-shot", "20-way 1-shot within-alphabet": the column a table puts this result in."""
        suffix = "" if self.protocol == "any-classes" else f" {self.protocol}"
        return f"{self.way}-way {self.shot}-shot{suffix}"


@dataclass(frozen=True)
class HeldOutResults:
    classes: tuple[str, ...]
    protocol: str  # in words: episodes, queries, seed, how the interval is computed
    results: tuple[HeldOutResult, ...]


@dataclass(frozen=True)
class ShippedInfo:
    """Set by packaging: the title the dashboard and manifest show, and where the file came from."""

    title: str
    source_sha256: str
    half_precision: bool
    packaged_at: str
    notes: str


@dataclass(frozen=True)
class CheckpointMetadata:
    """Everything a deployable checkpoint records besides its tensors."""

    name: str
    description: str
    backbone: BackboneSetting
    rule: RuleSetting
    head_init: str
    task_kind: str  # "classification" or "regression"
    frozen_backbone: bool | None  # None: not recorded
    inner_tensors: tuple[str, ...] | None  # backbone tensors the inner loop adapts; None: not recorded
    image: ImageSpec | None  # preprocessing of an image model
    n_way: int | None  # classes per training episode (classification)
    inner_steps: InnerSteps
    training: TrainingRecord | None
    validation: ValidationResult | None
    heldout: HeldOutResults | None
    shipped: ShippedInfo | None
    code_version: str
    # The spread of the checkpoint's own rule's alpha/beta over held-out episodes (core.packaging); None: not measured.
    adaptivity: RuleSpread | None = None
    # The header as read from the file (with ``format``), for what stores it verbatim; None when built in code.
    header: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def is_image_classifier(self) -> bool:
        return self.task_kind == "classification" and self.image is not None

    @property
    def trained_way(self) -> int | None:
        """Classes the checkpoint's head was trained for."""
        return self.backbone.n_classes or self.n_way

    @property
    def dataset_kind(self) -> str | None:
        """The kind of dataset training used (``omniglot``, ``folder``, ``sine``...); None when not recorded."""
        return self.training.data.kind if self.training is not None and self.training.data is not None else None

    @property
    def heldout_classes(self) -> tuple[str, ...]:
        """The classes training kept out (its test split)."""
        return self.training.data.test if self.training is not None and self.training.data is not None else ()

    def verbatim(self) -> dict[str, Any]:
        """The header as the file holds it when read from one, else as it would be written."""
        return dict(self.header) if self.header is not None else {**self.to_header(), "format": FORMAT}

    def to_header(self) -> dict[str, Any]:
        """The JSON header of a new file (schema :data:`SCHEMA_VERSION`); inverse of :func:`parse_metadata`."""
        training = self.training
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "backbone": self.backbone.config,
            "rule": self.rule.config,
            "head_init": self.head_init,
            "task_kind": self.task_kind,
            "frozen_backbone": self.frozen_backbone,
            "inner_tensors": None if self.inner_tensors is None else list(self.inner_tensors),
            "image": None if self.image is None else self.image.to_dict(),
            "n_way": self.n_way,
            "inner_steps": {"train": self.inner_steps.train, "eval": self.inner_steps.eval},
            "training": None if training is None else _training_dict(training),
            "metrics": {} if self.validation is None else {"validation": _plain(self.validation)},
            "heldout": None if self.heldout is None else {
                "classes": list(self.heldout.classes),
                "protocol": self.heldout.protocol,
                "results": [_plain(result) for result in self.heldout.results],
            },
            "shipped": None if self.shipped is None else _plain(self.shipped),
            "code_version": self.code_version,
            "adaptivity": None if self.adaptivity is None else self.adaptivity.to_dict(),
        }


def _plain(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def _training_dict(training: TrainingRecord) -> dict[str, Any]:
    data = training.data
    record = {
        "command": training.command,
        "config": None if training.config is None else dict(training.config),
        "data": None if data is None else {
            "kind": data.kind,
            "root": _DEFAULT_ROOT if data.root is None else data.root,
            "train": list(data.train),
            "val": list(data.val),
            "test": list(data.test),
            "rotations": list(data.rotations),
        },
        "iterations": training.iterations,
        "tasks_seen": training.tasks_seen,
        "wall_seconds": training.wall_seconds,
        "device": training.device,
        "estimator": training.estimator,
        "skipped_nonfinite_steps": training.skipped_nonfinite_steps,
        "pretraining": None if training.pretraining is None else pretraining_dict(training.pretraining),
        "command_as_recorded": training.command_as_recorded,
        "tuning": None if training.tuning is None else {
            "study": training.tuning.study,
            "trial": training.tuning.trial,
            "params": dict(training.tuning.params),
        },
    }
    return record


def pretraining_dict(record: PretrainingRecord) -> dict[str, Any]:
    """JSON form of a pre-training record (as ``core.pretrain`` has always laid it out)."""
    return {
        "file": record.file,
        "sha256": record.sha256,
        "command": record.command,
        "epochs": record.epochs,
        "classes": record.classes,
        "images": record.images,
        "data": {"train": list(record.train), "rotations": list(record.rotations)},
        "wall_seconds": record.wall_seconds,
        "final_train_accuracy": record.final_train_accuracy,
        "recipe": dict(record.recipe),
    }


# ----- parsing ------------------------------------------------------------------------------------------------
class _Fields:
    """One JSON object of the header, read key by key with type checks and the version's fallbacks.

    ``path`` names the object in messages (``training.data``); ``legacy`` applies :data:`LEGACY_FALLBACKS` to
    missing keys, otherwise a missing key is an error. ``used`` collects the keys read, so that a version-2
    object can refuse the ones nobody reads.
    """

    def __init__(self, data: Any, path: str, source: str, legacy: bool, fallback_path: str | None = None) -> None:
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: metadata {path or 'header'} must be a JSON object, found {data!r}")
        self.data, self.path, self.source, self.legacy = data, path, source, legacy
        # Where LEGACY_FALLBACKS lists this object's keys (the rows of a list share one entry).
        self.fallback_path = path if fallback_path is None else fallback_path
        self.used: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, wanted: str, value: Any) -> CheckpointError:
        return CheckpointError(f"{self.source}: metadata field {self._where(key)!r} must be {wanted}, found {value!r}")

    def raw(self, key: str) -> Any:
        """The value of ``key``; when missing, the legacy fallback of a version-1 header or the value of a key
        added since (:data:`ADDED_KEYS`), else an error."""
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        listed = f"{self.fallback_path}.{key}" if self.fallback_path else key
        if self.legacy and listed in LEGACY_FALLBACKS:
            return LEGACY_FALLBACKS[listed]
        if listed in ADDED_KEYS:
            return ADDED_KEYS[listed]
        raise CheckpointError(f"{self.source}: metadata lacks {self._where(key)!r}")

    def typed(self, key: str, convert: Callable[[Any], T], wanted: str, optional: bool = False) -> T:
        value = self.raw(key)
        if value is None and optional:
            return None  # type: ignore[return-value]
        try:
            return convert(value)
        except (TypeError, ValueError):
            raise self.fail(key, wanted, value) from None

    def text(self, key: str, optional: bool = False) -> str:
        return self.typed(key, _as_str, "a string", optional)

    def integer(self, key: str, optional: bool = False) -> int:
        return self.typed(key, _as_int, "a whole number", optional)

    def number(self, key: str, optional: bool = False) -> float:
        return self.typed(key, _as_float, "a number", optional)

    def flag(self, key: str, optional: bool = False) -> bool:
        return self.typed(key, _as_bool, "true or false", optional)

    def texts(self, key: str, optional: bool = False) -> tuple[str, ...]:
        return self.typed(key, lambda v: tuple(_as_str(x) for x in _as_list(v)), "a list of strings", optional)

    def integers(self, key: str) -> tuple[int, ...]:
        return self.typed(key, lambda v: tuple(_as_int(x) for x in _as_list(v)), "a list of whole numbers")

    def mapping(self, key: str, optional: bool = False) -> dict[str, Any]:
        return self.typed(key, _as_dict, "a JSON object", optional)

    def section(self, key: str) -> _Fields | None:
        value = self.raw(key)
        return None if value is None else _Fields(value, self._where(key), self.source, self.legacy)

    def done(self) -> None:
        """A version-2 object holds exactly the keys this code reads (older files may carry others)."""
        unknown = sorted(set(self.data) - self.used)
        if unknown and not self.legacy:
            raise CheckpointError(
                f"{self.source}: metadata {self.path or 'header'} has unknown field(s) {', '.join(unknown)} "
                f"for schema version {SCHEMA_VERSION}"
            )


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError
    return float(value)


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError
    return value


def _as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError
    return dict(value)


def parse_metadata(header: Mapping[str, Any], source: str = "checkpoint", stem: str | None = None) -> CheckpointMetadata:
    """The typed metadata of a deployable checkpoint's header (as ``core.checkpoint.format.read_header`` returns it).

    ``source`` names the file in error messages; ``stem`` (the file name without suffix) is the name of a
    version-1 file that records none. Raises ``CheckpointError`` for a header of a newer schema, a missing or
    mistyped field, and (version 2) an unknown field.
    """
    version = header.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{source}: metadata schema_version must be a whole number from 1, found {version!r}")
    if version > SCHEMA_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint metadata schema version {version} is newer than this code understands "
            f"({SCHEMA_VERSION}); update the tool"
        )
    legacy = version == 1
    body = {key: value for key, value in header.items() if key not in ("format", "format_version", "schema_version")}
    top = _Fields(body, "", source, legacy)
    rule = _component(top, "rule")
    if legacy and "name" not in body and stem:
        name = stem  # version 1 without a name: the file's stem, as every reader did
    else:
        name = top.text("name")
    if legacy and "inner_steps" not in body:
        # Version 1 without inner steps: the rule's own step count when it has one, else MetaConfig's default.
        steps = rule.options.get("steps", _DEFAULT_INNER_STEPS)
        inner_steps = InnerSteps(train=int(steps), eval=int(steps))
    else:
        steps_fields = _Fields(top.raw("inner_steps"), "inner_steps", source, legacy)
        inner_steps = InnerSteps(train=steps_fields.integer("train"), eval=steps_fields.integer("eval"))
        steps_fields.done()
    image = top.raw("image")
    metadata = CheckpointMetadata(
        name=name,
        description=top.text("description"),
        backbone=_component(top, "backbone"),
        rule=rule,
        head_init=top.text("head_init"),
        task_kind=top.text("task_kind"),
        frozen_backbone=top.flag("frozen_backbone", optional=True),
        inner_tensors=top.texts("inner_tensors", optional=True),
        image=None if image is None else _image(top, image),
        n_way=top.integer("n_way", optional=True),
        inner_steps=inner_steps,
        training=_training(top.section("training")),
        validation=_validation(top),
        heldout=_heldout(top.section("heldout")),
        shipped=_shipped(top.section("shipped")),
        code_version=top.text("code_version"),
        adaptivity=_adaptivity(top),
        header=dict(header),
    )
    top.done()
    return metadata


def _component(top: _Fields, key: str) -> Any:
    options = top.mapping(key)
    name = options.pop("name", None)
    if not isinstance(name, str) or not name:
        raise top.fail(f"{key}.name", "a non-empty string", name)
    return (BackboneSetting if key == "backbone" else RuleSetting)(name, options)


def _image(top: _Fields, value: Any) -> ImageSpec:
    if not isinstance(value, dict):
        raise top.fail("image", "a JSON object or null", value)
    try:
        return ImageSpec.from_dict(value)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{top.source}: metadata field 'image' is not an image spec ({error})") from None


def _adaptivity(top: _Fields) -> RuleSpread | None:
    value = top.raw("adaptivity")
    if value is None:
        return None
    try:
        return RuleSpread.from_dict(value)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{top.source}: metadata field 'adaptivity' is not a spread of alpha/beta over episodes ({error})"
        ) from None


def _validation(top: _Fields) -> ValidationResult | None:
    """``metrics.validation``: absent (``metrics`` is ``{}``) when training measured nothing."""
    metrics = _Fields(top.raw("metrics"), "metrics", top.source, top.legacy)
    values = metrics.section("validation") if "validation" in metrics.data else None
    result = None
    if values is not None:
        result = ValidationResult(
            metric=values.text("metric"), mean=values.number("mean"),
            ci95=values.number("ci95", optional=True), score=values.number("score"),
        )
        values.done()
    metrics.done()
    return result


def _training(fields: _Fields | None) -> TrainingRecord | None:
    if fields is None:
        return None
    data = fields.section("data")
    record = TrainingRecord(
        command=fields.text("command"),
        config=fields.mapping("config", optional=True),
        data=None if data is None else _training_data(data),
        iterations=fields.integer("iterations", optional=True),
        tasks_seen=fields.integer("tasks_seen", optional=True),
        wall_seconds=fields.number("wall_seconds", optional=True),
        device=fields.text("device", optional=True),
        estimator=_estimator(fields),
        skipped_nonfinite_steps=fields.integer("skipped_nonfinite_steps", optional=True),
        pretraining=_pretraining(fields.section("pretraining")),
        command_as_recorded=fields.text("command_as_recorded", optional=True),
        tuning=_tuning(fields.section("tuning")),
    )
    fields.done()
    return record


def _tuning(fields: _Fields | None) -> TuningRecord | None:
    if fields is None:
        return None
    record = TuningRecord(study=fields.text("study"), trial=fields.integer("trial"), params=fields.mapping("params"))
    fields.done()
    return record


def _estimator(fields: _Fields) -> str | None:
    if fields.legacy and "estimator" not in fields.data and "algorithm" in fields.data:
        algorithm = fields.raw("algorithm")
        if algorithm not in _LEGACY_ALGORITHMS:
            raise fields.fail("algorithm", f"one of {', '.join(_LEGACY_ALGORITHMS)}", algorithm)
        return _LEGACY_ALGORITHMS[algorithm]
    return fields.text("estimator", optional=True)


def _training_data(fields: _Fields) -> TrainingData:
    root = fields.text("root", optional=True)
    data = TrainingData(
        kind=fields.text("kind"),
        root=None if root in (None, "", _DEFAULT_ROOT) else root,
        train=fields.texts("train"),
        val=fields.texts("val"),
        test=fields.texts("test"),
        rotations=fields.integers("rotations"),
    )
    fields.done()
    return data


def _pretraining(fields: _Fields | None) -> PretrainingRecord | None:
    if fields is None:
        return None
    data = fields.section("data")
    if data is None:
        raise fields.fail("data", "a JSON object", None)
    record = PretrainingRecord(
        file=fields.text("file"),
        sha256=fields.text("sha256"),
        command=fields.text("command"),
        epochs=fields.integer("epochs"),
        classes=fields.integer("classes"),
        images=fields.integer("images"),
        train=data.texts("train"),
        rotations=data.integers("rotations"),
        wall_seconds=fields.number("wall_seconds"),
        final_train_accuracy=fields.number("final_train_accuracy", optional=True),
        recipe=fields.mapping("recipe"),
    )
    data.done()
    fields.done()
    return record


def parse_pretraining(value: Mapping[str, Any] | None, source: str) -> PretrainingRecord | None:
    """A pre-training record stored on its own (in a training-state file)."""
    return None if value is None else _pretraining(_Fields(dict(value), "pretraining", source, legacy=False))


def _heldout(fields: _Fields | None) -> HeldOutResults | None:
    if fields is None:
        return None
    rows = fields.typed("results", _as_list, "a list")
    results = []
    for index, row in enumerate(rows):
        item = _Fields(row, f"heldout.results[{index}]", fields.source, fields.legacy, "heldout.results")
        results.append(HeldOutResult(
            rule=item.text("rule"), way=item.integer("way"), shot=item.integer("shot"),
            head_init=item.text("head_init"), episodes=item.integer("episodes"), n_query=item.integer("n_query"),
            seed=item.integer("seed"), steps=item.integer("steps"), accuracy=item.number("accuracy"),
            ci95=item.number("ci95"), seconds=item.number("seconds"),
            reused_from=item.text("reused_from", optional=True), protocol=item.text("protocol"),
        ))
        item.done()
    heldout = HeldOutResults(
        classes=fields.texts("classes"),
        protocol=fields.text("protocol"),
        results=tuple(results),
    )
    fields.done()
    return heldout


def _shipped(fields: _Fields | None) -> ShippedInfo | None:
    if fields is None:
        return None
    shipped = ShippedInfo(
        title=fields.text("title"),
        source_sha256=fields.text("source_sha256"),
        half_precision=fields.flag("half_precision"),
        packaged_at=fields.text("packaged_at"),
        notes=fields.text("notes"),
    )
    fields.done()
    return shipped
