"""Where checkpoints are looked for: shipped ones under ``assets/checkpoints`` and trained ones under ``runs/``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.checkpoint import CheckpointError, read_metadata

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DIR = REPO_ROOT / "assets" / "checkpoints"


def search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("FEWSHOT_CHECKPOINT_DIRS", "").split(os.pathsep) if p]
    return [SHIPPED_DIR, REPO_ROOT / "runs", *extra]


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
