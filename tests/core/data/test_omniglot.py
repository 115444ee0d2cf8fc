"""Omniglot on the real (shared, read-in-place) data, plus layout handling on tiny fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from core import settings
from core.data import EpisodeSampler, OmniglotImageSet, ensure_omniglot, list_alphabets


@pytest.fixture(scope="module")
def omniglot_root() -> Path:
    root = settings.omniglot_root()
    try:
        return ensure_omniglot(root, download=False)
    except FileNotFoundError:
        pytest.skip(f"Omniglot data not available at {root} (set FEWSHOT_OMNIGLOT_ROOT)")


def test_alphabets_found_and_deduplicated(omniglot_root: Path) -> None:
    alphabets = list_alphabets(omniglot_root)
    assert len(alphabets) == 8
    assert sum(alphabets.values()) == 242
    assert alphabets["Greek"] == 24  # present in both small splits, counted once
    image_set = OmniglotImageSet(omniglot_root)
    assert len(image_set.class_names) == 242
    assert len(set(image_set.class_names)) == 242
    assert image_set.num_items("Greek/character01") == 20


def test_rotations_multiply_classes(omniglot_root: Path) -> None:
    plain = OmniglotImageSet(omniglot_root, alphabets=["Greek"])
    rotated = OmniglotImageSet(omniglot_root, alphabets=["Greek"], rotations=(0, 90, 180, 270))
    assert len(rotated.class_names) == 4 * len(plain.class_names) == 96
    assert {"Greek/character01", "Greek/character01@rot90", "Greek/character01@rot270"} <= set(rotated.class_names)
    upright = rotated.load("Greek/character01", 0)
    turned = rotated.load("Greek/character01@rot90", 0)
    assert torch.equal(turned, torch.rot90(upright, 1, dims=(1, 2)))
    assert not torch.equal(turned, upright)
    assert rotated.source("Greek/character01@rot90", 0).endswith(".png@rot90")


def test_decoded_drawing_is_bright_strokes_on_dark(omniglot_root: Path) -> None:
    image_set = OmniglotImageSet(omniglot_root, alphabets=["Latin"])
    image = image_set.load("Latin/character01", 3)
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert float(image.max()) > 0.9  # strokes
    assert float(image.mean()) < 0.25  # mostly background
    assert Path(image_set.source("Latin/character01", 3)).is_file()


def test_filters_and_sampling(omniglot_root: Path) -> None:
    image_set = OmniglotImageSet(omniglot_root, splits=["images_background_small2"], alphabets=["Tagalog"])
    assert len(image_set.class_names) == 17
    assert all(name.startswith("Tagalog/") for name in image_set.class_names)
    episode = EpisodeSampler(image_set, n_way=5, k_shot=1, n_query=5, seed=0).episode(0)
    assert episode.support_x.shape == (5, 1, 28, 28)
    assert episode.query_x.shape == (25, 1, 28, 28)
    with pytest.raises(ValueError, match="Klingon.*available"):
        OmniglotImageSet(omniglot_root, alphabets=["Klingon"])
    with pytest.raises(ValueError, match="images_evaluation"):
        OmniglotImageSet(omniglot_root, splits=["images_evaluation"])
    with pytest.raises(ValueError, match="rotations"):
        OmniglotImageSet(omniglot_root, rotations=(45,))


def test_ensure_omniglot_returns_existing_data(omniglot_root: Path) -> None:
    assert ensure_omniglot(omniglot_root, download=False) == omniglot_root


def test_ensure_omniglot_without_data_explains_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        ensure_omniglot(tmp_path, download=False)
    message = str(error.value)
    assert f"{tmp_path}/images_background/<Alphabet>/" in message
    assert "FEWSHOT_OMNIGLOT_ROOT" in message and "torchvision" in message
    with pytest.raises(FileNotFoundError, match="images_background"):
        OmniglotImageSet(tmp_path)


def test_ensure_omniglot_download_failure_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "Omniglot", offline)
    with pytest.raises(FileNotFoundError, match="images_background.*network is unreachable"):
        ensure_omniglot(tmp_path, download=True)


def _draw(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (105, 105), 1).save(path)


def test_torchvision_layout_and_split_precedence(tmp_path: Path) -> None:
    base = tmp_path / "omniglot-py"
    for split, alphabet, characters in [
        ("images_background", "Alpha", 2),
        ("images_evaluation", "Beta", 1),
        ("images_background_small1", "Alpha", 2),  # duplicates of images_background: dropped
    ]:
        for c in range(1, characters + 1):
            for drawing in range(2):
                _draw(base / split / alphabet / f"character{c:02d}" / f"{c:02d}_{drawing}.png")
    (base / "images_background" / "Alpha" / ".DS_Store").mkdir()  # hidden folders are not characters
    assert ensure_omniglot(tmp_path, download=False) == base
    assert list_alphabets(tmp_path) == {"Alpha": 2, "Beta": 1}
    image_set = OmniglotImageSet(tmp_path)
    assert image_set.class_names == ["Alpha/character01", "Alpha/character02", "Beta/character01"]
    assert "/images_background/" in image_set.source("Alpha/character01", 0)


def test_default_root_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEWSHOT_OMNIGLOT_ROOT", str(tmp_path))
    assert settings.omniglot_root() == tmp_path
    monkeypatch.delenv("FEWSHOT_OMNIGLOT_ROOT")
    assert settings.omniglot_root().name == "omniglot"
