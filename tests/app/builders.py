"""Small deterministic inputs shared by the dashboard tests (app, core.runs, uploads, browser)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TINY_IMAGE = {"channels": 1, "size": 28, "invert": True, "mean": [0.0], "std": [1.0]}
SHAPES = ("circle", "square", "cross")


def encode(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def shape_image(shape: int, variant: int, size: int = 40) -> Image.Image:
    """A dark outline (circle, square or cross) on white, shifted a little per ``variant``."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    o = variant % 5
    if shape % 3 == 0:
        draw.ellipse((5 + o, 5, 30 + o, 30), outline=0, width=3)
    elif shape % 3 == 1:
        draw.rectangle((5, 5 + o, 30, 30 + o), outline=0, width=3)
    else:
        draw.line((5 + o, 5, 35, 35 - o), fill=0, width=3)
        draw.line((5, 35 - o, 35 - o, 5), fill=0, width=3)
    return image


def shape_png(shape: int, variant: int) -> bytes:
    return encode(shape_image(shape, variant))


def noise_png(size: int = 64, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"))


def upload_classes(n_classes: int = 3, shots: int = 2, names: tuple[str, ...] = SHAPES):
    """``episode_from_uploads`` class input: ``[(name, [(file, bytes), ...]), ...]``."""
    return [
        (names[c], [(f"{names[c]}-{i}.png", shape_png(c, i)) for i in range(shots)]) for c in range(n_classes)
    ]


def upload_queries(n_classes: int = 3, labelled: bool = True):
    return [(f"query-{c}.png", shape_png(c, 4), SHAPES[c] if labelled else None) for c in range(n_classes)]


def save_tiny_checkpoint(
    path: Path, rule: dict | None = None, name: str = "tiny-alfa", nan: bool = False, **fields: object
) -> Path:
    """A Conv4 with 8 filters (5 classes, 28x28 grey, inverted), ALFA by default; ``nan`` poisons its weights.
    ``fields`` replace fields of its ``core.checkpoint.CheckpointMetadata``."""
    import dataclasses

    import torch

    from core.checkpoint import (
        InnerSteps,
        TrainingData,
        TrainingRecord,
        ValidationResult,
        learner_metadata,
        save_learner,
    )
    from core.data.images import ImageSpec
    from core.learner import Learner

    learner = Learner(
        {"name": "conv4", "filters": 8, "n_classes": 5},
        rule or {"name": "alfa", "steps": 3, "lr": 0.4, "generator_init": "identity"},
        seed=0,
    )
    if nan:
        with torch.no_grad():
            for parameter in learner.backbone.parameters():
                parameter.fill_(float("nan"))
    training = TrainingRecord(
        command="python -m core train --config tiny.toml", config=None,
        data=TrainingData(kind="omniglot", root=None, train=("Latin",), val=("Greek",), test=("Tagalog",)),
        iterations=1, tasks_seen=4, wall_seconds=0.1, device="cpu", estimator=None, skipped_nonfinite_steps=None,
        pretraining=None,
    )
    metadata = learner_metadata(
        learner, name=name, image=ImageSpec.from_dict(TINY_IMAGE), n_way=5, inner_steps=InnerSteps(train=3, eval=3),
        training=training, validation=ValidationResult(metric="accuracy", mean=0.9, ci95=0.02, score=0.9),
        code="tests",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_learner(path, learner, dataclasses.replace(metadata, **fields))


def synthetic_spread(layers, steps: int = 3, episodes: int = 4, episode_effect: float = 0.0, rule: str = "alfa"):
    """A ``core.spread.RuleSpread`` over ``layers``: alpha ``0.1 (i + 1) - 0.02 j + episode_effect * e`` at layer
    ``i``, step ``j``, episode ``e`` (no ``episode_effect``: a fixed per-step schedule), beta ``1 - 1e-3 j``."""
    from core.spread import RuleSpread, spread_of_traces

    traces = [
        [{layer: {"alpha": 0.1 * (i + 1) - 0.02 * j + episode_effect * e, "beta": 1.0 - 1e-3 * j}
          for i, layer in enumerate(layers)} for j in range(steps)]
        for e in range(episodes)
    ]
    return RuleSpread(checkpoint="tiny.safetensors", checkpoint_sha256="0" * 64, rule=rule, steps=steps, n_way=5,
                      k_shot=1, n_query=5, episodes=episodes, seed=0, head_init="zero", data="omniglot: Tagalog",
                      accuracies=[0.5] * episodes, layers=spread_of_traces(traces))


def save_sine_checkpoint(path: Path) -> Path:
    from core.checkpoint import InnerSteps, learner_metadata, save_learner
    from core.learner import Learner

    learner = Learner({"name": "mlp", "hidden": [8, 8]}, {"name": "sgd", "lr": 0.01}, task_kind="regression")
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = learner_metadata(learner, name="tiny-sine", inner_steps=InnerSteps(train=5, eval=5), code="tests")
    return save_learner(path, learner, metadata)


def every_mode_image_files(size: int = 36) -> list[tuple[str, bytes]]:
    """One file per image mode and container ``decode_image`` accepts, each showing a dark cross on light.

    Covers what a user can upload: 8-bit grey/colour with and without alpha, palettes (with transparency),
    CMYK, 1-bit, 16-bit grey PNG (``I;16``), 32-bit integer and float TIFFs, and a JPEG turned by EXIF.
    """
    base = shape_image(2, 0, size)  # "L": dark cross on white
    grey16 = Image.fromarray(np.asarray(base, dtype=np.uint16) * 257)  # mode I;16
    assert grey16.mode == "I;16"
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.eval(base, lambda v: 255 if v < 128 else 0))  # transparent paper
    palette = base.convert("P")
    palette_transparent = base.convert("P")
    palette_transparent.info["transparency"] = int(palette_transparent.getpixel((0, 0)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    files = [
        ("grey.png", encode(base)),
        ("rgb.jpg", encode(base.convert("RGB"), "JPEG")),
        ("rgba.png", encode(rgba)),
        ("la.png", encode(rgba.convert("LA"))),
        ("palette.gif", encode(palette, "GIF")),
        ("palette-transparent.png", encode(palette_transparent)),
        ("cmyk.jpg", encode(base.convert("CMYK"), "JPEG")),
        ("one-bit.png", encode(base.convert("1"))),
        ("grey16.png", encode(grey16)),
        # 32-bit integer images are read in the 16-bit range (decode_image), as many 16-bit TIFFs load as "I".
        ("int32.tif", encode(Image.fromarray(np.asarray(base, dtype=np.int32) * 257), "TIFF")),
        ("float.tif", encode(base.convert("F"), "TIFF")),
        ("rotated.jpg", encode(base.convert("RGB"), "JPEG", exif=exif.tobytes())),
        ("rgb.webp", encode(base.convert("RGB"), "WEBP")),
        ("rgb.bmp", encode(base.convert("RGB"), "BMP")),
    ]
    return files
