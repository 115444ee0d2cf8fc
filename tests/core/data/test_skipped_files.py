"""Files that readers leave out for their extension are listed, never dropped without a word (CLI included)."""

from __future__ import annotations

import json
from pathlib import Path

from core.cli import main
from core.data import FolderImageSet, ImageSpec, load_episode_folder
from tests.app.builders import save_tiny_checkpoint, shape_image

SPEC = ImageSpec(channels=1, size=28, invert=True)


def _drawing(path: Path, shape: int, variant: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape_image(shape, variant).save(path)


def _episode(root: Path) -> Path:
    for c, name in enumerate(("circle", "square")):
        for i in range(2):
            _drawing(root / "support" / name / f"{i}.png", c, i)
        _drawing(root / "query" / name / "q.png", c, 4)
    (root / "support" / "circle" / "sketch.svg").write_text("<svg/>")
    (root / "query" / "square" / "notes.txt").write_text("not an image")
    (root / "support" / "circle" / ".DS_Store").write_bytes(b"\0")  # hidden files are never images: not listed
    return root


def test_episode_folder_lists_every_skipped_file(tmp_path: Path) -> None:
    episode = load_episode_folder(_episode(tmp_path / "episode"), SPEC)
    assert episode.provenance["skipped_files"] == ["query/square/notes.txt", "support/circle/sketch.svg"]
    assert episode.shots_per_class == [2, 2]


def test_folder_image_set_lists_skipped_files(tmp_path: Path) -> None:
    for c, name in enumerate(("a", "b")):
        _drawing(tmp_path / name / "0.png", c, 0)
    (tmp_path / "b" / "vector.svg").write_text("<svg/>")
    image_set = FolderImageSet(tmp_path, None, SPEC)
    assert image_set.skipped_files == [tmp_path / "b" / "vector.svg"]


def test_cli_adapt_names_skipped_files_on_stderr_and_in_json(tmp_path: Path, capsys) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    folder = _episode(tmp_path / "episode")
    assert main(["adapt", "--checkpoint", str(checkpoint), "--episode", str(folder), "--steps", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "skipped 2 file(s) that are not images by their extension: query/square/notes.txt, " \
           "support/circle/sketch.svg" in err
    assert json.loads(out)["skipped_files"] == ["query/square/notes.txt", "support/circle/sketch.svg"]
