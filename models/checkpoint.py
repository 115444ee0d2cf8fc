"""Checkpoint files: tensors in safetensors, metadata as JSON in the safetensors header.

One file holds everything a checkpoint needs (so a user can upload or copy a single file), and loading it
never unpickles anything. Tensor names are prefixed by what they belong to: ``backbone.<name>`` for the
network's initial weights, ``rule.<name>`` for the inner-loop rule's meta-parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

FORMAT = "fewshot-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "fewshot"


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of ours; the message names the file."""


def save_checkpoint(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``tensors`` and ``metadata`` atomically (temporary file, then rename) so a crash leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prepared = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        prepared[name] = tensor.contiguous()
    header = {**metadata, "format": FORMAT, "format_version": FORMAT_VERSION}
    tmp = path.with_name(path.name + ".tmp")
    save_file(prepared, str(tmp), metadata={_META_KEY: json.dumps(header, sort_keys=True)})
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read only the JSON metadata (cheap: the header, not the tensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a safetensors checkpoint ({error})") from None
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but carries no few-shot checkpoint metadata")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON ({error})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {metadata.get('format')!r}")
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {metadata['format_version']} is newer than this code "
            f"understands ({FORMAT_VERSION}); update the tool"
        )
    return metadata


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Return ``(tensors, metadata)``. Half-precision tensors are widened to float32."""
    metadata = read_metadata(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: could not read checkpoint tensors ({error})") from None
    tensors = {k: (v.float() if v.dtype in (torch.float16, torch.bfloat16) else v) for k, v in tensors.items()}
    return tensors, metadata


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix.`` with the prefix removed."""
    cut = len(prefix) + 1
    return {name[cut:]: value for name, value in tensors.items() if name.startswith(prefix + ".")}
