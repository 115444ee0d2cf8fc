"""Turning image files and uploads into normalised tensors, robustly.

Everything that reaches a model goes through :func:`decode_image`, so datasets, episode folders and web
uploads all get the same preprocessing: EXIF orientation applied, any PIL mode mapped to 8-bit L or RGB
(transparency composited on white), a square antialiased resize, optional inversion, then normalisation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_IMAGE_PIXELS",
    "MINIIMAGENET_SPEC",
    "OMNIGLOT_SPEC",
    "ImageError",
    "ImageSpec",
    "decode_image",
    "display_png",
    "model_input_png",
    "preview_png",
    "shown_image",
]

# Largest image (width * height) we agree to decode. Read at call time so tests and callers can lower it.
MAX_IMAGE_PIXELS = 64_000_000

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# 16-bit samples map onto 8 bits by 65535 -> 255, i.e. division by 257 (not a shift, which would darken).
_UINT16_TO_UINT8 = 257.0


@dataclass(frozen=True)
class ImageSpec:
    """How images are turned into model input.

    ``channels`` is 1 (grayscale) or 3 (RGB); images are resized to ``size`` x ``size`` (aspect ratio is not
    kept, matching the usual miniImageNet/Omniglot preprocessing). ``invert`` maps x -> 1 - x before
    normalisation (Omniglot: dark strokes on white become 1.0 on 0.0). ``mean``/``std`` have one entry, or
    one per channel, and are applied as ``(x - mean) / std`` to values in [0, 1].
    """

    channels: int
    size: int
    invert: bool = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"ImageSpec.channels must be 1 or 3, got {self.channels}")
        if self.size < 1:
            raise ValueError(f"ImageSpec.size must be a positive number of pixels, got {self.size}")
        # Frozen dataclass: normalise lists (e.g. from JSON) to tuples so specs compare and hash by value.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        for label, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise ValueError(
                    f"ImageSpec.{label} needs 1 or {self.channels} values for {self.channels} channel(s), "
                    f"got {len(values)}"
                )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"ImageSpec.std values must be positive, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, stored in checkpoint metadata."""
        return {
            "channels": self.channels,
            "size": self.size,
            "invert": self.invert,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageSpec:
        """Inverse of :meth:`to_dict`; missing optional keys take their defaults."""
        try:
            return cls(
                channels=int(data["channels"]),
                size=int(data["size"]),
                invert=bool(data.get("invert", False)),
                mean=tuple(data.get("mean", (0.0,))),
                std=tuple(data.get("std", (1.0,))),
            )
        except KeyError as missing:
            raise ValueError(f"image spec is missing the key {missing}: {data!r}") from None


OMNIGLOT_SPEC = ImageSpec(channels=1, size=28, invert=True)
MINIIMAGENET_SPEC = ImageSpec(channels=3, size=84, mean=IMAGENET_MEAN, std=IMAGENET_STD)


class ImageError(ValueError):
    """An image that cannot be used; the message names the file (or upload) and what is wrong with it."""


def decode_image(data: bytes | str | Path, spec: ImageSpec, name: str | None = None) -> torch.Tensor:
    """Decode an image file or its bytes into a float32 tensor ``[spec.channels, spec.size, spec.size]``.

    ``name`` is what error messages call the image; it defaults to the path, or ``"uploaded image"`` for
    bytes. Raises :class:`ImageError` for missing, empty, non-image, truncated/corrupt or oversized input.
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        label = name or str(path)
        if not path.is_file():
            raise ImageError(f"{label}: file does not exist")
        if path.stat().st_size == 0:
            raise ImageError(f"{label}: file is empty")
        with open(path, "rb") as handle:
            return _decode_stream(handle, spec, label)
    if isinstance(data, (bytes, bytearray, memoryview)):
        label = name or "uploaded image"
        if len(data) == 0:
            raise ImageError(f"{label}: no data (empty file)")
        return _decode_stream(io.BytesIO(bytes(data)), spec, label)
    raise TypeError(f"decode_image expects bytes or a path, got {type(data).__name__}")


def _open_upright(stream: io.IOBase, label: str, draft_size: int | None = None) -> Image.Image:
    """Open, check and fully decode an image, turned upright by its EXIF orientation (any PIL mode).

    ``draft_size`` lets libjpeg decode a JPEG at a reduced scale that is still at least that size.
    """
    try:
        image = Image.open(stream)
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image, or an image format that cannot be read") from None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{label}: image is too large to decode safely ({error})") from None
    except Exception as error:  # noqa: BLE001 - any header parse failure means the file is unusable
        raise ImageError(f"{label}: could not read the image header ({error})") from None

    width, height = image.size
    # Checked against our own limit before decoding pixels, so a tiny file declaring a huge canvas
    # (a decompression bomb) costs nothing. PIL's own check in Image.open only guards far larger sizes.
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise ImageError(
            f"{label}: image is too large ({width}x{height} = {width * height:,} pixels; "
            f"the limit is {MAX_IMAGE_PIXELS:,})"
        )
    if width < 1 or height < 1:
        image.close()
        raise ImageError(f"{label}: image has no pixels ({width}x{height})")
    if image.format == "JPEG" and draft_size is not None:
        image.draft(None, (draft_size, draft_size))
    try:
        # Force the full decode now: Image.open is lazy, and truncation only shows up here.
        image.load()
    except Exception as error:  # noqa: BLE001 - decoders raise OSError, SyntaxError, zlib.error, ...
        image.close()
        raise ImageError(f"{label}: image data is truncated or corrupt ({error})") from None
    return _upright(image)


def _decode_stream(stream: io.IOBase, spec: ImageSpec, label: str) -> torch.Tensor:
    with _open_upright(stream, label, draft_size=spec.size) as image:
        image = _to_8bit(image, spec.channels, label)
        # Bilinear with PIL's built-in antialiasing, as torchvision's Resize does (e.g. Omniglot 105 -> 28).
        image = image.resize((spec.size, spec.size), Image.Resampling.BILINEAR)

    tensor = _pil_to_tensor(image).to(torch.float32).div_(255.0)
    if spec.invert:
        tensor = 1.0 - tensor
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    return tensor.sub_(mean).div_(std)


# torchvision's pil_to_tensor / to_pil_image, written out: importing torchvision.transforms costs about 2.8 s
# on a 2-core machine, more than everything else a first dashboard page needs besides torch.
def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An 8-bit ``L`` or ``RGB`` image as a ``[C, H, W]`` uint8 tensor."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    return pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1).contiguous()


def _tensor_to_pil(pixels: torch.Tensor) -> Image.Image:
    """A ``[C, H, W]`` uint8 tensor (C = 1 or 3) as an ``L`` or ``RGB`` image."""
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0], mode="L") if array.shape[2] == 1 else Image.fromarray(array, mode="RGB")


# Modes whose pixels carry no colour: shown in grey, whatever the model's channel count.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


def display_png(data: bytes, max_side: int = 128, name: str | None = None) -> bytes:
    """A small 8-bit PNG of an image file for showing in a page, from any mode :func:`decode_image` accepts.

    Browsers (and ``st.image``'s JPEG re-encoding) cannot show 16-bit, 32-bit integer or float images, CMYK or
    palette transparency; this applies the same mode mapping as the model input (16-bit scaled to 8-bit,
    transparency composited on white, EXIF orientation applied) but keeps colour, and shrinks the image so that
    its longer side is at most ``max_side`` pixels. Raises :class:`ImageError` like :func:`decode_image`.
    """
    label = name or "uploaded image"
    if not data:
        raise ImageError(f"{label}: no data (empty file)")
    with _open_upright(io.BytesIO(bytes(data)), label, draft_size=max_side) as image:
        grey = image.mode in _GREY_MODES or image.mode.startswith("I;16")
        shown = _to_8bit(image, 1 if grey else 3, label)
        shown.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    shown.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


# What every browser shows as it is (and st.image passes through without re-encoding trouble).
_BROWSER_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP"})
_BROWSER_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})


def preview_png(data: bytes, max_side: int = 128, name: str | None = None) -> bytes | None:
    """The display copy to store beside an image: ``None`` when the file itself is small and browser-ready
    (8-bit PNG/JPEG/GIF/WebP, upright, at most ``max_side`` pixels), else :func:`display_png`."""
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            orientation = image.getexif().get(0x0112, 1)
            ready = (
                image.format in _BROWSER_FORMATS
                and image.mode in _BROWSER_MODES
                and max(image.size) <= max_side
                and orientation in (None, 1)
            )
    except Exception:  # noqa: BLE001 - unreadable here means display_png gives the precise ImageError
        ready = False
    return None if ready else display_png(data, max_side=max_side, name=name)


def shown_image(data: bytes, preview: bytes | None) -> bytes:
    """The bytes to put in a page for a stored image: its stored display copy, else the file itself when a
    browser can show it, else a display copy made now (images stored before display copies existed)."""
    if preview is not None:
        return preview
    return preview_png(data) or data


def model_input_png(data: bytes, spec: ImageSpec, name: str | None = None) -> bytes:
    """The image exactly as the model receives it (size, grey or colour, inversion), as an 8-bit PNG.

    :func:`decode_image`'s tensor with the normalisation undone (``x * std + mean``), so a user sees what the
    checkpoint sees: for Omniglot checkpoints a 28x28 picture with light strokes on black.
    """
    tensor = decode_image(data, spec, name=name)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    pixels = (tensor * std + mean).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    image = _tensor_to_pil(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a malformed EXIF block is not a broken image; keep the stored orientation
        return image


def _to_8bit(image: Image.Image, channels: int, label: str) -> Image.Image:
    """Map any PIL mode to 8-bit ``L`` (channels=1) or ``RGB`` (channels=3)."""
    target = "L" if channels == 1 else "RGB"
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # PIL's own I;16 -> L conversion clips at 255 instead of scaling, turning most 16-bit images white.
        # "I" (32-bit) is how PIL reads many 16-bit TIFFs, so it is treated as 16-bit too.
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip(values, 0.0, 65535.0) / _UINT16_TO_UINT8
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    elif mode == "F":
        # Float images come either in [0, 1] or in [0, 255]; the value range tells which.
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        image = Image.fromarray(np.round(np.clip(values, 0.0, 255.0)).astype(np.uint8), mode="L")
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent regions are shown on white by browsers and viewers; black would invent dark blobs.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != target:
        try:
            image = image.convert(target)
        except Exception as error:  # noqa: BLE001 - exotic modes (e.g. LAB) PIL cannot map to L/RGB
            raise ImageError(f"{label}: unsupported colour mode {mode!r} ({error})") from None
    return image
