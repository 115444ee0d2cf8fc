"""Save and load a ``Learner`` as a checkpoint file (``models.checkpoint`` format) with its metadata."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import torch

from core.learner import Learner
from core.rules import supported_rules as rules_supported_by
from models.checkpoint import CheckpointError, file_sha256, load_checkpoint, read_metadata, save_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """``git describe`` of the checkout when there is one, else the package's fallback."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def learner_tensors(learner: Learner) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in learner.state_dict().items()}


def save_learner(
    path: str | Path, learner: Learner, metadata: dict[str, Any], dtype: torch.dtype | None = None
) -> Path:
    """Write the learner's tensors with ``metadata`` merged over its description (backbone, rule, head...)."""
    header = {**learner.describe(), **metadata, "code_version": metadata.get("code_version") or code_version()}
    return save_checkpoint(path, learner_tensors(learner), header, dtype=dtype)


def learner_from_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, Any], source: str = "checkpoint") -> Learner:
    try:
        learner = Learner(
            metadata["backbone"],
            metadata["rule"],
            head_init=metadata.get("head_init", "learned"),
            task_kind=metadata.get("task_kind", "classification"),
        )
    except KeyError as error:
        raise CheckpointError(f"{source}: metadata lacks {error.args[0]!r}") from None
    missing, unexpected = learner.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: tensors do not match the described model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    return learner


def supported_rules(metadata: dict[str, Any]) -> list[str]:
    """Rules a checkpoint can adapt with: the one it was meta-trained with, then every rule without meta-learned
    parameters (they start from its backbone weights alone)."""
    return rules_supported_by(metadata["rule"]["name"])


def load_learner(path: str | Path, rule: str | None = None, device: torch.device | str = "cpu") -> tuple[Learner, dict]:
    """Load a checkpoint; ``rule`` picks one of ``supported_rules`` (default: the trained rule).

    Another rule keeps the checkpoint's backbone weights and starts from the trained rule's base learning rate
    (``Learner.with_rule``): ``sgd`` is the "MAML-style" baseline of the same initialisation.
    """
    from core.shipping import verify_shipped

    verify_shipped(path)
    tensors, metadata = load_checkpoint(path)
    learner = learner_from_tensors(tensors, metadata, str(path))
    trained = metadata["rule"]["name"]
    if rule is not None and rule != trained:
        try:
            learner = learner.with_rule(rule)
        except ValueError as error:
            raise ValueError(f"checkpoint {Path(path).name}: {error}") from None
        metadata = {**metadata, "rule": learner.rule.config()}
    learner.eval()
    for p in learner.parameters():
        p.requires_grad_(False)
    return learner.to(device), metadata


__all__ = [
    "CheckpointError",
    "code_version",
    "file_sha256",
    "load_learner",
    "read_metadata",
    "save_learner",
    "supported_rules",
]
