"""Episodes from uploaded files: structure checks, bad files named, every image mode, and stored benchmark items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import images
from core.data.images import OMNIGLOT_SPEC, ImageError, ImageSpec, decode_image
from core.data.omniglot import OmniglotImageSet
from core.data.sampler import EpisodeSampler
from core.data.uploads import episode_from_uploads, items_from_benchmark, normalise_class_name
from core.settings import MAX_UPLOAD_MB, max_upload_bytes
from tests.app.builders import encode, noise_png, shape_image, shape_png, upload_classes, upload_queries
from tests.tolerances import unit_roundoff

SPEC = ImageSpec(channels=1, size=28, invert=True)
RGB = ImageSpec(channels=3, size=16)


def test_three_labelled_classes_make_an_episode_and_keep_the_original_bytes() -> None:
    classes = upload_classes(3, shots=2)
    episode, items = episode_from_uploads(classes, upload_queries(3), SPEC)
    assert episode.class_names == ["circle", "square", "cross"]
    assert episode.support_x.shape == (6, 1, 28, 28) and episode.query_x.shape == (3, 1, 28, 28)
    assert episode.support_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert episode.query_y.tolist() == [0, 1, 2]
    assert episode.support_sources[:2] == ["circle-0.png", "circle-1.png"]
    support = [i for i in items if i.role == "support"]
    query = [i for i in items if i.role == "query"]
    assert [i.position for i in support] == list(range(6)) and [i.position for i in query] == [0, 1, 2]
    assert [i.label for i in support] == [0, 0, 1, 1, 2, 2] and [i.label for i in query] == [0, 1, 2]
    assert support[0].image.data == classes[0][1][0][1]
    assert (support[0].image.mime, support[0].image.width, support[0].image.height) == ("image/png", 40, 40)
    assert torch.equal(episode.support_x[0], decode_image(classes[0][1][0][1], SPEC))


def test_query_labels_ignore_case_and_spaces_and_may_be_partial() -> None:
    classes = [("  Big   Cat ", [("a.png", shape_png(0, 0))]), ("dog", [("b.png", shape_png(1, 0))])]
    queries = [("q1.png", shape_png(0, 1), "big cat"), ("q2.png", shape_png(1, 1), None), ("q3.png", shape_png(1, 2), " DOG")]
    episode, items = episode_from_uploads(classes, queries, SPEC)
    assert episode.class_names == ["Big Cat", "dog"]
    assert episode.query_y is None  # not every query is labelled
    assert [i.label for i in items if i.role == "query"] == [0, None, 1]
    assert episode.provenance["labelled_queries"] == 2
    all_labelled, _ = episode_from_uploads(classes, [queries[0], queries[2]], SPEC)
    assert all_labelled.query_y.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("classes", "queries", "message"),
    [
        ([], upload_queries(1), "at least 2 classes"),
        (upload_classes(1), upload_queries(1), "at least 2 classes"),
        ([("cat", [("a.png", shape_png(0, 0))]), (" CAT ", [("b.png", shape_png(1, 0))])], upload_queries(1, False),
         "both called 'CAT'"),
        ([("cat", [("a.png", shape_png(0, 0))]), ("   ", [("b.png", shape_png(1, 0))])], upload_queries(1, False),
         "class 2 has no name"),
        ([("cat", [("a.png", shape_png(0, 0))]), ("dog", [])], upload_queries(1, False), "no support images: 'dog'"),
        (upload_classes(2), [], "no query images"),
        (upload_classes(2), [("q.png", shape_png(0, 0), "horse")], "q.png is labelled 'horse'.*not one of"),
    ],
)
def test_structural_problems_are_value_errors(classes, queries, message) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        episode_from_uploads(classes, queries, SPEC)
    assert not isinstance(raised.value, ImageError)


def _truncated_png() -> bytes:
    data = noise_png(64)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"just some notes, not a picture", "notes.txt: not an image"),
        (b"", "notes.txt: no data"),
        (_truncated_png(), "notes.txt: image data is truncated or corrupt"),
    ],
)
def test_a_bad_support_file_is_named(data: bytes, message: str) -> None:
    classes = upload_classes(2)
    classes[1] = (classes[1][0], [*classes[1][1], ("notes.txt", data)])
    with pytest.raises(ImageError, match=message):
        episode_from_uploads(classes, upload_queries(2), SPEC)


def test_a_bad_query_file_is_named_and_every_bad_file_is_listed() -> None:
    classes = upload_classes(2)
    classes[0] = (classes[0][0], [*classes[0][1], ("broken.png", _truncated_png())])
    queries = [*upload_queries(2), ("letter.pdf", b"%PDF-1.4 not an image", None)]
    with pytest.raises(ImageError, match=r"2 file\(s\) cannot be used: broken.png: .*; letter.pdf: not an image"):
        episode_from_uploads(classes, queries, SPEC)


def test_decompression_bomb_is_rejected_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    queries = [("bomb.png", encode(Image.new("L", (100, 100), 0)), None)]
    with pytest.raises(ImageError, match="bomb.png: image is too large"):
        episode_from_uploads([("a", [("a.png", shape_png(0, 0))]), ("b", [("b.png", shape_png(1, 0))])], queries, SPEC)


def test_oversized_files_are_rejected_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    big = noise_png(300)  # ~270 KB: noise does not compress
    classes = [("a", [("a.png", shape_png(0, 0))]), ("b", [("huge.png", big)])]
    with pytest.raises(ImageError, match=r"huge.png: file is too large \(0.3 MB; the limit is 0.1 MB\)"):
        episode_from_uploads(classes, upload_queries(1, False), SPEC, max_bytes=100 * 1024)
    monkeypatch.setenv(MAX_UPLOAD_MB.name, "0.1")
    assert max_upload_bytes() == int(0.1 * 1024 * 1024)
    with pytest.raises(ImageError, match="huge.png: file is too large"):
        episode_from_uploads(classes, upload_queries(1, False), SPEC)
    monkeypatch.setenv(MAX_UPLOAD_MB.name, "1")
    episode_from_uploads(classes, upload_queries(1, False), SPEC)


def _exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: upright it is 20 wide, 40 high
    return encode(image, "JPEG", exif=exif)


def _sixteen_bit_png() -> bytes:
    return encode(Image.fromarray(np.full((12, 10), 40000, dtype=np.uint16)))


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        (encode(shape_image(0, 0).convert("L")), "image/png", (40, 40)),
        (encode(Image.new("RGBA", (30, 20), (255, 0, 0, 0))), "image/png", (30, 20)),
        (encode(shape_image(1, 0).convert("P")), "image/png", (40, 40)),
        (encode(Image.new("CMYK", (16, 16), (0, 255, 0, 0)), "JPEG"), "image/jpeg", (16, 16)),
        (_sixteen_bit_png(), "image/png", (10, 12)),
        (_exif_rotated_jpeg(), "image/jpeg", (20, 40)),
        (encode(Image.new("RGB", (9, 9), (1, 2, 3)), "BMP"), "image/bmp", (9, 9)),
        (encode(Image.new("RGB", (9, 9), (1, 2, 3)), "WEBP"), "image/webp", (9, 9)),
    ],
    ids=["gray", "rgba", "palette", "cmyk", "16bit", "exif", "bmp", "webp"],
)
@pytest.mark.parametrize("spec", [SPEC, RGB], ids=["gray-model", "rgb-model"])
def test_every_image_mode_is_converted(data: bytes, mime: str, size: tuple[int, int], spec: ImageSpec) -> None:
    classes = [("odd", [("odd-file", data)]), ("plain", [("plain.png", shape_png(0, 0))])]
    episode, items = episode_from_uploads(classes, [("q.png", data, "odd")], spec)
    assert episode.support_x.shape == (2, spec.channels, spec.size, spec.size)
    assert torch.isfinite(episode.support_x).all()
    image = items[0].image
    assert (image.mime, (image.width, image.height), image.data) == (mime, size, data)


def test_normalised_names() -> None:
    assert normalise_class_name("  Big\tCAT  ") == normalise_class_name("big cat") == "big cat"


# --- benchmark items ------------------------------------------------------------------------------------


@pytest.fixture
def tiny_omniglot(tmp_path):
    """Two alphabets of two characters, three drawings each, in the official folder layout."""
    root = tmp_path / "omniglot"
    for a, alphabet in enumerate(("Alpha", "Beta")):
        for c in range(2):
            folder = root / "images_background" / alphabet / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for d in range(3):
                image = shape_image(2 * a + c, d, size=35).rotate(15 * c)
                image.save(folder / f"{a}{c}_{d:02d}.png")
    return root


def test_benchmark_items_carry_the_files_and_decode_to_the_episode(tiny_omniglot) -> None:
    image_set = OmniglotImageSet(tiny_omniglot, rotations=(0, 90, 180))
    sampler = EpisodeSampler(image_set, n_way=4, k_shot=1, n_query=2, seed=3)
    episode = sampler.episode(0)
    items = items_from_benchmark(episode)
    support = [i for i in items if i.role == "support"]
    query = [i for i in items if i.role == "query"]
    assert len(support) == 4 and len(query) == 8
    assert [i.label for i in support] == episode.support_y.tolist()
    assert [i.label for i in query] == episode.query_y.tolist()
    for item, tensor, source in zip(support + query, [*episode.support_x, *episode.query_x],
                                    episode.support_sources + episode.query_sources):
        assert item.image.mime == "image/png"
        assert item.image.source_name.count("/") == 2 and source.endswith(item.image.source_name)
        # The stored bytes reproduce what the model saw: exactly, or within one 8-bit grey level for rotated
        # classes (there the rotation happens before the resize instead of after it, and PIL rounds its two
        # resize passes to 8 bits in the other order). Each side is 1 - k / 255 after two float32 roundings
        # of values <= 1 and their difference one more: 5 u32 < 8 u32 on top of the level.
        tolerance = 1 / 255 + 8 * unit_roundoff(torch.float32) if "@rot" in source else 0.0
        assert torch.allclose(decode_image(item.image.data, OMNIGLOT_SPEC), tensor, rtol=0, atol=tolerance), source
        if "@rot" not in source:
            with open(source, "rb") as handle:
                assert handle.read() == item.image.data


def test_benchmark_items_need_the_source_files(tiny_omniglot) -> None:
    episode = EpisodeSampler(OmniglotImageSet(tiny_omniglot), 2, 1, 1, seed=0).episode(0)
    Path(episode.query_sources[0]).unlink()
    with pytest.raises(FileNotFoundError, match="does not exist any more"):
        items_from_benchmark(episode)
    episode.query_sources = []
    with pytest.raises(ValueError, match="source file of every image"):
        items_from_benchmark(episode)


def test_uploads_are_plain_data_that_know_nothing_of_the_run_store() -> None:
    """The run service (core.runs) turns these files into store records; the data layer never imports the store."""
    import subprocess
    import sys

    code = "import sys, core.data.uploads\nprint(sorted(m for m in sys.modules if m.startswith('core.store')))"
    root = Path(__file__).resolve().parents[3]
    completed = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"
