"""The checkpoint file: tensors in safetensors, our JSON header in the safetensors metadata.

One file holds everything a checkpoint needs (so a user can upload or copy a single file), and reading it never
unpickles anything. Tensor names are prefixed by what they belong to: ``backbone.<name>`` for the network's
initial weights, ``rule.<name>`` for the inner-loop rule's meta-parameters, ``optim.<group>.<key>`` for an
optimizer's state in a resumable training file.

This module knows the container only: the header is a JSON object whose ``format`` / ``format_version`` say it
is ours; what the rest of it means is :mod:`core.checkpoint.metadata` (deployable checkpoints) and
:mod:`core.checkpoint.training_state` (files to resume training from).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "NOT_DEPLOYABLE",
    "PRETRAINED_BACKBONE",
    "PRETRAINING_STATE",
    "TRAINING_STATE",
    "CheckpointError",
    "file_sha256",
    "read_header",
    "read_tensors",
    "rewrite_header",
    "split_prefix",
    "write_file",
]

FORMAT = "fewshot-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "fewshot"

# What a file is, by its header's ``kind``. Deployable checkpoints (a learner to adapt with) carry no kind; the
# files training writes beside them do, so that nothing offers them for adaptation.
TRAINING_STATE = "training_state"  # everything to resume meta-training (core.train)
PRETRAINING_STATE = "pretraining_state"  # everything to resume pre-training (core.pretrain)
PRETRAINED_BACKBONE = "pretrained_backbone"  # the pre-trained feature weights a run starts from
NOT_DEPLOYABLE = (TRAINING_STATE, PRETRAINING_STATE, PRETRAINED_BACKBONE)


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of ours; the message names the file."""


def write_file(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    header: dict[str, Any],
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``tensors`` and the JSON ``header`` atomically (temporary file, then rename): a crash leaves the old
    file. ``dtype`` converts floating-point tensors (half precision for smaller shipped files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prepared = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        prepared[name] = tensor.contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(prepared, str(tmp), metadata={_META_KEY: _metadata_text(header)})
    os.replace(tmp, path)
    return path


def _metadata_text(header: dict[str, Any]) -> str:
    return json.dumps({**header, "format": FORMAT, "format_version": FORMAT_VERSION}, sort_keys=True)


def rewrite_header(path: str | Path, header: dict[str, Any]) -> Path:
    """Replace the JSON header of an existing file, keeping its tensor bytes exactly (atomically, as
    :func:`write_file`).

    A safetensors file is an 8-byte little-endian length, a JSON table of the tensors (dtype, shape, byte
    offsets into the data) with our header as a string under ``__metadata__``, then the tensor data. Only that
    string changes: the table is written back with the same offsets, padded with spaces to a multiple of 8 bytes
    as safetensors pads it (so the data stays aligned), and the data is copied as it is.
    """
    path = Path(path)
    read_header(path)  # refuses a file that is not a checkpoint of ours
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        table = json.loads(handle.read(length))
        data = handle.read()
    table["__metadata__"] = {**table.get("__metadata__", {}), _META_KEY: _metadata_text(header)}
    encoded = json.dumps(table, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        handle.write(data)
    os.replace(tmp, path)
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header only (cheap: the file's first bytes, not the tensors); ``CheckpointError`` for anything
    that is not a checkpoint of ours, or one written by a newer container version."""
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
        header = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"{path}: unknown checkpoint format {found!r}")
    version = header.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this code understands "
            f"({FORMAT_VERSION}); update the tool"
        )
    return header


def read_tensors(path: str | Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of the file; half-precision tensors are widened to float32."""
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: could not read checkpoint tensors ({error})") from None
    return {k: (v.float() if v.dtype in (torch.float16, torch.bfloat16) else v) for k, v in tensors.items()}


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
