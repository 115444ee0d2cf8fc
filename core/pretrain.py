"""Supervised pre-training of a backbone on all training classes, the stage LEO (Rusu et al. 2019, sec. 4.2) and
MetaOpt (Lee et al. 2019) run before meta-learning.

The backbone gets a linear head over every training class (rotated Omniglot characters count as classes, as
in meta-training) and is trained with cross-entropy, SGD with momentum and a cosine-annealed rate. Only the
feature extractor is kept: meta-training starts from it with its own few-way head. The stage is resumable per
epoch (``<output>.state.safetensors``) and its output records what it did, so a meta-trained checkpoint can say
exactly where its initialisation came from (``core.checkpoint.PretrainingRecord``).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.checkpoint.format import (
    PRETRAINED_BACKBONE,
    PRETRAINING_STATE,
    CheckpointError,
    file_sha256,
    read_header,
    read_tensors,
    write_file,
)
from core.checkpoint.metadata import PretrainingRecord
from core.checkpoint.training_state import PretrainingProgress, launch_command, read_state, write_state
from core.config import TrainConfig
from core.data.augment import augment_generator, background_fill, random_affine
from core.data.factory import build_image_set
from core.device import pick_device
from models.backbones import build_backbone, head_names


def pretrained_path(config: TrainConfig) -> Path:
    if config.pretrain.output:
        return Path(config.pretrain.output)
    return config.output_path() / "pretrained.safetensors"


def backbone_config(config: TrainConfig, n_classes: int) -> dict[str, Any]:
    """The run's backbone with a head over all ``n_classes`` training classes instead of ``n_way``."""
    return {**config.backbone_config(), "n_classes": n_classes}


def _recipe(config: TrainConfig) -> dict[str, Any]:
    """What must agree between a pre-trained file and a run that wants to start from it."""
    data = config.data
    return {
        "backbone": {k: v for k, v in backbone_config(config, 0).items() if k != "n_classes"},
        "data": {"kind": data.kind, "train": list(data.train), "rotations": list(data.rotations),
                 "image_size": data.image_size, "channels": data.channels, "invert": data.invert,
                 "mean": list(data.mean), "std": list(data.std)},
        "pretrain": {k: v for k, v in vars(config.pretrain).items() if k != "output"},
        "seed": config.seed,
        # Only when on, so that files pre-trained before augmentation existed still match their configs.
        **({} if data.augment.is_identity else {"augment": data.augment.to_dict()}),
    }


class Pretrainer:
    def __init__(self, config: TrainConfig, device: str | None = None, command: str | None = None, progress: bool = True):
        if config.pretrain.epochs < 1:
            raise ValueError("pretrain.epochs is 0: nothing to pre-train")
        self.config = config
        self.device = pick_device(device)
        self.command = command or launch_command()
        self.progress = progress
        self.output = pretrained_path(config)
        self.state_path = self.output.with_name(self.output.stem + ".state.safetensors")
        image_set = build_image_set(config, "train")
        self.class_names = list(image_set.class_names)
        images, labels = [], []
        for label, class_name in enumerate(self.class_names):
            for index in range(image_set.num_items(class_name)):
                images.append(image_set.load(class_name, index))
                labels.append(label)
        if not images:
            raise ValueError("the training split holds no images")
        self.images = torch.stack(images)
        self.fill = background_fill(image_set.spec)
        self.labels = torch.tensor(labels)
        torch.manual_seed(config.seed)
        self.model = build_backbone(backbone_config(config, len(self.class_names))).to(self.device)
        p = config.pretrain
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, nesterov=True
        )
        self.epoch = 0
        self.wall_seconds = 0.0
        self.history: list[dict[str, float]] = []

    def lr(self, epoch: int) -> float:
        return 0.5 * self.config.pretrain.lr * (1 + math.cos(math.pi * epoch / self.config.pretrain.epochs))

    def train_epoch(self, epoch: int) -> dict[str, float]:
        p = self.config.pretrain
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(epoch)
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.config.seed * 1000 + epoch))
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        batches = range(0, len(order), p.batch_size)
        bar = tqdm(batches, desc=f"pretrain epoch {epoch + 1}/{p.epochs}", disable=not self.progress, leave=False)
        for start in bar:
            index = order[start:start + p.batch_size]
            if len(index) < 2:  # batch norm on batch statistics needs two images
                continue
            x, y = self.images[index], self.labels[index].to(self.device)
            if not self.config.data.augment.is_identity:
                # Batch b of epoch e gets its own seeded draw: a resumed pre-training sees the same images.
                rng = augment_generator(self.config.seed, epoch * len(batches) + start // p.batch_size)
                x = random_affine(x, self.config.data.augment, rng, self.fill)
            x = x.to(self.device)
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.argmax(-1) == y).sum())
            seen += len(index)
        return {"epoch": epoch + 1, "loss": total_loss / seen, "accuracy": correct / seen, "lr": self.lr(epoch)}

    def save_state(self) -> None:
        progress = PretrainingProgress(self.epoch, self.wall_seconds, self.history, _recipe(self.config))
        write_state(self.state_path, {"model": self.model.state_dict()}, self.optimizer, progress)

    def load_state(self) -> bool:
        if not self.state_path.is_file():
            return False
        state = read_state(self.state_path, PRETRAINING_STATE, device=self.device)
        progress: PretrainingProgress = state.progress
        if progress.recipe != _recipe(self.config):
            raise ValueError(f"{self.state_path} was written by a different pre-training recipe; delete it or change pretrain.output")
        self.model.load_state_dict(state.module("model"))
        state.restore_optimizer(self.optimizer)
        self.epoch = progress.epoch
        self.wall_seconds = progress.wall_seconds
        self.history = list(progress.history)
        return True

    def run(self) -> Path:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        if self.load_state():
            print(f"resumed pre-training {self.state_path} at epoch {self.epoch}", file=sys.stderr)
        while self.epoch < self.config.pretrain.epochs:
            started = time.perf_counter()
            record = self.train_epoch(self.epoch)
            self.epoch += 1
            self.wall_seconds += time.perf_counter() - started
            record["wall_seconds"] = round(self.wall_seconds, 1)
            self.history.append(record)
            print(f"pretrain epoch {self.epoch}: loss {record['loss']:.4f}, train accuracy {100 * record['accuracy']:.2f}%",
                  file=sys.stderr)
            self.save_state()
        names = head_names(self.model)
        head = {names.weight, names.bias}  # the head over all training classes is not kept
        features = {k: v for k, v in self.model.state_dict().items() if k not in head}
        config = self.config
        header = {
            "kind": PRETRAINED_BACKBONE,
            "recipe": _recipe(config),
            "command": self.command,
            "classes": len(self.class_names),
            "images": len(self.labels),
            "data": {"train": list(config.data.train), "rotations": list(config.data.rotations)},
            "epochs": self.epoch,
            "wall_seconds": round(self.wall_seconds, 1),
            "device": str(self.device),
            "history": self.history,
        }
        write_file(self.output, features, header)
        self.state_path.unlink(missing_ok=True)
        return self.output


def load_pretrained(config: TrainConfig, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], PretrainingRecord]:
    """The pre-trained feature weights for ``config`` and the record a meta-trained checkpoint keeps of them.

    Refuses a file made with another backbone, training split or recipe: starting from it would silently make
    the run something other than what its config says.
    """
    path = pretrained_path(config)
    header = read_header(path)
    if header.get("kind") != PRETRAINED_BACKBONE:
        raise CheckpointError(f"{path} is not a pre-trained backbone file")
    if header.get("recipe") != _recipe(config):
        raise CheckpointError(
            f"{path} was pre-trained with another backbone, training split or recipe than this config asks for; "
            "delete it or point pretrain.output elsewhere"
        )
    try:
        record = PretrainingRecord(
            file=str(path),
            sha256=file_sha256(path),
            command=str(header["command"]),
            epochs=int(header["epochs"]),
            classes=int(header["classes"]),
            images=int(header["images"]),
            train=tuple(header["data"]["train"]),
            rotations=tuple(header["data"]["rotations"]),
            wall_seconds=float(header["wall_seconds"]),
            final_train_accuracy=float(header["history"][-1]["accuracy"]) if header["history"] else None,
            recipe=dict(header["recipe"]["pretrain"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"{path}: pre-trained backbone header is incomplete ({error!r})") from None
    return read_tensors(path, device=device), record
