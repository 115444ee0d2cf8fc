"""Save a ``Learner`` as a deployable checkpoint, and load one back (with any rule the checkpoint supports)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import torch

from core import settings
from core.checkpoint.catalog import read_metadata, verify_shipped
from core.checkpoint.format import CheckpointError, read_tensors, write_file
from core.checkpoint.metadata import (
    BackboneSetting,
    CheckpointMetadata,
    InnerSteps,
    RuleSetting,
    TrainingRecord,
    ValidationResult,
)
from core.data.images import ImageSpec
from core.learner import Learner
from core.rules import supported_rules as rules_supported_by

__all__ = [
    "code_version",
    "learner_metadata",
    "learner_tensors",
    "load_learner",
    "save_learner",
    "supported_rules",
]


def code_version() -> str:
    """``git describe`` of the checkout when there is one, else ``"unknown"``."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=settings.REPO_ROOT, capture_output=True, text=True,
            timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def learner_tensors(learner: Learner) -> dict[str, torch.Tensor]:
    return dict(learner.state_dict())


def _model_fields(learner: Learner) -> dict[str, Any]:
    """The metadata that describes the tensors: always taken from the learner itself, never from a caller."""
    rule = learner.rule.config()
    return {
        "backbone": BackboneSetting(learner.backbone_config["name"],
                                 {k: v for k, v in learner.backbone_config.items() if k != "name"}),
        "rule": RuleSetting(rule["name"], {k: v for k, v in rule.items() if k != "name"}),
        "head_init": learner.head_init,
        "task_kind": learner.task_kind,
        "frozen_backbone": learner.frozen_backbone,
        "inner_tensors": tuple(learner.inner_names),
    }


def learner_metadata(
    learner: Learner,
    *,
    name: str,
    inner_steps: InnerSteps,
    description: str = "",
    image: ImageSpec | None = None,
    n_way: int | None = None,
    training: TrainingRecord | None = None,
    validation: ValidationResult | None = None,
    code: str | None = None,
) -> CheckpointMetadata:
    """Metadata for a checkpoint of ``learner`` (its model fields come from it); packaging adds held-out
    results and shipping details later. ``code`` defaults to :func:`code_version`."""
    return CheckpointMetadata(
        name=name, description=description, image=image, n_way=n_way, inner_steps=inner_steps, training=training,
        validation=validation, heldout=None, shipped=None, code_version=code or code_version(),
        **_model_fields(learner),
    )


def save_learner(
    path: str | Path, learner: Learner, metadata: CheckpointMetadata, dtype: torch.dtype | None = None
) -> Path:
    """Write the learner's tensors with ``metadata`` (schema :data:`core.checkpoint.metadata.SCHEMA_VERSION`).

    The model fields of ``metadata`` (backbone, rule, head, task kind, inner tensors) are replaced by the
    learner's own, so a file never describes other tensors than it holds.
    """
    metadata = dataclasses.replace(metadata, header=None, **_model_fields(learner))
    return write_file(path, learner_tensors(learner), metadata.to_header(), dtype=dtype)


def proximal_lambda_of(metadata: CheckpointMetadata) -> float:
    """The ``meta.proximal_lambda`` the checkpoint was trained with, from its stored training config: its inner
    problem, which adaptation must solve too. Files without one (written before the option, or without a
    training record) trained on the plain support loss: 0."""
    training = metadata.training
    config = None if training is None else training.config
    meta = (config or {}).get("meta") or {}
    return float(meta.get("proximal_lambda", 0.0))


def learner_from_tensors(tensors: dict[str, torch.Tensor], metadata: CheckpointMetadata, source: str) -> Learner:
    learner = Learner(
        metadata.backbone.config, metadata.rule.config, head_init=metadata.head_init, task_kind=metadata.task_kind,
        proximal_lambda=proximal_lambda_of(metadata),
    )
    missing, unexpected = learner.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: tensors do not match the described model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    return learner


def supported_rules(metadata: CheckpointMetadata) -> list[str]:
    """Rules a checkpoint can adapt with: the one it was meta-trained with, then every rule without meta-learned
    parameters (they start from its backbone weights alone)."""
    return rules_supported_by(metadata.rule.name)


def load_learner(
    path: str | Path, rule: str | None = None, device: torch.device | str = "cpu"
) -> tuple[Learner, CheckpointMetadata]:
    """Load a checkpoint for adaptation (eval mode, no gradients); ``rule`` picks one of ``supported_rules``
    (default: the trained rule). A shipped file is checked against its manifest first.

    Another rule keeps the checkpoint's backbone weights and starts from the trained rule's base learning rate
    (``Learner.with_rule``): ``sgd`` is the "MAML-style" baseline of the same initialisation. The metadata
    returned is the file's, whatever the rule.
    """
    path = Path(path)
    verify_shipped(path)
    metadata = read_metadata(path)
    learner = learner_from_tensors(read_tensors(path), metadata, str(path))
    if rule is not None and rule != learner.rule.name:
        try:
            learner = learner.with_rule(rule)
        except ValueError as error:
            raise ValueError(f"checkpoint {path.name}: {error}") from None
    learner.eval()
    for p in learner.parameters():
        p.requires_grad_(False)
    return learner.to(device), metadata
