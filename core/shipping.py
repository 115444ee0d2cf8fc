"""Shipped checkpoints: measure a trained checkpoint on its held-out classes, write it under ``assets/checkpoints``
with the measurements in its metadata, and keep a manifest of file hashes that is checked on every load.

``MANIFEST.json`` lists each shipped file with its sha256 and size and names the default checkpoint of the
dashboard and the CLI. A shipped file whose bytes no longer match is refused (a truncated download or an edited
file would otherwise adapt with silently wrong weights).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint

MANIFEST_NAME = "MANIFEST.json"
# The held-out protocol of every shipped figure: 600 episodes, 15 queries per class, a fixed episode seed.
SETTINGS = ((5, 1), (5, 5), (20, 1))
N_QUERY = 15
EVAL_SEED = 12345


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return {"default": None, "checkpoints": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} cannot be read: {error}") from None
    manifest.setdefault("default", None)
    manifest.setdefault("checkpoints", {})
    return manifest


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / MANIFEST_NAME
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-")
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
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
    entry = read_manifest(path.parent)["checkpoints"].get(path.name)
    if entry is None:
        return
    stat = path.stat()
    actual = _hash(str(path), stat.st_mtime_ns, stat.st_size)
    if actual != entry["sha256"]:
        raise CheckpointError(
            f"{path} does not match the hash recorded in {MANIFEST_NAME} (expected {entry['sha256'][:12]}…, "
            f"found {actual[:12]}…): the file is damaged or was changed. Restore it with `git checkout -- {path.name}`"
            " in its folder."
        )


def default_checkpoint(folder: str | Path) -> Path | None:
    manifest = read_manifest(folder)
    name = manifest.get("default")
    return Path(folder) / name if name else None


def measure_heldout(
    path: str | Path,
    rules: list[str],
    episodes: int = 600,
    reuse: list[dict[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Accuracy of each rule on the checkpoint's held-out (test) classes in every setting of ``SETTINGS``.

    ``reuse`` rows (earlier measurements of the same file under the same protocol, e.g. from
    ``bench/paper_tables.py``) are taken instead of measuring again when rule, way, shot, head and episodes match.
    ``on_row`` gets every new measurement as soon as it is made (the CLI appends it to a cache, so an interrupted
    packaging run continues where it stopped).
    """
    from core.adapt import default_head_init
    from core.config import config_from_dict
    from core.data.factory import build_image_set
    from core.evaluate import evaluate_classification
    from core.model_io import load_learner

    _, metadata = load_checkpoint(path)
    test_set = build_image_set(config_from_dict(metadata["training"]["config"]), "test")
    steps = int(metadata["inner_steps"]["eval"])
    rows = []
    for rule in rules:
        learner, _ = load_learner(path, rule=rule)
        for way, shot in SETTINGS:
            head = default_head_init(learner, way)
            earlier = [r for r in reuse or [] if (r["rule"], r["way"], r["shot"], r["head_init"], r["episodes"])
                       == (rule, way, shot, head, episodes)]
            if earlier:
                row = {k: earlier[0][k] for k in ("accuracy", "ci95", "seconds")}
                row["reused_from"] = earlier[0].get("source", "earlier measurement")
            else:
                result = evaluate_classification(learner, test_set, way, shot, N_QUERY, episodes, steps,
                                                 seed=EVAL_SEED, head_init=head, progress=False)
                row = {"accuracy": result.mean, "ci95": result.ci95, "seconds": round(result.seconds, 1)}
            row = {"rule": rule, "way": way, "shot": shot, "head_init": head, "episodes": episodes,
                   "n_query": N_QUERY, "seed": EVAL_SEED, "steps": steps, **row}
            if on_row is not None and "reused_from" not in row:
                on_row(row)
            log(f"{Path(path).name}: {rule} {way}-way {shot}-shot ({head} head): "
                f"{100 * row['accuracy']:.2f} ± {100 * row['ci95']:.2f} %")
            rows.append(row)
    return rows


def package(
    source: str | Path,
    folder: str | Path,
    name: str,
    title: str,
    results: list[dict[str, Any]],
    half_precision: bool = False,
    default: bool = False,
    notes: str = "",
) -> Path:
    """Write ``<folder>/<name>.safetensors``: the source's tensors, its metadata plus the held-out results."""
    tensors, metadata = load_checkpoint(source)
    training = dict(metadata.get("training") or {})
    command = str(training.get("command") or "")
    program, _, arguments = command.partition(" ")
    if program.replace("\\", "/").endswith("core/__main__.py"):
        # Older runs recorded the absolute path of the entry point; ship what a user types in any checkout.
        training.update(command=f"python -m core {arguments}", command_as_recorded=command)
        metadata = {**metadata, "training": training}
    data = training.get("data") or {}
    metadata = {
        **metadata,
        "name": name,
        "shipped": {
            "title": title,
            "source_sha256": file_sha256(source),
            "half_precision": half_precision,
            "packaged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "notes": notes,
        },
        "heldout": {
            "classes": data.get("test"),
            "protocol": f"{results[0]['episodes'] if results else 0} episodes, {N_QUERY} queries per class, "
                        f"episode seed {EVAL_SEED}, mean and 95% CI (1.96 std / sqrt(n))",
            "results": results,
        },
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = save_checkpoint(folder / f"{name}.safetensors", tensors, metadata,
                          dtype=torch.float16 if half_precision else None)
    manifest = read_manifest(folder)
    manifest["checkpoints"][out.name] = {
        "sha256": file_sha256(out),
        "bytes": out.stat().st_size,
        "title": title,
        "backbone": metadata["backbone"]["name"],
        "rule": metadata["rule"]["name"],
    }
    if default:
        manifest["default"] = out.name
    write_manifest(folder, manifest)
    return out
