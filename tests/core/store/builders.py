"""Small, fully deterministic run inputs for the store tests."""

from __future__ import annotations

import math

from core.store import AdaptationInput, CheckpointInput, EpisodeItemInput, ImageInput, RunInput

CLASS_NAMES = ["cat", "dog"]
# Deliberately not in alphabetical order: the stored traces must keep the dict order.
LAYERS = ("layer2.weight", "layer1.bias")


def image(tag: str, mime: str = "image/png") -> ImageInput:
    """Fake image bytes, distinct per tag (the store never decodes them)."""
    return ImageInput(data=f"fake image {tag}".encode() * 10, mime=mime, width=28, height=28, source_name=f"{tag}.png")


def checkpoint(name: str = "omniglot-alfa", file_sha256: str = "c" * 64) -> CheckpointInput:
    return CheckpointInput(
        name=name,
        path=f"assets/checkpoints/{name}.safetensors",
        file_sha256=file_sha256,
        backbone={"kind": "conv4", "channels": 64},
        rule={"name": "alfa", "steps": 3},
        image_spec={"size": 28, "channels": 1},
        metadata={"name": name, "val_accuracy": 0.987654321, "nested": {"list": [1, 2.5, None]}},
    )


def run_input(
    *,
    source: str = "benchmark",
    dataset: str | None = "omniglot",
    n_way: int = 2,
    k_shot: int = 1,
    checkpoint_name: str = "omniglot-alfa",
    images: tuple[str, ...] = ("a", "b", "q1", "q2"),
    reuse_first_image_as_last_query: bool = True,
    note: str | None = None,
) -> RunInput:
    """Support: images[0] (cat), images[1] (dog). Queries: images[2] (cat), images[3] (unlabelled), and a
    third query that reuses the bytes of images[0] (dog, to make it wrong) unless told otherwise."""
    support = [
        EpisodeItemInput("support", 0, 0, image(images[0])),
        EpisodeItemInput("support", 1, 1, image(images[1])),
    ]
    last = image(images[0]) if reuse_first_image_as_last_query else image(images[0] + "-other")
    last.source_name = "copy-of-first.png"
    query = [
        EpisodeItemInput("query", 0, 0, image(images[2])),
        EpisodeItemInput("query", 1, None, image(images[3])),
        EpisodeItemInput("query", 2, 1, last),
    ]
    return RunInput(
        source=source,
        dataset=dataset,
        split="test" if dataset else None,
        n_way=n_way,
        k_shot=k_shot,
        n_query=1,
        seed=2**40 + 7,
        checkpoint=checkpoint(checkpoint_name, file_sha256=checkpoint_name.ljust(64, "0")[:64]),
        checkpoint_name=checkpoint_name,
        device="cpu",
        steps=3,
        class_names=list(CLASS_NAMES),
        config={"head_init": "prototype", "rules": ["sgd", "alfa"], "image_size": [28, 28]},
        items=support + query,
        note=note,
    )


def adaptation(rule: str = "sgd", steps: int = 3, offset: float = 0.0, accuracy: float | None = 0.5) -> AdaptationInput:
    """Three queries (truths cat, unlabelled, dog) and awkward floats that only survive if stored exactly."""
    probabilities = [
        [2 / 3 + offset / 10, 1 / 3 - offset / 10],
        [0.1 + 0.2, 1 - (0.1 + 0.2)],
        [math.pi / 4, 1 - math.pi / 4],
    ]
    return AdaptationInput(
        rule=rule,
        rule_label=f"{rule.upper()} ({steps} steps)",
        steps=steps,
        head_init="prototype",
        accuracy=accuracy,
        query_loss=math.e / 7 + offset,
        seconds=0.123456789 + offset,
        predictions=[0, 1, 0],
        probabilities=probabilities,
        truths=[0, None, 1],
        support_loss=[1 / (step + 3) + offset for step in range(steps + 1)],
        support_accuracy=[step / (steps + 7) for step in range(steps + 1)],
        traces=[
            {
                layer: {"alpha": 1e-3 / (step + 1) + index / 11 + offset, "beta": 1 - step * 1e-17 - index / 13}
                for index, layer in enumerate(LAYERS)
            }
            for step in range(steps)
        ],
    )
