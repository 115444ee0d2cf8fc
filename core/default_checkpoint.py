"""Which checkpoint is the default: the one its folder's ``MANIFEST.json`` names (``core.shipping``).

The CLI adapts and evaluates with the shipped default when no ``--checkpoint`` is given, and the dashboard lists it
first (``core.checkpoints.find_checkpoints``), so that is the checkpoint the pages mark as the default.
"""

from __future__ import annotations

from pathlib import Path

from core.shipping import read_manifest
from models.checkpoint import CheckpointError

__all__ = ["is_default_checkpoint"]


def is_default_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is the default named in the ``MANIFEST.json`` beside it (``False`` without a readable one)."""
    path = Path(path)
    try:
        return read_manifest(path.parent).get("default") == path.name
    except CheckpointError:
        return False
