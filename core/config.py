"""Training configuration: a TOML file read into typed sections with defaults and clear errors.

Example: ``configs/omniglot_conv4_alfa.toml``. Unknown keys are errors (a typo must not silently fall back
to a default).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from core.data.augment import AugmentConfig
from core.rules import registered_rule_names, rule_spec


class ConfigError(ValueError):
    pass


@dataclass
class DataConfig:
    kind: str = "omniglot"  # omniglot | folder | miniimagenet_csv | mnist1d | sine
    root: str = ""  # "" = the default place for the kind (Omniglot: $FEWSHOT_OMNIGLOT_ROOT or ../shared)
    download: bool = False  # Omniglot through torchvision when the internet is reachable
    image_size: int = 28
    channels: int = 1
    invert: bool = True
    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])
    rotations: list[int] = field(default_factory=lambda: [0])  # extra classes for training only
    # Omniglot: alphabet lists; folder / miniimagenet_csv: a single split name in a one-element list.
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    # Random affine distortion of training tasks' images (core.data.augment), e.g. { rotation = 10, shear = 10,
    # scale = [0.9, 1.1], translate = 0.1 }; the default leaves them as they are. Validation and test: never.
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, AugmentConfig):
            return
        try:
            self.augment = AugmentConfig.from_table(self.augment)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"data.augment: {error}") from None

    @property
    def task_kind(self) -> str:
        """The objective (``core.objectives``) the data is learned with: regression for the sine family."""
        return "regression" if self.kind == "sine" else "classification"


@dataclass
class TaskConfig:
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 15


@dataclass
class ModelConfig:
    backbone: dict[str, Any] = field(default_factory=lambda: {"name": "conv4"})
    head_init: str = "learned"


# The one ``[rule]`` table every rule shared before each rule had its own options dataclass, with its defaults.
# The training configs stored in checkpoints written then (the shipped ones among them) carry all of its keys.
_SHARED_RULE_DEFAULTS: dict[str, Any] = {"lr": 0.01, "steps": None, "weight_decay": 5e-4, "generator_init": "default"}


@dataclass(frozen=True)
class RuleConfig:
    """``[rule]``: a registered rule (``core.rules``) and its own options dataclass (``rule_spec(name).options``)."""

    name: str = "sgd"
    options: Any = None  # the rule's options dataclass; None: its defaults

    def __post_init__(self) -> None:
        spec = rule_spec(self.name)
        if self.options is None:
            object.__setattr__(self, "options", spec.options())
        elif not isinstance(self.options, spec.options):
            raise TypeError(f"rule {self.name!r} takes {spec.options.__name__}, not {type(self.options).__name__}")

    @classmethod
    def from_table(cls, table: dict[str, Any], inner_steps: int) -> RuleConfig:
        """Parse ``[rule]``: ``name`` picks the rule, the other keys must be its options; a rule with a
        ``steps`` option takes ``inner_steps`` (``meta.inner_steps``) when the table gives none.

        A table of the old shared layout may hold keys the chosen rule does not use (an ``sgd`` rule with
        ``weight_decay = 5e-4``): such a key is accepted only at the shared table's default, which it held
        without meaning anything; any other value is an error, as it would have been ignored.
        """
        values = dict(table)
        try:
            spec = rule_spec(values.pop("name", "sgd"))
        except ValueError as error:
            raise ConfigError(f"rule.name: {error}") from None
        own = spec.option_names()
        for key in [key for key in values if key not in own and key in _SHARED_RULE_DEFAULTS]:
            if values[key] == _SHARED_RULE_DEFAULTS[key]:
                del values[key]
        if "steps" in own and values.get("steps") is None:  # absent, or the shared table's "meta.inner_steps"
            values["steps"] = inner_steps
        try:
            return cls(spec.name, spec.parse_options(values))
        except ValueError as error:
            raise ConfigError(f"[rule] {error}") from None

    def as_rule_dict(self) -> dict[str, Any]:
        """The rule's JSON config, as ``core.rules.build_rule`` takes it and checkpoints store it."""
        return {"name": self.name, **asdict(self.options)}


@dataclass
class MetaConfig:
    estimator: str = "maml"  # the meta-gradient estimator (core.meta): maml (second order) | fomaml | ...
    estimator_options: dict[str, Any] = field(default_factory=dict)  # checked against the estimator's options
    batched: bool = False  # run the meta-batch under torch.func.vmap
    recompute: bool = False  # keep only the weights per inner step and rebuild each step's graph in the
    #                          outer backward pass: memory of one step instead of all (same gradient, ~1.4x time)
    meta_batch: int = 4
    iterations: int = 1000
    # The outer step (core.meta.outer_step): adam | sgd | clipped | normalized | sngdm, and its options table,
    # e.g. outer_step = "sngdm" with outer_step_options = { momentum = 0.9 }.
    outer_step: str = "adam"
    outer_step_options: dict[str, Any] = field(default_factory=dict)
    # The inner problem: support loss + proximal_lambda/2 ||y - x||^2 (x the initialisation, y the fast weights);
    # 0 = the plain support loss. Evaluation and adaptation of the checkpoint solve the same problem.
    proximal_lambda: float = 0.0
    outer_lr: float = 1e-3  # the rate (the step length of normalized and sngdm) of the backbone's meta-parameters
    rule_outer_lr: float | None = None  # outer rate of the rule's meta-parameters (default: outer_lr)
    inner_steps: int = 5
    eval_inner_steps: int = 5
    multi_step_loss: bool = False
    multi_step_anneal_iterations: int = 0
    grad_clip: float = 0.0  # 0 = off; > 0: the older spelling of outer_step = "clipped" around adam or sgd
    cosine_schedule: bool = False
    min_outer_lr: float = 1e-5

    @property
    def execution(self) -> str:
        """How the estimator runs the tasks of a meta-batch: ``vmap``, ``recompute`` or one at a time (``loop``)."""
        return "vmap" if self.batched else "recompute" if self.recompute else "loop"


@dataclass
class PretrainConfig:
    """Supervised pre-training of the backbone on all training classes before meta-training (as LEO, MetaOpt)."""

    epochs: int = 0  # 0 = none: meta-training starts from the backbone's random initialisation
    batch_size: int = 64
    lr: float = 0.05  # SGD with momentum, cosine-annealed over the epochs
    momentum: float = 0.9
    weight_decay: float = 5e-4
    output: str = ""  # the pre-trained backbone file; "" = <output_dir>/pretrained.safetensors. Runs sharing
    #                   a file share the pre-training (it is only run when the file is missing).


@dataclass
class ValidationConfig:
    every: int = 500
    episodes: int = 100


@dataclass
class CheckpointConfig:
    every: int = 100
    half_precision: bool = False


@dataclass
class TrainConfig:
    name: str = "experiment"
    seed: int = 0
    output_dir: str = ""
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rule: RuleConfig = field(default_factory=RuleConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def output_path(self, config_path: Path | None = None) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rule": self.rule.as_rule_dict()}

    def backbone_config(self) -> dict[str, Any]:
        """``[model] backbone`` completed from the task and data: a classification head of ``n_way`` classes, and
        the image's channels and side for backbones that take them (sine regression keeps the MLP's own output)."""
        from models.backbones import backbone_parameters

        backbone = dict(self.model.backbone)
        if self.data.task_kind != "classification":
            return backbone
        backbone.setdefault("n_classes", self.task.n_way)
        accepted = backbone_parameters(backbone.get("name"))
        # ``length``: a 1-D network's signal length (MNIST-1D's 40), held as data.image_size.
        for key, value in (
            ("in_channels", self.data.channels),
            ("image_size", self.data.image_size),
            ("length", self.data.image_size),
        ):
            if key in accepted:
                backbone.setdefault(key, value)
        return backbone


_SECTIONS = {
    "data": DataConfig,
    "task": TaskConfig,
    "model": ModelConfig,
    "rule": RuleConfig,
    "meta": MetaConfig,
    "pretrain": PretrainConfig,
    "validation": ValidationConfig,
    "checkpoint": CheckpointConfig,
}


def _build(cls, values: dict[str, Any], where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**values)


# TOML scalars each annotation accepts (annotations are strings here: ``from __future__ import annotations``); an
# int is a valid float, a bool is neither. Other annotations (tables, lists, sections) are checked where they are used.
_SCALAR_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string"}


def _check_types(section: Any, where: str = "") -> None:
    """Every scalar of the config's sections has its annotated type (recursing into nested dataclasses)."""
    for item in fields(section):
        value = getattr(section, item.name)
        key = f"{where}{item.name}"
        if is_dataclass(value) and not isinstance(value, type):
            _check_types(value, f"{key}.")
        else:
            _check_scalar_type(item.type, value, key)


def _check_scalar_type(annotation: object, value: Any, key: str) -> None:
    """A wrongly typed scalar (``iterations = "many"``) is a ConfigError naming the key, not a TypeError later."""
    if not isinstance(annotation, str):
        return
    optional = annotation.endswith(" | None")
    base = annotation.removesuffix(" | None")
    if base not in _SCALAR_TYPES or (optional and value is None):
        return
    if isinstance(value, bool) != (base == "bool") or not isinstance(value, _SCALAR_TYPES[base]):
        raise ConfigError(f"{key} must be {_TYPE_WORDS[base]}, not {value!r}")


# ``meta.algorithm`` of configs written before meta-gradient estimators were registered (the configs stored in the
# shipped checkpoints carry it): its two values are the two estimators that existed then.
_LEGACY_ALGORITHMS = {"second_order": "maml", "first_order": "fomaml"}


# ``[meta]`` keys added after runs stored their configs (in training states and checkpoints), and the value each means
# in a stored config without it: what those runs did. Their defaults here are the same values (a test checks it).
ADDED_META_KEYS: dict[str, Any] = {"outer_step": "adam", "outer_step_options": {}, "proximal_lambda": 0.0}


def with_added_meta_keys(meta: dict[str, Any]) -> dict[str, Any]:
    """A stored ``[meta]`` table with the keys added since it was written, at what they mean for it."""
    return {**{k: (dict(v) if isinstance(v, dict) else v) for k, v in ADDED_META_KEYS.items()}, **meta}


def _upgrade_meta(meta: dict[str, Any]) -> dict[str, Any]:
    if "algorithm" not in meta:
        return meta
    meta = dict(meta)
    algorithm = meta.pop("algorithm")
    if algorithm not in _LEGACY_ALGORITHMS:
        raise ConfigError(
            f"meta.algorithm must be second_order or first_order, not {algorithm!r} "
            "(new configs name the estimator: meta.estimator = \"maml\" or \"fomaml\")"
        )
    if "estimator" in meta and meta["estimator"] != _LEGACY_ALGORITHMS[algorithm]:
        raise ConfigError(f"meta.algorithm = {algorithm!r} contradicts meta.estimator = {meta['estimator']!r}; keep only meta.estimator")
    meta["estimator"] = _LEGACY_ALGORITHMS[algorithm]
    return meta


# ``[tune]``: the search space of ``python -m core tune`` (read by core.tune_config), not a setting of the run itself.
TUNE_SECTION = "tune"


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    raw = {k: v for k, v in raw.items() if k != TUNE_SECTION}
    raw = {**raw, "meta": _upgrade_meta(raw.get("meta", {}))} if "meta" in raw else raw
    top = {k: v for k, v in raw.items() if k not in _SECTIONS}
    sections = {k: _build(cls, raw.get(k, {}), k) for k, cls in _SECTIONS.items() if cls is not RuleConfig}
    sections["rule"] = RuleConfig.from_table(raw.get("rule", {}), sections["meta"].inner_steps)
    config = _build(TrainConfig, {**top, **sections}, "top level")
    # The dedicated checks first (their messages say more: the choices, the allowed range); then every scalar's type,
    # so that a wrongly typed value (iterations = "many") is a ConfigError naming its key, not a TypeError later.
    try:
        _validate(config)
    except TypeError:
        _check_types(config)
        raise
    _check_types(config)
    return config


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        return config_from_dict(raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _validate(config: TrainConfig) -> None:
    if config.data.kind not in ("omniglot", "folder", "miniimagenet_csv", "mnist1d", "sine"):
        raise ConfigError(
            f"data.kind must be omniglot, folder, miniimagenet_csv, mnist1d or sine, not {config.data.kind!r}"
        )
    if config.data.kind == "mnist1d":
        _validate_mnist1d(config.data)
    _validate_estimator(config.meta, config.rule)
    _validate_outer_step(config.meta)
    _validate_model(config)
    for name in ("meta_batch", "iterations", "inner_steps"):
        if getattr(config.meta, name) < 1:
            raise ConfigError(f"meta.{name} must be at least 1")
    if config.pretrain.epochs < 0 or config.pretrain.batch_size < 1:
        raise ConfigError("pretrain.epochs must be 0 or more and pretrain.batch_size at least 1")
    if config.pretrain.epochs and config.data.task_kind != "classification":
        raise ConfigError("pretrain.epochs must be 0 for sine regression")
    if config.pretrain.epochs and rule_spec(config.rule.name).capabilities.reinitialises_backbone:
        raise ConfigError(
            f"pretrain.epochs must be 0 for rule {config.rule.name} (it re-initialises the backbone and keeps it frozen)"
        )
    if config.meta.batched and config.meta.recompute:
        raise ConfigError("meta.batched and meta.recompute cannot both be on: choose vmap speed or one step's memory")
    if config.meta.eval_inner_steps < 0:
        raise ConfigError("meta.eval_inner_steps must be 0 or more")
    if config.data.task_kind != "classification" and not config.data.augment.is_identity:
        raise ConfigError("data.augment distorts images; sine regression has none (remove data.augment)")
    if config.data.task_kind == "classification" and config.task.n_way < 2:
        raise ConfigError("task.n_way must be at least 2")


def _validate_mnist1d(data: DataConfig) -> None:
    """MNIST-1D's fixed few-shot protocol (``core.data.mnist1d``): its named splits, one channel of length 40."""
    from core.data.mnist1d import MNIST1D_LENGTH, MNIST1D_SPLITS

    for role in ("train", "val", "test"):
        selection = getattr(data, role)
        if selection and (len(selection) != 1 or selection[0] not in MNIST1D_SPLITS):
            raise ConfigError(
                f"data.{role} for data.kind mnist1d must be one of {[[s] for s in MNIST1D_SPLITS]} "
                f"(the protocol's fixed splits), not {selection!r}"
            )
    if not data.train:
        raise ConfigError('data.train for data.kind mnist1d must be ["train"]')
    if data.channels != 1 or data.image_size != MNIST1D_LENGTH:
        raise ConfigError(
            f"MNIST-1D signals are one channel of length {MNIST1D_LENGTH}: set data.channels = 1 and "
            f"data.image_size = {MNIST1D_LENGTH}, not {data.channels} and {data.image_size}"
        )
    if not data.augment.is_identity:
        raise ConfigError("data.augment distorts images; MNIST-1D signals have none (remove data.augment)")


def _validate_estimator(meta: MetaConfig, rule: RuleConfig) -> None:
    """The estimator, its options and how it runs its tasks, checked against the estimator registry; the proximal
    term, the rule and the multi-step loss against what the estimator declares it needs and gives."""
    from core.meta.estimator import estimator_options, estimator_spec

    lam = meta.proximal_lambda
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ConfigError(f"meta.proximal_lambda must be a finite number >= 0 (0 = no proximal term), not {lam!r}")
    meta.proximal_lambda = float(lam)
    try:
        spec = estimator_spec(meta.estimator)
        estimator_options(meta.estimator, meta.estimator_options)
    except ValueError as error:
        raise ConfigError(f"meta.estimator: {error}") from None
    if meta.execution not in spec.executions:
        raise ConfigError(
            f"meta.estimator {meta.estimator!r} runs its tasks by {', '.join(spec.executions)}; "
            f"turn meta.batched / meta.recompute off"
        )
    if spec.needs_proximal and meta.proximal_lambda <= 0:
        raise ConfigError(
            f"meta.estimator {meta.estimator!r} estimates the meta-gradient of the proximal inner problem "
            f"(support loss + lambda/2 ||y - x||^2) and needs meta.proximal_lambda > 0, not {meta.proximal_lambda:g}"
        )
    if not spec.rule_meta_gradients and rule_spec(rule.name).capabilities.meta_learned:
        plain = [n for n in registered_rule_names() if not rule_spec(n).capabilities.meta_learned]
        raise ConfigError(
            f"meta.estimator {meta.estimator!r} gives no gradient to an inner rule's meta-learned parameters, and "
            f"rule {rule.name!r} has some (its rates would never be trained): use a rule without meta-learned "
            f"parameters ({', '.join(plain)}) or an estimator that trains them (maml, fomaml)"
        )
    if meta.multi_step_loss and not spec.multi_step_loss:
        raise ConfigError(
            f"meta.estimator {meta.estimator!r} does not support the multi-step loss (its meta-gradient is of the "
            f"query loss at the adapted weights only): set meta.multi_step_loss = false"
        )


def _validate_outer_step(meta: MetaConfig) -> None:
    """The outer step and its options (and the older ``meta.grad_clip``), checked by ``core.meta.outer_step``."""
    from core.meta.outer_step import choose_outer_step

    if not isinstance(meta.outer_step_options, dict):
        raise ConfigError(f"meta.outer_step_options must be a table, not {meta.outer_step_options!r}")
    try:
        choose_outer_step(meta.outer_step, meta.outer_step_options, meta.grad_clip)
    except ValueError as error:
        raise ConfigError(f"meta.outer_step: {error}") from None


def _validate_model(config: TrainConfig) -> None:
    """The backbone and its options against the backbone registry, and the head set-up against the objectives."""
    from core.objectives import HEAD_INITS
    from models.backbones import backbone_parameters, registered_backbones

    backbone = config.model.backbone
    name = backbone.get("name")
    if name not in registered_backbones():
        raise ConfigError(f"model.backbone.name must be one of {', '.join(registered_backbones())}, not {name!r}")
    unknown = sorted(set(backbone) - {"name"} - backbone_parameters(name))
    if unknown:
        raise ConfigError(
            f"unknown option(s) for backbone {name!r}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(backbone_parameters(name)))})"
        )
    if config.model.head_init not in HEAD_INITS:
        raise ConfigError(f"model.head_init must be one of {', '.join(HEAD_INITS)}, not {config.model.head_init!r}")
