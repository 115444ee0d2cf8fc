"""Folder-per-class sets, the miniImageNet CSV layout and user episode folders, on tiny fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from core.data import (
    EpisodeSampler,
    FolderImageSet,
    ImageError,
    ImageSpec,
    MiniImageNetCSVImageSet,
    load_episode_folder,
)
from tests.tolerances import gamma, unit_roundoff

SPEC = ImageSpec(channels=3, size=8)
# The mean of an 8 x 8 channel of one 8-bit level 100: 64 copies of 100 / 255 rounded to float32 (u32 each),
# summed in float32 in whatever order (gamma_63) and divided by 64 (exact).
FLAT_MEAN_ERROR = (gamma(63, torch.float32) + unit_roundoff(torch.float32)) * 100 / 255


def write_image(path: Path, colour: tuple[int, int, int], fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), colour).save(path, fmt)
    return path


# --- FolderImageSet -------------------------------------------------------------------------------------


def make_class_tree(base: Path, classes: dict[str, int]) -> None:
    for c, (class_name, count) in enumerate(classes.items()):
        for i in range(count):
            suffix = ".JPG" if i % 2 else ".png"  # mixed and upper-case extensions are accepted
            write_image(base / class_name / f"img{i}{suffix}", (50 * c, 0, 0))


def test_folder_set_with_split(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", {"zebra": 3, "ant": 2, "bee": 4})
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "train" / "ant" / ".hidden.png", (1, 1, 1))
    (tmp_path / "train" / ".cache").mkdir()

    image_set = FolderImageSet(tmp_path, split="train", spec=SPEC)
    assert image_set.name == f"{tmp_path.name}/train"
    assert image_set.class_names == ["ant", "bee", "zebra"]
    assert [image_set.num_items(c) for c in image_set.class_names] == [2, 4, 3]
    assert Path(image_set.source("ant", 1)).name == "img1.JPG"
    image = image_set.load("bee", 0)
    assert image.shape == (3, 8, 8)
    # Bee was written third, as red 100 in a lossless PNG; resizing a uniform image keeps level 100, so the
    # channel is 64 copies of 100 / 255 rounded to float32 (u32), averaged in float32 (gamma_63): the other
    # classes (0, 50) and a wrong scale (100 / 256) are far outside that.
    assert float(image[0].mean()) == pytest.approx(100 / 255, rel=0, abs=FLAT_MEAN_ERROR)
    episode = EpisodeSampler(image_set, n_way=2, k_shot=1, n_query=1).episode(0)
    assert episode.support_x.shape == (2, 3, 8, 8)


def test_folder_set_without_split_and_custom_name(tmp_path: Path) -> None:
    make_class_tree(tmp_path, {"a": 1, "b": 1})
    image_set = FolderImageSet(tmp_path, split=None, spec=SPEC, name="cub")
    assert (image_set.name, image_set.class_names) == ("cub", ["a", "b"])


def test_folder_set_errors(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", {"full": 2})
    (tmp_path / "train" / "empty_class").mkdir()
    (tmp_path / "train" / "only_text").mkdir()
    (tmp_path / "train" / "only_text" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"empty_class.*only_text"):
        FolderImageSet(tmp_path, split="train", spec=SPEC)
    with pytest.raises(FileNotFoundError, match="val"):
        FolderImageSet(tmp_path, split="val", spec=SPEC)
    (tmp_path / "bare").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        FolderImageSet(tmp_path, split="bare", spec=SPEC)


# --- MiniImageNetCSVImageSet ----------------------------------------------------------------------------


def make_mini_imagenet(root: Path) -> None:
    rows = ["filename,label"]
    for c, label in enumerate(["n02", "n01"]):
        for i in range(3):
            filename = f"{label}{i:08d}.jpg"
            write_image(root / "images" / filename, (0, 100 * c, 0), "JPEG")
            rows.append(f"{filename},{label}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")


def test_mini_imagenet_csv(tmp_path: Path) -> None:
    make_mini_imagenet(tmp_path)
    image_set = MiniImageNetCSVImageSet(tmp_path, split="train", spec=SPEC)
    assert image_set.class_names == ["n01", "n02"]
    assert image_set.num_items("n01") == 3
    assert Path(image_set.source("n01", 2)).name == "n0100000002.jpg"
    # n01 was written with green 100; ImageNet-style defaults would normalise, SPEC does not. JPEG is lossy,
    # but not for this flat colour: (0, 100, 0) is YCbCr (59, 95, 86), whose DC terms, quantised in steps of
    # 8 and 9 (PIL's quality 75) and transformed back, give (59, 95, 86) and green 100 again, every rounding
    # at least 0.12 of a level from a tie. libjpeg's integer arithmetic (bit-exact in its SIMD paths) thus
    # gives level 100 on any CPU; what is left is the float32 mean of the PNG case above.
    assert float(image_set.load("n01", 0)[1].mean()) == pytest.approx(100 / 255, rel=0, abs=FLAT_MEAN_ERROR)


def test_mini_imagenet_csv_errors(tmp_path: Path) -> None:
    make_mini_imagenet(tmp_path)
    with pytest.raises(FileNotFoundError, match="test.csv"):
        MiniImageNetCSVImageSet(tmp_path, split="test", spec=SPEC)
    (tmp_path / "images" / "n0100000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="n0100000001.jpg"):
        MiniImageNetCSVImageSet(tmp_path, split="train", spec=SPEC)
    (tmp_path / "val.csv").write_text("file,class\na.jpg,n01\n")
    with pytest.raises(ValueError, match="filename,label"):
        MiniImageNetCSVImageSet(tmp_path, split="val", spec=SPEC)


# --- load_episode_folder --------------------------------------------------------------------------------


def make_episode(root: Path, labelled: bool) -> None:
    colours = {"cat": (255, 0, 0), "dog": (0, 0, 255), "ant": (0, 255, 0)}
    for label, colour in colours.items():
        for i in range(2):
            write_image(root / "support" / label / f"s{i}.png", colour)
    if labelled:
        write_image(root / "query" / "dog" / "q0.jpg", colours["dog"], "JPEG")
        write_image(root / "query" / "cat" / "q1.png", colours["cat"])
        write_image(root / "query" / "cat" / "q2.png", colours["cat"])
    else:
        write_image(root / "query" / "mystery1.png", colours["dog"])
        write_image(root / "query" / "mystery2.webp", colours["ant"], "WEBP")


def test_labelled_episode_folder(tmp_path: Path) -> None:
    make_episode(tmp_path, labelled=True)
    episode = load_episode_folder(tmp_path, SPEC)
    assert episode.class_names == ["ant", "cat", "dog"]
    assert episode.support_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert episode.support_x.shape == (6, 3, 8, 8)
    assert episode.query_y.tolist() == [1, 1, 2]  # cat/q1, cat/q2, dog/q0
    assert [Path(s).name for s in episode.query_sources] == ["q1.png", "q2.png", "q0.jpg"]
    assert episode.support_sources[0] == str(tmp_path / "support" / "ant" / "s0.png")
    assert episode.provenance == {"source": "folder", "path": str(tmp_path), "skipped_files": []}
    # Images match their labels: cats are red, dogs blue.
    assert float(episode.query_x[0, 0].mean()) > 0.9
    assert float(episode.query_x[2, 2].mean()) > 0.9


def test_unlabelled_episode_folder(tmp_path: Path) -> None:
    make_episode(tmp_path, labelled=False)
    episode = load_episode_folder(tmp_path, SPEC)
    assert episode.query_y is None and not episode.is_labelled
    assert episode.query_x.shape == (2, 3, 8, 8)
    assert [Path(s).name for s in episode.query_sources] == ["mystery1.png", "mystery2.webp"]


def test_episode_folder_structural_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no support/ folder"):
        load_episode_folder(_fresh(tmp_path, "a"), SPEC)

    one_class = _fresh(tmp_path, "b")
    write_image(one_class / "support" / "cat" / "s.png", (0, 0, 0))
    write_image(one_class / "query" / "q.png", (0, 0, 0))
    with pytest.raises(ValueError, match="at least 2 label folders"):
        load_episode_folder(one_class, SPEC)

    empty_class = _fresh(tmp_path, "c")
    make_episode(empty_class, labelled=False)
    (empty_class / "support" / "emu").mkdir()
    with pytest.raises(ValueError, match="emu"):
        load_episode_folder(empty_class, SPEC)

    no_query = _fresh(tmp_path, "d")
    make_episode(no_query, labelled=False)
    for file in (no_query / "query").iterdir():
        file.unlink()
    with pytest.raises(ValueError, match="no query images"):
        load_episode_folder(no_query, SPEC)

    unknown_label = _fresh(tmp_path, "e")
    make_episode(unknown_label, labelled=True)
    write_image(unknown_label / "query" / "wolf" / "q.png", (0, 0, 0))
    with pytest.raises(ValueError, match="wolf.*not among the support labels"):
        load_episode_folder(unknown_label, SPEC)


def test_episode_folder_reports_every_unreadable_image(tmp_path: Path) -> None:
    make_episode(tmp_path, labelled=True)
    (tmp_path / "support" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "query" / "dog" / "also_broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageError) as error:
        load_episode_folder(tmp_path, SPEC)
    message = str(error.value)
    assert "2 image(s)" in message and "broken.png" in message and "also_broken.jpg" in message


def _fresh(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_episode_tensors_are_batched_float(tmp_path: Path) -> None:
    make_episode(tmp_path, labelled=True)
    episode = load_episode_folder(tmp_path, ImageSpec(1, 5))
    assert episode.support_x.dtype == torch.float32
    assert episode.support_x.shape == (6, 1, 5, 5)
    assert episode.support_y.dtype == torch.int64
