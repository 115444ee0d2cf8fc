"""decode_image: every PIL mode, EXIF orientation, broken and oversized input, normalisation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import images
from core.data.images import MINIIMAGENET_SPEC, OMNIGLOT_SPEC, ImageError, ImageSpec, decode_image
from tests.tolerances import unit_roundoff

RGB4 = ImageSpec(channels=3, size=4)
GRAY4 = ImageSpec(channels=1, size=4)

# Decoding is integer work (PIL) up to one float32 division k / 255, correctly rounded on every CPU, and
# torch.tensor(k / 255) rounds the double k / 255 to the same float32: the binary expansion of k / 255
# repeats k's 8 bits, so it never comes near a float32 tie. Equal 8-bit levels therefore compare exactly.
# Where PIL rounds to 8 bits, one level is 1 / 255; the float32 values on either side add at most a few
# u32 (values <= 1), and ONE_LEVEL_SLACK (4 eps32 = 8 u32) covers them.
ONE_LEVEL_SLACK = 8 * unit_roundoff(torch.float32)


def encode(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def noise_png(size: int = 64, seed: int = 0) -> bytes:
    # Noise does not compress, so cutting the file in half really removes pixel data.
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"))


# --- ImageSpec -----------------------------------------------------------------------------------------


def test_spec_round_trips_through_json() -> None:
    for spec in (OMNIGLOT_SPEC, MINIIMAGENET_SPEC, ImageSpec(3, 32, invert=True, mean=(0.5,), std=(0.25,))):
        assert ImageSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_presets() -> None:
    assert (OMNIGLOT_SPEC.channels, OMNIGLOT_SPEC.size, OMNIGLOT_SPEC.invert) == (1, 28, True)
    assert (MINIIMAGENET_SPEC.channels, MINIIMAGENET_SPEC.size) == (3, 84)
    assert MINIIMAGENET_SPEC.mean == (0.485, 0.456, 0.406)  # the same literals, copied: exact
    assert MINIIMAGENET_SPEC.std == (0.229, 0.224, 0.225)


@pytest.mark.parametrize(
    "kwargs",
    [{"channels": 2, "size": 4}, {"channels": 1, "size": 0}, {"channels": 3, "size": 4, "mean": (0.1, 0.2)},
     {"channels": 1, "size": 4, "std": (0.0,)}],
)
def test_spec_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ImageSpec(**kwargs)


# --- modes -----------------------------------------------------------------------------------------------


def test_output_shape_dtype_and_range() -> None:
    tensor = decode_image(noise_png(50), ImageSpec(3, 21))
    assert tensor.shape == (3, 21, 21)
    assert tensor.dtype == torch.float32
    assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0


def test_rgb_colours_survive() -> None:
    tensor = decode_image(encode(Image.new("RGB", (6, 6), (255, 0, 51))), RGB4)
    assert torch.equal(tensor[:, 0, 0], torch.tensor([1.0, 0.0, 0.2]))  # 255, 0, 51 over 255: exact


def test_rgba_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    image.putpixel((0, 0), (0, 0, 0, 255))  # one opaque black pixel
    image.putpixel((1, 0), (0, 0, 0, 128))  # half-transparent black -> mid grey on white
    tensor = decode_image(encode(image), RGB4)
    assert torch.equal(tensor[:, 3, 3], torch.ones(3))
    assert torch.equal(tensor[:, 0, 0], torch.zeros(3))
    # 255 (1 - 128/255) = 127 exactly; PIL composites in integers with rounded fixed-point divisions, so one
    # level either way is its rounding (the same on every CPU), not a different blend.
    assert torch.allclose(tensor[:, 0, 1], torch.full((3,), 127 / 255), rtol=0, atol=1 / 255 + ONE_LEVEL_SLACK)


def test_la_transparent_pixels_become_white_in_grayscale() -> None:
    image = Image.new("LA", (4, 4), (0, 0))
    tensor = decode_image(encode(image), GRAY4)
    assert tensor.shape == (1, 4, 4)
    assert torch.equal(tensor, torch.ones_like(tensor))


def test_palette_with_and_without_transparency() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # 0 = red, 1 = blue
    image.putpixel((0, 0), 1)
    opaque = decode_image(encode(image), RGB4)
    assert torch.equal(opaque[:, 1, 1], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(opaque[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))

    transparent_red = decode_image(encode(image, transparency=0), RGB4)
    assert torch.equal(transparent_red[:, 1, 1], torch.ones(3))
    assert torch.equal(transparent_red[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))


def test_cmyk_converts_to_rgb() -> None:
    tensor = decode_image(encode(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "TIFF"), RGB4)
    assert torch.equal(tensor[:, 2, 2], torch.tensor([1.0, 0.0, 0.0]))


@pytest.mark.parametrize("value, expected", [(0, 0), (32896, 128), (65535, 255), (257 * 40, 40)])
def test_16bit_grayscale_png_is_scaled_not_clipped(value: int, expected: int) -> None:
    data = encode(Image.new("I;16", (4, 4), value))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    tensor = decode_image(data, GRAY4)
    assert torch.equal(tensor, torch.full_like(tensor, expected / 255))  # the same 8-bit level: exact


def test_32bit_integer_tiff_is_read_as_16bit_range() -> None:
    data = encode(Image.new("I", (4, 4), 257 * 200), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    assert torch.equal(decode_image(data, GRAY4), torch.full((1, 4, 4), 200 / 255))


@pytest.mark.parametrize("value, expected", [(0.5, 0.5), (102.0, 0.4)])
def test_float_tiff_in_unit_or_byte_range(value: float, expected: float) -> None:
    tensor = decode_image(encode(Image.new("F", (4, 4), value), "TIFF"), GRAY4)
    # Rounding to the nearest 8-bit level moves a value by at most half a level (0.5 -> 128 / 255).
    assert torch.allclose(tensor, torch.full_like(tensor, expected), rtol=0, atol=0.5 / 255 + ONE_LEVEL_SLACK)


def test_one_bit_image() -> None:
    image = Image.new("1", (4, 4), 0)
    image.putpixel((3, 3), 1)
    tensor = decode_image(encode(image), GRAY4)
    assert float(tensor[0, 3, 3]) == 1.0
    assert float(tensor[0, 0, 0]) == 0.0


def test_grayscale_becomes_three_equal_channels_and_rgb_becomes_gray() -> None:
    gray = decode_image(encode(Image.new("L", (4, 4), 51)), RGB4)
    assert gray.shape == (3, 4, 4)
    assert torch.equal(gray, torch.full_like(gray, 0.2))  # 51 / 255
    red_as_gray = decode_image(encode(Image.new("RGB", (4, 4), (255, 0, 0))), GRAY4)
    assert red_as_gray.shape == (1, 4, 4)
    # ITU-R 601 luma: 0.299 * 255 = 76.2, which PIL's rounded fixed-point conversion makes level 76.
    assert torch.equal(red_as_gray, torch.full_like(red_as_gray, 76 / 255))


def test_invert_and_normalisation() -> None:
    data = encode(Image.new("L", (4, 4), 255))
    assert torch.equal(decode_image(data, ImageSpec(1, 4, invert=True)), torch.zeros(1, 4, 4))
    spec = ImageSpec(3, 4, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    tensor = decode_image(data, spec)  # white = 1.0 everywhere before normalising
    # (1 - 0.5) / 0.5, (1 - 0.25) / 0.25, (1 - 0) / 2: powers of two and small integers, exact in float32.
    assert torch.equal(tensor[:, 0, 0], torch.tensor([1.0, 3.0, 0.5]))


def test_omniglot_sized_resize_is_antialiased() -> None:
    # A one-pixel grid at 105 px should average out to grey at 28 px, not alias into stripes or blocks.
    grid = np.zeros((105, 105), dtype=np.uint8)
    grid[::2, :] = 255
    tensor = decode_image(encode(Image.fromarray(grid, "L")), ImageSpec(1, 28))
    assert tensor.shape == (1, 28, 28)
    assert float(tensor.std()) < 0.1
    assert 0.4 < float(tensor.mean()) < 0.6


def test_exif_orientation_is_applied() -> None:
    # Stored 40 wide x 20 high with a red block top-left; orientation 6 means "rotate 90 degrees clockwise
    # to display", which puts the block in the top-right of a 20 x 40 portrait image.
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    tensor = decode_image(data, ImageSpec(3, 20))  # portrait 20x40 squashed to 20x20: block at y<5, x>=10
    red, blue = tensor[0], tensor[2]
    assert float(red[0:4, 11:19].mean()) > 0.8 and float(blue[0:4, 11:19].mean()) < 0.2
    assert float(red[0:4, 1:9].mean()) < 0.2  # top-left is blue, i.e. the stored orientation was not kept
    assert float(red[8:, :].mean()) < 0.2


# --- broken input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_names_the_file(tmp_path: Path, suffix: str) -> None:
    if suffix == ".png":
        data = noise_png()
    else:
        pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        data = encode(Image.fromarray(pixels, "RGB"), "JPEG", quality=95)
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"broken\.(png|jpg).*(truncated|corrupt)"):
        decode_image(path, RGB4)


def test_truncated_upload_names_the_upload() -> None:
    data = noise_png()
    with pytest.raises(ImageError, match="cat_photo.png"):
        decode_image(data[: len(data) // 2], RGB4, name="cat_photo.png")


def test_random_bytes_are_not_an_image() -> None:
    junk = np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError, match="notes.txt.*not an image"):
        decode_image(junk, RGB4, name="notes.txt")


def test_empty_bytes_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"", RGB4, name="empty.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageError, match="zero.png.*empty"):
        decode_image(tmp_path / "zero.png", RGB4)
    with pytest.raises(ImageError, match="nowhere.png.*does not exist"):
        decode_image(tmp_path / "nowhere.png", RGB4)


def test_decompression_bomb_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 100)
    data = encode(Image.new("L", (20, 20), 0))
    with pytest.raises(ImageError, match="bomb.png.*too large.*400"):
        decode_image(data, GRAY4, name="bomb.png")
    decode_image(encode(Image.new("L", (10, 10), 0)), GRAY4)  # exactly at the limit is fine


def test_pil_decompression_bomb_error_is_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    # PIL's own guard in Image.open (twice its limit) must surface as ImageError too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(ImageError, match="huge.png.*too large"):
        decode_image(encode(Image.new("L", (20, 20), 0)), GRAY4, name="huge.png")
