"""Which checkpoints there are: discovery in the search folders, the manifest of shipped files, the default.

Checkpoints are looked for in ``core.settings.checkpoint_search_dirs()`` (``assets/checkpoints`` and ``runs/``
unless the settings say otherwise). A folder may hold a ``MANIFEST.json`` listing its files with their sha256 and
size and naming the default checkpoint (the one the dashboard offers first and the CLI uses without
``--checkpoint``). A listed file whose bytes no longer match is refused everywhere: a truncated download or an
edited file would otherwise adapt with silently wrong weights.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from core import settings
from core.checkpoint.format import NOT_DEPLOYABLE, CheckpointError, file_sha256, read_header
from core.checkpoint.metadata import CheckpointMetadata, parse_metadata

__all__ = [
    "MANIFEST_NAME",
    "CheckpointEntry",
    "Manifest",
    "ManifestEntry",
    "default_checkpoint",
    "find_checkpoints",
    "is_default_checkpoint",
    "read_manifest",
    "read_metadata",
    "search_dirs",
    "verify_shipped",
    "write_manifest",
]

MANIFEST_NAME = "MANIFEST.json"


# ----- one file --------------------------------------------------------------------------------------------------
def read_metadata(path: str | Path) -> CheckpointMetadata:
    """The typed metadata of a deployable checkpoint file (the header only: cheap)."""
    path = Path(path)
    header = read_header(path)
    kind = header.get("kind")
    if kind in NOT_DEPLOYABLE:
        raise CheckpointError(f"{path} is a {kind} file written by training, not a checkpoint to adapt with")
    return parse_metadata(header, str(path), path.stem)


# ----- the manifest ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestEntry:
    sha256: str
    bytes: int
    title: str
    backbone: str
    rule: str


@dataclass
class Manifest:
    """A folder's ``MANIFEST.json``: its shipped files by name, and the default one (a name in the same folder)."""

    default: str | None = None
    checkpoints: dict[str, ManifestEntry] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"default": self.default,
                "checkpoints": {name: vars(entry).copy() for name, entry in self.checkpoints.items()}}


def read_manifest(folder: str | Path) -> Manifest:
    """The folder's manifest; an empty one when it has none. ``CheckpointError`` for an unreadable file."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return Manifest()
    try:
        data = json.loads(path.read_text())
        entries = {
            str(name): ManifestEntry(sha256=str(entry["sha256"]), bytes=int(entry["bytes"]), title=str(entry["title"]),
                                     backbone=str(entry["backbone"]), rule=str(entry["rule"]))
            for name, entry in data.get("checkpoints", {}).items()
        }
        default = data.get("default")  # both keys may be left out of a hand-written manifest
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path} cannot be read: {error!r}") from None
    if default is not None and not isinstance(default, str):
        raise CheckpointError(f"{path}: 'default' must be a file name or null, found {default!r}")
    return Manifest(default=default, checkpoints=entries)


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    """Replace the folder's manifest atomically."""
    path = Path(folder) / MANIFEST_NAME
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-")
    # mkstemp makes the file 0600; the manifest is read by everyone who reads the checkpoints (a container's user).
    os.chmod(tmp, 0o644)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest.to_dict(), handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=64)
def _hash(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def verify_shipped(path: str | Path) -> None:
    """Raise ``CheckpointError`` if ``path`` is listed in its folder's manifest with other contents.

    Files not listed (trained ones, or a folder without a manifest) are not checked here. Hashes are cached
    by path, modification time and size, so pages that list checkpoints on every rerun stay fast.
    """
    path = Path(path)
    entry = read_manifest(path.parent).checkpoints.get(path.name)
    if entry is None:
        return
    stat = path.stat()
    actual = _hash(str(path), stat.st_mtime_ns, stat.st_size)
    if actual != entry.sha256:
        raise CheckpointError(
            f"{path} does not match the hash recorded in {MANIFEST_NAME} (expected {entry.sha256[:12]}…, "
            f"found {actual[:12]}…): the file is damaged or was changed. Restore it with `git checkout -- {path.name}`"
            " in its folder."
        )


def default_checkpoint(folder: str | Path) -> Path | None:
    """The default checkpoint the folder's manifest names (``None`` when it names none)."""
    name = read_manifest(folder).default
    return Path(folder) / name if name else None


def is_default_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is the default named in the ``MANIFEST.json`` beside it (``False`` without a readable one)."""
    path = Path(path)
    try:
        return read_manifest(path.parent).default == path.name
    except CheckpointError:
        return False


# ----- discovery -------------------------------------------------------------------------------------------------
def search_dirs() -> list[Path]:
    """Where checkpoints are looked for (``core.settings``; read anew on every call)."""
    return settings.checkpoint_search_dirs()


@dataclass
class CheckpointEntry:
    """A file found: its metadata, or why it cannot be used (then ``metadata`` is None)."""

    path: Path
    name: str
    metadata: CheckpointMetadata | None = None
    error: str | None = None
    is_default: bool = False  # the default named by the manifest beside it (``is_default_checkpoint``)


def find_checkpoints(dirs: list[Path] | None = None) -> list[CheckpointEntry]:
    """Every ``*.safetensors`` deployable checkpoint under the folders, with metadata or the error.

    Training-state and pre-training files are skipped. A folder's manifest default comes first, so the
    dashboard and CLI start from the shipped default; a shipped file whose hash does not match its manifest is
    listed with the error.
    """
    entries = []
    for folder in dirs or search_dirs():
        if not folder.is_dir():
            continue
        try:
            default = read_manifest(folder).default
        except CheckpointError:
            default = None
        paths = sorted(folder.rglob("*.safetensors"), key=lambda p: (p.name != default, str(p)))
        for path in paths:
            if path.name == "state.safetensors":
                continue
            is_default = is_default_checkpoint(path)
            try:
                header = read_header(path)
                if header.get("kind") in NOT_DEPLOYABLE:
                    continue
                metadata = parse_metadata(header, str(path), path.stem)
                verify_shipped(path)
            except CheckpointError as error:
                entries.append(CheckpointEntry(path, path.stem, error=str(error), is_default=is_default))
                continue
            entries.append(CheckpointEntry(path, metadata.name or path.stem, metadata, is_default=is_default))
    return entries
