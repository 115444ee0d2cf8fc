"""What a checkpoint is and how well it measured: the rows and tables the Adapt and Checkpoints pages show.

Two measurements are shown, each named for what it is: the *validation* accuracy, measured during training on the
validation classes (``best.safetensors`` is the checkpoint that scored highest on it), and the *held-out test*
accuracy of shipped checkpoints, measured when packaging on classes never used for training or model selection.
A checkpoint with a meta-learned rule also shows its adaptivity figures (alpha/beta over held-out episodes), as
recorded in the file, or measured on request when it records none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app import charts
from app.formatting import percent, rule_label
from app.resources import cached_loader, short_path
from core.checkpoint import CheckpointEntry, CheckpointMetadata, ValidationResult, file_sha256, find_checkpoints
from core.checkpoint.learner_io import proximal_lambda_of
from core.config import ConfigError
from core.device import pick_device
from core.packaging import AdaptivityUnavailable, adaptivity_protocol, measure_adaptivity
from core.rule_spread import RuleSpread
from core.settings import omniglot_root

TRAIN_COMMAND = "python -m core train --config configs/omniglot/conv4_alfa_maml.toml"
ADAPT_PAGE = "screens/adapt.py"
ADAPT_CHECKPOINT_KEY = "checkpoint"  # the session-state key of the Adapt page's checkpoint selectbox


@dataclass(frozen=True)
class MeasuredMetric:
    """A measurement training recorded (``split``, e.g. "validation", ``metric``, mean ± ci95), for display."""

    split: str
    metric: str
    mean: float
    ci95: float | None

    @classmethod
    def of(cls, split: str, result: ValidationResult) -> MeasuredMetric:
        return cls(split, result.metric, result.mean, result.ci95)

    @property
    def label(self) -> str:
        """ "Validation accuracy", "Validation MSE" """
        metric = self.metric if self.metric == "accuracy" else self.metric.upper()
        return f"{self.split.capitalize()} {metric}"

    @property
    def value(self) -> str:
        """ "93.4% ± 1.6" for an accuracy (± in percentage points), "0.512 ± 0.03" otherwise."""
        if self.metric == "accuracy":
            return percent(self.mean) + ("" if self.ci95 is None else f" ± {100 * self.ci95:.1f}")
        return f"{self.mean:.4g}" + ("" if self.ci95 is None else f" ± {self.ci95:.2g}")


def measured_metrics(metadata: CheckpointMetadata) -> list[MeasuredMetric]:
    """What training measured and recorded in the checkpoint (today: on its validation classes)."""
    return [] if metadata.validation is None else [MeasuredMetric.of("validation", metadata.validation)]


def validation_accuracy(metadata: CheckpointMetadata) -> MeasuredMetric | None:
    """The accuracy training measured on the validation classes, if the checkpoint records one."""
    return next((m for m in measured_metrics(metadata) if m.metric == "accuracy"), None)


def validation_protocol(metadata: CheckpointMetadata) -> str:
    """How the validation figure was measured, from the training config: "100 episodes, 5-way 1-shot, on
    Early_Aramaic"; "" when the checkpoint does not say."""
    training = metadata.training
    if training is None:
        return ""
    parts = []
    try:
        config = training.train_config()
    except ConfigError:
        config = None  # a config this code no longer reads: say what the data record says
    if config is not None:
        if config.validation.episodes:
            parts.append(f"{config.validation.episodes} episodes")
        parts.append(f"{config.task.n_way}-way {config.task.k_shot}-shot")
    if training.data is not None and training.data.val:
        parts.append(f"on {', '.join(training.data.val)}")
    return ", ".join(parts)


def is_image_classifier(metadata: CheckpointMetadata) -> bool:
    return metadata.is_image_classifier


def _options(options: object) -> str:
    return ", ".join(f"{k} {v}" for k, v in dict(options).items())  # type: ignore[call-overload]


def checkpoint_rows(metadata: CheckpointMetadata) -> list[dict[str, str]]:
    """The facts about a checkpoint worth reading before using it, as (field, value) rows."""
    image = metadata.image
    training = metadata.training
    rows = [
        ("Backbone", f"{metadata.backbone.name} ({_options(metadata.backbone.options)})"),
        ("Inner-loop rule", f"{rule_label(metadata.rule.name)} ({_options(metadata.rule.options)})"),
        ("Task", metadata.task_kind + (f", {metadata.n_way}-way" if metadata.n_way else "")),
        ("Images", "— (not an image model)" if image is None else
         f"{image.channels}×{image.size}×{image.size}" + (", inverted" if image.invert else "")),
        ("Inner steps", f"train {metadata.inner_steps.train}, eval {metadata.inner_steps.eval}"),
        ("Head", metadata.head_init),
    ]
    lam = proximal_lambda_of(metadata)
    if lam > 0:  # adaptation solves the proximal problem the file was trained on (shown only when it is not plain)
        rows.append(("Inner problem", f"support loss + {lam:g}/2 ‖y − x‖² (proximal, x the initialisation)"))
    if training is not None and training.data is not None:
        data = training.data
        splits = [("train", data.train), ("val", data.val), ("test", data.test), ("rotations", data.rotations)]
        rows.append(("Trained on", ", ".join(
            [f"kind: {data.kind}"] + [f"{name}: {', '.join(map(str, values))}" for name, values in splits if values]
        )))
    if training is not None:
        iterations, tasks, seconds, device = (
            "?" if value is None else str(value)
            for value in (training.iterations, training.tasks_seen, training.wall_seconds, training.device)
        )
        estimator = "" if training.estimator is None else f", meta-gradient {training.estimator}"
        rows.append(("Training", f"{iterations} iterations, {tasks} tasks, {seconds} s on {device}{estimator}"))
        if training.tuning is not None:
            rows.append(("Tuning trial", f"trial {training.tuning.trial} of study {training.tuning.study}: "
                         + ", ".join(f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}"
                                     for key, value in training.tuning.params.items())))
    protocol = validation_protocol(metadata)
    for measured in measured_metrics(metadata):
        how = f" ({protocol}, measured during training)" if protocol else ""
        rows.append((measured.label, measured.value + how))
    heldout = metadata.heldout
    if heldout is not None:
        by_setting: dict[str, list[str]] = {}
        for result in heldout.results:
            by_setting.setdefault(result.setting, []).append(
                f"{rule_label(result.rule)} {percent(result.accuracy)} ± {100 * result.ci95:.1f}"
            )
        for setting, values in by_setting.items():
            rows.append((f"Held-out test accuracy, {setting}", " · ".join(values)))
        if heldout.classes:
            rows.append(("Held-out classes", f"{', '.join(heldout.classes)} ({heldout.protocol})"))
    pretraining = training.pretraining if training is not None else None
    if pretraining is not None:
        pretrained = (f"supervised, {pretraining.epochs} epochs on {pretraining.classes} training classes, "
                      f"{pretraining.wall_seconds} s")
        rows.append(("Pre-training", pretrained))
    if metadata.shipped is not None and metadata.shipped.notes:
        rows.append(("Notes", metadata.shipped.notes))
    if metadata.description:
        rows.append(("Description", metadata.description))
    return [{"field": field, "value": value or "—"} for field, value in rows]


def heldout_table(checkpoints: list[tuple[str, CheckpointMetadata]]) -> list[dict[str, str]]:
    """One row per checkpoint and rule, one column per measured setting (the held-out results of shipped files)."""
    rows = []
    for name, metadata in checkpoints:
        by_rule: dict[str, dict[str, str]] = {}
        for result in metadata.heldout.results if metadata.heldout is not None else ():
            row = by_rule.setdefault(result.rule, {"checkpoint": name, "rule": rule_label(result.rule)})
            row[result.setting] = (
                f"{100 * result.accuracy:.2f} ± {100 * result.ci95:.2f} ({result.head_init} head)"
            )
        rows.extend(by_rule.values())
    return rows


def render_checkpoint_summary(metadata: CheckpointMetadata) -> None:
    # A static table wraps long values (training data, description) instead of cutting them off.
    st.table(checkpoint_rows(metadata), hide_index=True, hide_header=True, border="horizontal")
    if metadata.training is not None and metadata.training.command:
        st.caption("Trained with:")
        st.code(metadata.training.command, language="bash")


# Below this std/|mean| of alpha at every layer and step the episodes change the rate in its fourth significant
# digit at most: no chart can show it, and the rule acts as a fixed per-step schedule.
FIXED_SCHEDULE_SPREAD = 1e-3
ADAPTIVITY_HEADING = "α and β across held-out episodes (as ALFA's Figure 3)"


def adaptivity_caption(spread: RuleSpread) -> str:
    """One line on how much the episode moves the generated α: the largest ``std / |mean|`` over layers and
    steps, the largest share of a layer's α variation the episode explains, and what they mean."""
    relative = spread.largest_relative_alpha_spread()
    share = spread.largest_alpha_episode_share()
    if share is None:
        return (f"α is the same in all {spread.episodes} held-out episodes, at every layer and step: the rule "
                "ignores the episode.")
    relative_text = "unbounded (a mean of 0 varies)" if math.isinf(relative) else f"{relative:.2g}"
    if relative < FIXED_SCHEDULE_SPREAD:
        meaning = "the generated rates are the same for every episode: a fixed per-step schedule"
    elif share < 0.5:
        meaning = "the rates move with the episode, but the step explains most of their variation"
    else:
        meaning = "the rates depend on the episode: the rule sets them per task"
    return (f"Largest spread of α across the {spread.episodes} episodes: std/|mean| {relative_text} (over layers and "
            f"steps); the episode explains at most {100 * share:.2g}% of a layer's α variation. So {meaning}.")


@st.cache_data(show_spinner=False, max_entries=16)
def _measured_adaptivity(path: str, sha256: str, data_root: str) -> RuleSpread:
    # Keyed by the file's hash (a file changed in place is measured afresh) and by where the data is read.
    return measure_adaptivity(path, device=pick_device(), loader=cached_loader, omniglot_root=data_root,
                              expected_sha256=sha256)


def _adaptivity_on_request(path: Path, metadata: CheckpointMetadata, key: str) -> RuleSpread | None:
    """A button to measure the figures of a checkpoint that records none (then them, on every later rerun);
    ``None`` while there is nothing to draw."""
    data_root = omniglot_root()
    try:
        protocol = adaptivity_protocol(metadata, data_root)
    except AdaptivityUnavailable as why:
        st.caption(f"{ADAPTIVITY_HEADING}: not recorded, and not measurable here: {why}.")
        return None
    if protocol is None:
        return None  # a rule without meta-learned parameters: its α and β are its settings
    requested = f"{key}_adaptivity_requested"
    if not st.session_state.get(requested):
        st.caption(f"{ADAPTIVITY_HEADING}: this checkpoint does not record them.")
        if not st.button(f"Measure them now ({protocol.described})", key=f"{key}_measure_adaptivity"):
            return None
        st.session_state[requested] = True
    try:
        with st.spinner(f"Adapting {protocol.described} with {rule_label(protocol.rule)}…", show_time=True):
            return _measured_adaptivity(str(path), file_sha256(path), str(data_root))
    except (ValueError, OSError, RuntimeError) as error:
        st.error(f"The α/β figures could not be measured: {error}")
        return None


def render_adaptivity(path: Path, metadata: CheckpointMetadata, key: str) -> None:
    """The checkpoint's adaptivity figures (ALFA's Figure 3) with a caption in words; when the file records none
    and its rule is meta-learned, a button that measures them (cached per file hash, not written to the file)."""
    spread = metadata.adaptivity
    recorded = spread is not None
    if spread is None:
        spread = _adaptivity_on_request(path, metadata, key)
        if spread is None:
            return
    st.markdown(f"**{ADAPTIVITY_HEADING}**")
    st.plotly_chart(charts.adaptivity_figure(spread, metadata.backbone.config), key=f"{key}_adaptivity",
                    width="stretch")
    where = "recorded when the checkpoint was packaged" if recorded else "measured now, not stored in the file"
    st.caption(f"{adaptivity_caption(spread)} ({spread.data}, {spread.n_way}-way {spread.k_shot}-shot, "
               f"{spread.steps} steps, seed {spread.seed}; {where}.)")


def adapt_choice_label(entry: CheckpointEntry) -> str:
    """How the Adapt page's checkpoint selectbox names a checkpoint (and how other pages choose one there)."""
    return f"{entry.name} — {short_path(entry.path)}"


def open_on_adapt_button(path: str, label: str, key: str) -> None:
    """A button that opens the checkpoint at ``path`` on the Adapt page, or a caption saying why it cannot.

    Adapt takes no checkpoint by query parameter: setting its selectbox's session state chooses the checkpoint.
    """
    entry = next((e for e in find_checkpoints() if str(e.path) == str(path) and e.error is None), None)
    if entry is None:
        st.caption("Not in a checkpoint folder the dashboard searches (see the Checkpoints page).")
        return
    if not is_image_classifier(entry.metadata):
        st.caption("Adapt works with image classifiers; this checkpoint is not one.")
        return
    if st.button(label, key=key):
        st.session_state[ADAPT_CHECKPOINT_KEY] = adapt_choice_label(entry)
        st.switch_page(ADAPT_PAGE)
