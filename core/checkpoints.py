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


def find_checkpoints(dirs: list[Path] | None = None) -> list[CheckpointEntry]:
    """Every ``*.safetensors`` deployable checkpoint (training-state files are skipped), with metadata or the error."""
    entries = []
    for folder in dirs or search_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.safetensors")):
            if path.name == "state.safetensors":
                continue
            try:
                metadata = read_metadata(path)
            except CheckpointError as error:
                entries.append(CheckpointEntry(path, path.stem, error=str(error)))
                continue
            if metadata.get("kind") == "training_state":
                continue
            entries.append(CheckpointEntry(path, metadata.get("name") or path.stem, metadata))
    return entries
