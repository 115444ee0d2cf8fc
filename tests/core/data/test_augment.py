"""Random affine augmentation of training tasks: seeded, label-preserving, bounded, and never on held-out tasks."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.config import ConfigError, TrainConfig, config_from_dict, load_config
from core.data import OMNIGLOT_SPEC, EpisodeSampler, LabelledImageSet, OmniglotImageSet, decode_image
from core.data.augment import (
    AugmentConfig,
    SupportAugment,
    augment_generator,
    augment_task,
    background_fill,
    draw_affine,
    expand_support,
    random_affine,
)
from core.learner import Learner
from core.task_sources import EpisodeSource, task_source
from tests.conftest import omniglot_root
from tests.tolerances import gamma

# The ranges the issue suggests for Omniglot.
TYPICAL = AugmentConfig(rotation=10, shear=10, scale=(0.9, 1.1), translate=0.1)


def _drawn_character(class_index: int, item: int) -> bytes:
    """A PNG of dark strokes on white paper, 105 x 105 like Omniglot's drawings, centred: a polyline whose
    shape is fixed by the class and whose vertices jitter a little with the item."""
    rng = np.random.default_rng([class_index, item])
    shape = np.random.default_rng(class_index).uniform(-28, 28, size=(5, 2))
    points = [tuple(float(v) for v in 52 + p + rng.uniform(-3, 3, size=2)) for p in shape]
    image = Image.new("L", (105, 105), 255)
    ImageDraw.Draw(image).line(points, fill=0, width=4, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class DrawnCharacters(LabelledImageSet):
    """Synthetic stand-in for Omniglot: ``classes`` stroke figures, ``items`` drawings each, decoded with the
    Omniglot spec (light strokes, 1.0, on a black background, 0.0)."""

    def __init__(self, classes: int = 6, items: int = 8) -> None:
        super().__init__(name="drawn", spec=OMNIGLOT_SPEC)
        self.class_names = [f"figure{c:02d}" for c in range(classes)]
        self._items = items

    def num_items(self, class_name: str) -> int:
        return self._items

    def source(self, class_name: str, index: int) -> str:
        return f"drawn:{class_name}:{index}"

    def load(self, class_name: str, index: int) -> torch.Tensor:
        return decode_image(_drawn_character(self.class_names.index(class_name), index), self.spec)


@pytest.fixture(scope="module")
def characters() -> tuple[str, torch.Tensor]:
    """``(what they are, drawings [N, 1, 28, 28])``: 240 real Omniglot drawings when the data is here, else
    synthetic stroke drawings."""
    root = omniglot_root()
    if root is None:
        drawn = DrawnCharacters(classes=30, items=8)
        return "synthetic strokes", torch.stack([drawn.load(c, i) for c in drawn.class_names for i in range(8)])
    image_set = OmniglotImageSet(root, alphabets=["Greek", "Tagalog", "Korean"])
    names = image_set.class_names[::2][:60]
    return "real Omniglot", torch.stack([image_set.load(c, i) for c in names for i in (0, 5, 10, 15)])


def test_labels_classes_and_sources_are_kept_and_only_the_images_change() -> None:
    image_set = DrawnCharacters()
    plain = EpisodeSampler(image_set, n_way=3, k_shot=2, n_query=3, seed=4)
    source = EpisodeSource(image_set, 3, 2, 3, seed=4, augment=TYPICAL)
    for index in range(3):
        before, after = plain.episode(index), source.task(index)
        assert torch.equal(after.support_y, before.support_y) and torch.equal(after.query_y, before.query_y)
        assert after.class_names == before.class_names
        assert after.support_sources == before.support_sources and after.query_sources == before.query_sources
        assert after.support_x.shape == before.support_x.shape and after.query_x.shape == before.query_x.shape
        assert not torch.equal(after.support_x, before.support_x) and not torch.equal(after.query_x, before.query_x)
        assert after.provenance == {**before.provenance, "augment": TYPICAL.to_dict()}


def test_the_augmentation_of_a_task_is_a_pure_function_of_seed_and_index() -> None:
    image_set = DrawnCharacters()
    first = EpisodeSource(image_set, 3, 1, 2, seed=7, augment=TYPICAL)
    second = EpisodeSource(DrawnCharacters(), 3, 1, 2, seed=7, augment=TYPICAL)
    forward = [first.task(i) for i in range(4)]
    backward = [second.task(i) for i in reversed(range(4))][::-1]  # as a resumed run asks for them
    for a, b in zip(forward, backward):
        assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    # Another index, or another seed, distorts the same episode differently.
    episode = EpisodeSampler(image_set, 3, 1, 2, seed=7).episode(0)
    fill = background_fill(image_set.spec)
    same = augment_task(episode, TYPICAL, seed=7, index=0, fill=fill)
    assert torch.equal(same.support_x, forward[0].support_x)
    for seed, index in ((7, 1), (8, 0)):
        other = augment_task(episode, TYPICAL, seed=seed, index=index, fill=fill)
        assert not torch.equal(other.support_x, same.support_x)
    # Each image of a batch has its own transform: the same drawing twice comes out two ways.
    twice = episode.support_x[:1].expand(2, -1, -1, -1)
    out = random_affine(twice, TYPICAL, augment_generator(0, 0), fill)
    assert not torch.equal(out[0], out[1])


def test_the_identity_config_leaves_images_unchanged_exactly() -> None:
    image_set = DrawnCharacters()
    assert AugmentConfig().is_identity and not TYPICAL.is_identity
    assert AugmentConfig(rotation=0, shear=0.0, scale=[1, 1], translate=0).is_identity
    episode = EpisodeSampler(image_set, 3, 1, 2, seed=0).episode(5)
    assert augment_task(episode, AugmentConfig(), seed=0, index=5, fill=[0.0]) is episode
    images = episode.query_x
    assert random_affine(images, AugmentConfig(), augment_generator(0, 5), [0.0]) is images
    # A source without augmentation hands out the sampler's episodes, bit for bit.
    task = EpisodeSource(image_set, 3, 1, 2, seed=0).task(5)
    assert torch.equal(task.support_x, episode.support_x) and torch.equal(task.query_x, episode.query_x)
    assert task.provenance == episode.provenance


def test_values_stay_within_the_range_of_the_drawings(characters) -> None:
    """torchvision's bilinear affine with a fill value gives each pixel ``M * S + (1 - M) * fill``: ``S`` is the
    bilinear (convex) combination of the four input pixels around the sample point, with weight 0 on those off
    the image, and ``M`` in [0, 1] that combination of ones. So ``S`` lies between ``M * min(0, lo)`` and
    ``M * hi`` for input values in [lo, hi], and the pixel between min(0, fill, lo) and max(0, fill, hi). The
    drawings span [0, 1] (background 0.0 = the fill), so the output does too, up to the rounding of
    those few operations: at most ``gamma_16`` relative to the largest value."""
    what, drawings = characters
    fill = background_fill(OMNIGLOT_SPEC)
    assert fill == [0.0]
    low, high = float(drawings.min()), float(drawings.max())
    assert low == 0.0 and high <= 1.0
    strong = AugmentConfig(rotation=45, shear=30, scale=(0.6, 1.5), translate=0.3)
    for config in (TYPICAL, strong):
        out = random_affine(drawings, config, augment_generator(0, 0), fill)
        slack = gamma(16, torch.float32) * high
        assert float(out.min()) >= low - slack, what
        assert float(out.max()) <= high + slack, what


def test_the_ink_of_a_centred_character_scales_with_the_area(characters) -> None:
    """Ink mass (the sum of pixel values) of a character that stays inside the picture.

    The transform's linear part is rotation x scale s x shear; rotation and shear have determinant 1, so it
    multiplies areas by s^2, and the continuous ink mass of a character that stays in frame by s^2: within
    [low^2, high^2] = [0.81, 1.21] for scale = [0.9, 1.1]. Bilinear resampling conserves that only on average
    over sub-pixel offsets: an input pixel's weight in the output is the sum of the bilinear tent over the
    output's sample points, spaced 1/s apart along each axis. For spacing h = 1/s that sum averages s but
    ranges, per axis, over [2 - h, 1] for h >= 1 and [2 - h, 3 - 2h] for 2/3 <= h <= 1: from -1.2% to +11.1%
    of its mean at s = 0.9 and from -0.8% to +7.4% at s = 1.1. A character's ink covers many pixels at all
    sub-pixel offsets, which averages these errors out; the bound allows 10% of resampling error for the
    whole character: mass ratio within [0.9 * 0.81, 1.1 * 1.21], and within 10% of each drawing's own s^2.

    So that no ink leaves the frame, the 28 x 28 drawings are centred on a 56 x 56 blank canvas and not
    shifted (translate 0): ink within 14 * sqrt(2) = 19.8 pixels of the centre moves to at most 1.1 * 1.2 * 19.8
    = 26.2 pixels from it (1.2 bounds the stretch of two 10 degree shears), inside the canvas; the test checks
    that the canvas's outer ring stays blank.
    """
    what, drawings = characters
    config = AugmentConfig(rotation=10, shear=10, scale=(0.9, 1.1))
    canvas = torch.nn.functional.pad(drawings, (14, 14, 14, 14))
    parameters = draw_affine(config, len(canvas), 56, 56, augment_generator(3, 0))
    out = random_affine(canvas, config, augment_generator(3, 0), [0.0])  # the same draws
    assert float(out[..., :1, :].abs().sum() + out[..., -1:, :].abs().sum()) == 0.0, what
    assert float(out[..., :, :1].abs().sum() + out[..., :, -1:].abs().sum()) == 0.0, what
    ratio = out.sum(dim=(1, 2, 3)).double() / canvas.sum(dim=(1, 2, 3)).double()
    low, high = config.scale
    assert float(ratio.min()) >= 0.9 * low**2 and float(ratio.max()) <= 1.1 * high**2, what
    area = torch.tensor([p.scale**2 for p in parameters], dtype=torch.float64)
    assert float((ratio / area - 1).abs().max()) <= 0.1, what
    # And the scale range is used: some drawings shrink, some grow.
    assert float(ratio.min()) < 0.95 and float(ratio.max()) > 1.05, what


def test_the_fill_is_blank_paper_under_the_spec() -> None:
    from core.data import ImageSpec

    assert background_fill(ImageSpec(1, 28, invert=True)) == [0.0]
    assert background_fill(ImageSpec(1, 28, invert=True, mean=(0.5,), std=(0.25,))) == [-2.0]
    assert background_fill(ImageSpec(3, 8, mean=(0.5, 0.0, 1.0), std=(0.5, 1.0, 2.0))) == [1.0, 1.0, 0.0]


def test_drawn_parameters_lie_in_the_ranges() -> None:
    parameters = draw_affine(TYPICAL, 500, 20, 28, np.random.default_rng(0))  # 20 high, 28 wide
    assert all(abs(p.angle) <= 10 and all(abs(s) <= 10 for s in p.shear) and 0.9 <= p.scale <= 1.1 for p in parameters)
    # Shifts are whole pixels within 10% of the side: 2.8 -> at most 3 along x (28 wide), 2 along y (20 high).
    assert {abs(p.translate[0]) for p in parameters} == {0, 1, 2, 3}
    assert {abs(p.translate[1]) for p in parameters} == {0, 1, 2}


def _omniglot_config(root, augment) -> TrainConfig:
    return config_from_dict({
        "seed": 2,
        "data": {"root": str(root), "image_size": 14, "train": ["Latin"], "val": ["Greek"], "test": ["Tagalog"],
                 "augment": augment},
        "task": {"n_way": 3, "k_shot": 1, "n_query": 2},
        "model": {"backbone": {"name": "conv4", "filters": 4, "n_blocks": 3}},
        "meta": {"meta_batch": 2, "iterations": 2, "inner_steps": 1, "eval_inner_steps": 1},
    })


def test_validation_and_test_tasks_are_never_augmented(real_omniglot, monkeypatch) -> None:
    config = _omniglot_config(real_omniglot, TYPICAL.to_dict())
    train = task_source(config, "train")
    assert train.augment == TYPICAL
    for role in ("val", "test"):
        held_out = task_source(config, role)
        assert held_out.augment.is_identity
        plain = EpisodeSampler(held_out.image_set, 3, 1, 2, seed=config.seed)
        for index in range(3):
            task = held_out.task(index)
            assert torch.equal(task.query_x, plain.episode(index).query_x) and "augment" not in task.provenance
    # Scoring held-out episodes, even through the training source, never reaches the augmentation.
    def refuse(*args, **kwargs):
        raise AssertionError("held-out images were augmented")

    monkeypatch.setattr("core.data.augment.random_affine", refuse)
    monkeypatch.setattr("core.task_sources.augment_task", refuse)
    learner = Learner(config.backbone_config(), config.rule.as_rule_dict(), seed=0)
    for source in (train, task_source(config, "val")):
        result = source.evaluate(learner, episodes=2, steps=1, seed=10_000)
        assert result.episodes == 2


def test_a_run_saved_before_augmentation_existed_resumes(tmp_path, monkeypatch) -> None:
    """Its stored config has no data.augment: it trained without, which is the default."""
    from core.train import Trainer

    raw = {"output_dir": str(tmp_path / "run"), "data": {"kind": "sine"}, "task": {"k_shot": 2, "n_query": 2},
           "model": {"backbone": {"name": "mlp", "hidden": [4]}}, "meta": {"meta_batch": 1, "iterations": 1}}
    config = config_from_dict(raw)
    full = TrainConfig.to_dict

    def without_augment(self):
        stored = full(self)
        del stored["data"]["augment"]
        return stored

    monkeypatch.setattr(TrainConfig, "to_dict", without_augment)
    Trainer(config, device="cpu", progress=False).save_state()
    monkeypatch.undo()
    assert Trainer(config, device="cpu", progress=False).load_state()


def test_a_run_with_augmentation_resumes_and_refuses_other_ranges(tmp_path, real_omniglot) -> None:
    from core.train import Trainer

    config = _omniglot_config(real_omniglot, {"rotation": 10, "scale": [0.9, 1.1]})
    config.output_dir = str(tmp_path / "run")
    Trainer(config, device="cpu", progress=False).save_state()
    assert Trainer(config, device="cpu", progress=False).load_state()
    other = _omniglot_config(real_omniglot, {"rotation": 20, "scale": [0.9, 1.1]})
    other.output_dir = config.output_dir
    with pytest.raises(ValueError, match="differs in: data"):
        Trainer(other, device="cpu", progress=False).load_state()


def test_the_config_table(tmp_path) -> None:
    path = tmp_path / "augmented.toml"
    path.write_text('[data]\naugment = { rotation = 10, shear = 10, scale = [0.9, 1.1], translate = 0.1 }\n')
    config = load_config(path)
    assert config.data.augment == TYPICAL
    assert config_from_dict(config.to_dict()) == config  # as a run's stored config reads back
    assert config_from_dict({"data": {"augment": {"rotation": 5}}}).data.augment == AugmentConfig(rotation=5)
    assert config_from_dict({}).data.augment.is_identity  # every existing config: no augmentation


@pytest.mark.parametrize(
    "augment, message",
    [
        ({"rotate": 10}, r"data.augment: unknown key\(s\): rotate \(known: rotation, scale, shear, translate\)"),
        ({"rotation": -5}, "data.augment: rotation must be from 0 to 180 degrees, not -5"),
        ({"rotation": "ten"}, "data.augment: rotation must be a finite number, not 'ten'"),
        ({"shear": 90}, "data.augment: shear must be from 0 to below 90 degrees"),
        ({"scale": [1.1, 0.9]}, r"data.augment: scale must be \[low, high\] with 0 < low <= high"),
        ({"scale": [0, 1]}, r"data.augment: scale must be \[low, high\] with 0 < low <= high"),
        ({"scale": 1.1}, r"data.augment: scale must be two numbers \[low, high\], not 1.1"),
        ({"translate": 1.5}, "data.augment: translate must be a fraction of the image side from 0 to 1"),
        ({"translate": True}, "data.augment: translate must be a finite number, not True"),
        ({"rotation": math.nan}, "data.augment: rotation must be a finite number"),
        (10, r"data.augment: must be a table such as \{ rotation = 10"),
    ],
)
def test_bad_augment_tables_are_config_errors(augment, message) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": {"augment": augment}})


def test_sine_regression_has_no_images_to_augment() -> None:
    with pytest.raises(ConfigError, match="data.augment .*sine regression"):
        config_from_dict({"data": {"kind": "sine", "augment": {"rotation": 10}}})


def test_bad_batches_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        random_affine(torch.zeros(1, 28, 28), TYPICAL, augment_generator(0, 0), [0.0])


def test_test_time_augmentation_appends_distorted_support_copies_and_leaves_the_queries_alone() -> None:
    image_set = DrawnCharacters()
    episode = EpisodeSampler(image_set, 3, 2, 4, seed=5).episode(2)
    fill = background_fill(image_set.spec)
    augment = SupportAugment(3, TYPICAL)
    expanded = expand_support(episode, augment, seed=5, index=2, fill=fill)
    n = episode.support_x.shape[0]
    assert expanded.support_x.shape == (4 * n, *episode.support_x.shape[1:])
    # The originals come first, bit for bit; then copy 1 of every image, copy 2, copy 3, each with its label.
    assert torch.equal(expanded.support_x[:n], episode.support_x)
    assert torch.equal(expanded.support_y, episode.support_y.repeat(4))
    assert expanded.shots_per_class == [4 * shots for shots in episode.shots_per_class]
    for copy in range(1, 4):
        block = expanded.support_x[copy * n:(copy + 1) * n]
        assert all(not torch.equal(block[i], episode.support_x[i]) for i in range(n))
    assert expanded.support_sources[:n] == episode.support_sources
    assert expanded.support_sources[n] == f"{episode.support_sources[0]} (augmented copy 1)"
    # What is scored is untouched.
    assert torch.equal(expanded.query_x, episode.query_x) and torch.equal(expanded.query_y, episode.query_y)
    assert expanded.query_sources == episode.query_sources and expanded.class_names == episode.class_names
    assert expanded.provenance == {**episode.provenance, "test_time_augment": augment.to_dict()}
    # A pure function of (seed, index), and a stream apart from the training tasks' augmentation.
    again = expand_support(episode, augment, seed=5, index=2, fill=fill)
    assert torch.equal(again.support_x, expanded.support_x)
    assert not torch.equal(expand_support(episode, augment, seed=5, index=3, fill=fill).support_x, expanded.support_x)
    trained = augment_task(episode, TYPICAL, seed=5, index=2, fill=fill)
    assert not torch.equal(trained.support_x, expanded.support_x[n:2 * n])


@pytest.mark.parametrize(("copies", "ranges", "message"), [
    (0, TYPICAL, "at least 1 copy"),
    (True, TYPICAL, "at least 1 copy"),
    (2, AugmentConfig(), "identity ranges only repeat"),
])
def test_bad_test_time_augmentation_is_refused(copies, ranges, message) -> None:
    with pytest.raises(ValueError, match=message):
        SupportAugment(copies, ranges)
