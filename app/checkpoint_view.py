"""What a checkpoint is and how well it measured: the rows and tables the Adapt and Checkpoints pages show.

Two measurements are shown, each named for what it is: the *validation* accuracy, measured during training on the
validation classes (``best.safetensors`` is the checkpoint that scored highest on it), and the *held-out test*
accuracy of shipped checkpoints, measured when packaging on classes never used for training or model selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from app.formatting import percent, rule_label

TRAIN_COMMAND = "python -m core train --config configs/omniglot/conv4_alfa_maml.toml"


@dataclass(frozen=True)
class MeasuredMetric:
    """One entry of a checkpoint's ``metrics`` metadata: ``split`` (e.g. "validation"), ``metric``, mean ± ci95."""

    split: str
    metric: str
    mean: float
    ci95: float | None

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


def measured_metrics(metadata: dict[str, Any]) -> list[MeasuredMetric]:
    """The checkpoint's ``metrics`` (what training measured on its validation classes), in metadata order."""
    measured = []
    for split, values in (metadata.get("metrics") or {}).items():
        if isinstance(values, dict) and isinstance(values.get("mean"), (int, float)):
            ci95 = values.get("ci95")
            measured.append(MeasuredMetric(str(split), str(values.get("metric", "accuracy")), float(values["mean"]),
                                           float(ci95) if isinstance(ci95, (int, float)) else None))
    return measured


def validation_accuracy(metadata: dict[str, Any]) -> MeasuredMetric | None:
    """The accuracy training measured on the validation classes, if the checkpoint records one."""
    return next((m for m in measured_metrics(metadata) if m.split == "validation" and m.metric == "accuracy"), None)


def validation_protocol(metadata: dict[str, Any]) -> str:
    """How the validation figure was measured, from the training config: "100 episodes, 5-way 1-shot, on
    Early_Aramaic"; "" when the checkpoint does not say."""
    training = metadata.get("training") or {}
    config = training.get("config") or {}
    episodes = (config.get("validation") or {}).get("episodes")
    task = config.get("task") or {}
    classes = (training.get("data") or {}).get("val")
    parts = []
    if episodes:
        parts.append(f"{episodes} episodes")
    if task.get("n_way") and task.get("k_shot"):
        parts.append(f"{task['n_way']}-way {task['k_shot']}-shot")
    if classes:
        parts.append(f"on {', '.join(map(str, classes)) if isinstance(classes, list) else classes}")
    return ", ".join(parts)


def is_image_classifier(metadata: dict[str, Any]) -> bool:
    return metadata.get("task_kind", "classification") == "classification" and bool(metadata.get("image"))


def _options(config: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in config.items() if k != "name")


def _image_text(image: dict[str, Any]) -> str:
    if not image:
        return "— (not an image model)"
    size = image.get("size")
    return f"{image.get('channels')}×{size}×{size}" + (", inverted" if image.get("invert") else "")


def checkpoint_rows(metadata: dict[str, Any]) -> list[dict[str, str]]:
    """The facts about a checkpoint worth reading before using it, as (field, value) rows."""
    backbone = metadata.get("backbone") or {}
    rule = metadata.get("rule") or {}
    image = metadata.get("image") or {}
    training = metadata.get("training") or {}
    data = training.get("data") or {}
    rows = [
        ("Backbone", f"{backbone.get('name', '?')} ({_options(backbone)})" if backbone else "—"),
        ("Inner-loop rule", f"{rule_label(str(rule.get('name')))} ({_options(rule)})" if rule else "—"),
        ("Task", str(metadata.get("task_kind", "classification"))
         + (f", {metadata['n_way']}-way" if metadata.get("n_way") else "")),
        ("Images", _image_text(image)),
        ("Inner steps", ", ".join(f"{k} {v}" for k, v in (metadata.get("inner_steps") or {}).items()) or "—"),
        ("Head", str(metadata.get("head_init", "—"))),
    ]
    if data:
        described = ", ".join(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items() if k != "root"
        )
        rows.append(("Trained on", described))
    if training:
        trained = (
            f"{training.get('iterations', '?')} iterations, {training.get('tasks_seen', '?')} tasks, "
            f"{training.get('wall_seconds', '?')} s on {training.get('device', '?')}"
        )
        rows.append(("Training", trained))
    protocol = validation_protocol(metadata)
    for measured in measured_metrics(metadata):
        how = f" ({protocol}, measured during training)" if protocol and measured.split == "validation" else ""
        rows.append((measured.label, measured.value + how))
    heldout = metadata.get("heldout") or {}
    by_setting: dict[tuple[int, int], list[str]] = {}
    for result in heldout.get("results") or []:
        by_setting.setdefault((result["way"], result["shot"]), []).append(
            f"{rule_label(result['rule'])} {percent(result['accuracy'])} ± {100 * result['ci95']:.1f}"
        )
    for (way, shot), values in by_setting.items():
        rows.append((f"Held-out test accuracy, {way}-way {shot}-shot", " · ".join(values)))
    if heldout.get("classes"):
        rows.append(("Held-out classes", f"{', '.join(heldout['classes'])} ({heldout.get('protocol', '')})"))
    pretraining = training.get("pretraining")
    if pretraining:
        pretrained = (f"supervised, {pretraining.get('epochs')} epochs on {pretraining.get('classes')} training "
                      f"classes, {pretraining.get('wall_seconds')} s")
        rows.append(("Pre-training", pretrained))
    shipped = metadata.get("shipped") or {}
    if shipped.get("notes"):
        rows.append(("Notes", str(shipped["notes"])))
    if metadata.get("description"):
        rows.append(("Description", str(metadata["description"])))
    return [{"field": field, "value": value or "—"} for field, value in rows]


def heldout_table(checkpoints: list[tuple[str, dict[str, Any]]]) -> list[dict[str, str]]:
    """One row per checkpoint and rule, one column per measured setting (``heldout`` metadata of shipped files)."""
    rows = []
    for name, metadata in checkpoints:
        by_rule: dict[str, dict[str, str]] = {}
        for result in (metadata.get("heldout") or {}).get("results") or []:
            row = by_rule.setdefault(result["rule"], {"checkpoint": name, "rule": rule_label(result["rule"])})
            row[f"{result['way']}-way {result['shot']}-shot"] = (
                f"{100 * result['accuracy']:.2f} ± {100 * result['ci95']:.2f} ({result['head_init']} head)"
            )
        rows.extend(by_rule.values())
    return rows


def render_checkpoint_summary(metadata: dict[str, Any]) -> None:
    # A static table wraps long values (training data, description) instead of cutting them off.
    st.table(checkpoint_rows(metadata), hide_index=True, hide_header=True, border="horizontal")
    command = (metadata.get("training") or {}).get("command")
    if command:
        st.caption("Trained with:")
        st.code(command, language="bash")
