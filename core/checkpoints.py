"""Where checkpoints are looked for: shipped ones under ``assets/checkpoints`` and trained ones under ``runs/``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.checkpoint import CheckpointError, read_metadata

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DIR = REPO_ROOT / "assets" / "checkpoints"


# Folders searched besides the defaults (os.pathsep-separated).
EXTRA_DIRS_ENV = "FEWSHOT_CHECKPOINT_DIRS"
# When set (even to ""), replaces the default folders (assets/checkpoints and runs/): tests and demos use it to
# see only their own checkpoints.
DEFAULT_DIRS_ENV = "FEWSHOT_DEFAULT_CHECKPOINT_DIRS"


def _paths(value: str) -> list[Path]:
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p]


def search_dirs() -> list[Path]:
    extra = _paths(os.environ.get(EXTRA_DIRS_ENV, ""))
    defaults = os.environ.get(DEFAULT_DIRS_ENV)
    base = [SHIPPED_DIR, REPO_ROOT / "runs"] if defaults is None else _paths(defaults)
    return [*base, *extra]


@dataclass
class CheckpointEntry:
    path: Path
    name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# Files the training code writes beside deployable checkpoints: not something to adapt with.
NOT_DEPLOYABLE = ("training_state", "pretraining_state", "pretrained_backbone")


def find_checkpoints(dirs: list[Path] | None = None) -> list[CheckpointEntry]:
    """Every ``*.safetensors`` deployable checkpoint, with metadata or the error.

    Training-state and pre-training files are skipped. A folder's manifest default comes first, so the
    dashboard and CLI start from the shipped default; a shipped file whose hash does not match its manifest is
    listed with the error.
    """
    from core.shipping import read_manifest, verify_shipped

    entries = []
    for folder in dirs or search_dirs():
        if not folder.is_dir():
            continue
        try:
            default = read_manifest(folder).get("default")
        except CheckpointError:
            default = None
        paths = sorted(folder.rglob("*.safetensors"), key=lambda p: (p.name != default, str(p)))
        for path in paths:
            if path.name == "state.safetensors":
                continue
            try:
                metadata = read_metadata(path)
                if metadata.get("kind") in NOT_DEPLOYABLE:
                    continue
                verify_shipped(path)
            except CheckpointError as error:
                entries.append(CheckpointEntry(path, path.stem, error=str(error)))
                continue
            entries.append(CheckpointEntry(path, metadata.get("name") or path.stem, metadata))
    return entries
