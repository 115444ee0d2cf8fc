"""display_png and model_input_png: every accepted image mode can be shown in a browser, and the model's view."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from core.data.images import ImageError, ImageSpec, decode_image, display_png, model_input_png
from tests.app.builders import every_mode_image_files
from tests.tolerances import gamma

SPEC = ImageSpec(channels=1, size=28, invert=True)
FILES = every_mode_image_files()


@pytest.mark.parametrize("name, data", FILES, ids=[name for name, _ in FILES])
def test_every_accepted_mode_becomes_an_8bit_png_a_browser_shows(name: str, data: bytes) -> None:
    decode_image(data, SPEC, name)  # the model accepts it...
    shown = display_png(data, max_side=24, name=name)  # ...so it must also display
    with Image.open(io.BytesIO(shown)) as image:
        assert image.format == "PNG" and image.mode in ("L", "RGB")
        assert max(image.size) <= 24
        # A browser can show it, and st.image can re-encode it as JPEG (the crash of a 16-bit PNG).
        image.convert("RGB").save(io.BytesIO(), format="JPEG")
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    # The dark cross on light paper survives every mode mapping (16-bit scaled, not clipped to white).
    assert pixels.min() < 100 and pixels.max() > 200


def test_16bit_values_are_scaled_for_display_not_clipped() -> None:
    data = dict(FILES)["grey16.png"]
    with Image.open(io.BytesIO(display_png(data))) as shown:
        grey = np.asarray(shown)
    with Image.open(io.BytesIO(dict(FILES)["grey.png"])) as reference:
        reference_grey = np.asarray(reference.resize(shown.size, Image.Resampling.LANCZOS))
    assert np.abs(grey.astype(int) - reference_grey.astype(int)).max() <= 1


def test_display_keeps_colour_and_shrinks_large_images() -> None:
    red = Image.new("RGB", (400, 200), (200, 10, 10))
    with Image.open(io.BytesIO(display_png(_png(red), max_side=100))) as shown:
        assert shown.size == (100, 50) and shown.mode == "RGB"
        assert shown.getpixel((50, 25)) == (200, 10, 10)


def test_display_rejects_what_decoding_rejects() -> None:
    with pytest.raises(ImageError, match="broken.png: not an image"):
        display_png(b"not an image at all", name="broken.png")
    with pytest.raises(ImageError, match="empty"):
        display_png(b"", name="empty.png")


def test_model_input_is_the_decoded_tensor_unnormalised() -> None:
    spec = ImageSpec(channels=3, size=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = _png(Image.fromarray(pixels, "RGB"))
    with Image.open(io.BytesIO(model_input_png(data, spec))) as seen:
        assert seen.size == (8, 8) and seen.mode == "RGB"
        seen_values = torch.from_numpy(np.asarray(seen, dtype=np.float32)).permute(2, 0, 1) / 255
    tensor = decode_image(data, spec)
    expected = tensor * torch.tensor(spec.std).view(3, 1, 1) + torch.tensor(spec.mean).view(3, 1, 1)
    # The decoded x = k / 255 becomes (x - m) / s and, here, back x' = ((x - m) / s) s + m: three roundings on
    # |x - m| <= 0.7 and one on |x'| <= 1 keep |x' - x| <= gamma_4 (float32), far below half a level, so the
    # PNG stores exactly the decoder's 8-bit levels k, which read back as the same k / 255.
    assert float((seen_values - expected).abs().max()) <= gamma(4, torch.float32)


def test_model_input_of_an_inverted_spec_shows_light_strokes_on_black() -> None:
    with Image.open(io.BytesIO(model_input_png(dict(FILES)["grey.png"], SPEC))) as seen:
        grey = np.asarray(seen)
    assert seen.size == (28, 28)
    assert grey[0, 0] == 0 and grey.max() > 200  # paper became black, ink became light


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
