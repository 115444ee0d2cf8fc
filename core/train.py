"""Meta-training from a config file, with periodic validation, checkpoints and resume.

Files written to the run's output folder:
- ``state.safetensors``: everything needed to resume (meta-parameters, the outer step's optimizer state, iteration,
  history);
- ``last.safetensors`` / ``best.safetensors``: deployable checkpoints (best = highest validation score);
- ``history.jsonl``: one line per validation.
Task ``i * meta_batch + t`` of the seeded sampler is task ``t`` of iteration ``i``, so a resumed run sees
exactly the tasks an uninterrupted one would have.

Under torchrun (``ranks`` given, ``core.distributed``) each process computes the meta-gradient of its share of
the meta-batch and the shares are all-reduced into the whole meta-batch's; rank 0 alone reads and writes the files
above, validates and shows progress, and hands what it read to the other ranks.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from core.checkpoint import (
    CheckpointMetadata,
    InnerSteps,
    PretrainingRecord,
    TrainingData,
    TrainingRecord,
    ValidationResult,
    learner_metadata,
    save_learner,
)
from core.checkpoint.format import TRAINING_STATE
from core.checkpoint.training_state import TrainingProgress, launch_command, read_state, write_state
from core.config import TrainConfig, with_added_meta_keys
from core.data.augment import AugmentConfig
from core.data.factory import image_spec
from core.data.task import Task
from core.device import pick_device
from core.distributed import Ranks, all_reduce_meta_gradient, barrier, broadcast_from_main
from core.learner import Learner
from core.meta.estimator import LAST_STEP, QueryObjective, build_estimator
from core.meta.outer_step import choose_outer_step
from core.objectives import objective_for
from core.pretrain import Pretrainer, load_pretrained, pretrained_path
from core.task_sources import task_source
from models.backbones import head_names


class Trainer:
    def __init__(self, config: TrainConfig, device: str | None = None, command: str | None = None, progress: bool = True,
                 ranks: Ranks | None = None):
        """``ranks``: this process's place among torchrun's processes, whose process group is already started
        (``core.distributed.process_group``); None trains alone."""
        self.config = config
        self.device = pick_device(device)
        self.command = command or launch_command()
        self.ranks = ranks
        self.is_main = ranks is None or ranks.is_main
        # Tasks of each meta-batch this process computes: positions of its share (all of them when alone).
        self.task_positions = range(config.meta.meta_batch) if ranks is None else ranks.share(config.meta.meta_batch)
        self.progress = progress and self.is_main
        self.output = config.output_path()
        meta = config.meta
        self.inner_steps = meta.inner_steps
        rule = config.rule.as_rule_dict()
        kind = config.data.task_kind
        self.objective = objective_for(kind)
        self.learner = Learner(
            config.backbone_config(), rule, head_init=config.model.head_init, task_kind=kind, seed=config.seed,
            proximal_lambda=meta.proximal_lambda,
        ).to(self.device)
        self.estimator = build_estimator(
            meta.estimator, self.learner, meta.inner_steps, options=meta.estimator_options, execution=meta.execution
        )
        self.trainable = {n: p for n, p in self.learner.named_parameters() if p.requires_grad}
        # Two groups so the rule's meta-parameters (ALFA's post-multipliers start at 0.01 and 5e-6) can move
        # more slowly than the backbone: one Adam step of 1e-3 is already a 10% change of a 0.01 rate.
        rule_params = [p for n, p in self.trainable.items() if n.startswith("rule.")]
        other_params = [p for n, p in self.trainable.items() if not n.startswith("rule.")]
        self.group_scales = []
        groups = []
        if other_params:
            groups.append({"params": other_params, "lr": meta.outer_lr})
            self.group_scales.append(1.0)
        if rule_params:
            rule_lr = meta.rule_outer_lr if meta.rule_outer_lr is not None else meta.outer_lr
            groups.append({"params": rule_params, "lr": rule_lr})
            self.group_scales.append(rule_lr / meta.outer_lr)
        # meta.outer_step (core.meta.outer_step): Adam unless the config says otherwise
        self.outer_step = choose_outer_step(meta.outer_step, meta.outer_step_options, meta.grad_clip).build(
            groups, lr=meta.outer_lr
        )
        self.optimizer = self.outer_step.optimizer
        self.skipped_steps = 0
        self.iteration = 0
        self.best_score: float | None = None
        self.wall_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.pretraining: PretrainingRecord | None = None
        self.train_source = task_source(config, "train")
        self.val_source = task_source(config, "val")

    # ----- tasks -------------------------------------------------------------------------------------
    def tasks(self, iteration: int) -> list[Task]:
        """This process's tasks of iteration ``iteration``: the whole meta-batch alone, its share under torchrun."""
        first = iteration * self.config.meta.meta_batch
        return [self.train_source.task(first + t).to(self.device) for t in self.task_positions]

    # ----- one outer step ----------------------------------------------------------------------------
    def outer_lr(self, iteration: int) -> float:
        meta = self.config.meta
        if not meta.cosine_schedule:
            return meta.outer_lr
        progress = iteration / max(1, meta.iterations)
        return meta.min_outer_lr + 0.5 * (meta.outer_lr - meta.min_outer_lr) * (1 + math.cos(math.pi * progress))

    def step(self, iteration: int) -> dict[str, float]:
        meta = self.config.meta
        objective = LAST_STEP
        if meta.multi_step_loss:
            anneal = max(1, meta.multi_step_anneal_iterations)
            objective = QueryObjective.multi_step(self.inner_steps, iteration / anneal, self.device)
        self.learner.train()
        estimate = self.estimator.meta_grad(self.tasks(iteration), objective)
        if self.ranks is None:
            finite = all(bool(torch.isfinite(g).all()) for g in estimate.grads.values())
        else:
            estimate, nonfinite_ranks = all_reduce_meta_gradient(
                estimate, len(self.task_positions), meta.meta_batch
            )
            finite = nonfinite_ranks == 0  # the same count on every rank: all skip or none
        grads, diagnostics = estimate.grads, estimate.summary(self.objective.metric_name)
        if not finite:
            # An inner loop that blew up for one task must not poison the meta-parameters: skip, and count it.
            self.skipped_steps += 1
            diagnostics["skipped"] = float(self.skipped_steps)
            return diagnostics
        for name, param in self.trainable.items():
            param.grad = grads[name]
        for group, scale in zip(self.outer_step.param_groups, self.group_scales):
            group["lr"] = self.outer_lr(iteration) * scale
        diagnostics.update(self.outer_step.step())  # grad_norm (before clipping) when it clips
        self.outer_step.zero_grad(set_to_none=True)
        return diagnostics

    # ----- validation --------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        config = self.config
        episodes = config.validation.episodes
        if episodes < 1:
            return None
        if self.val_source is None:
            return None
        result = self.val_source.evaluate(self.learner, episodes, config.meta.eval_inner_steps, seed=config.seed + 10_000)
        score = result.mean if self.objective.higher_is_better else -result.mean
        return {"metric": result.metric, "mean": result.mean, "ci95": result.ci95, "score": score}

    # ----- files -------------------------------------------------------------------------------------
    def checkpoint_metadata(self, validation: dict[str, Any] | None) -> CheckpointMetadata:
        """What a deployable checkpoint of this run records (``core.checkpoint.CheckpointMetadata``)."""
        config = self.config
        data = config.data
        # Only an image classifier has an image preprocessing and a class count per episode.
        classifier = self.learner.task_kind == "classification"
        training = TrainingRecord(
            command=self.command,
            config=config.to_dict(),
            data=TrainingData(kind=data.kind, root=str(data.root) if data.root else None, train=tuple(data.train),
                              val=tuple(data.val), test=tuple(data.test), rotations=tuple(data.rotations)),
            iterations=self.iteration,
            tasks_seen=self.iteration * config.meta.meta_batch,
            wall_seconds=round(self.wall_seconds, 1),
            device=str(self.device),
            estimator=config.meta.estimator,
            skipped_nonfinite_steps=self.skipped_steps,
            pretraining=self.pretraining,
        )
        return learner_metadata(
            self.learner,
            name=config.name,
            description=config.description,
            image=image_spec(config) if classifier else None,
            n_way=config.task.n_way if classifier else None,
            inner_steps=InnerSteps(train=config.meta.inner_steps, eval=config.meta.eval_inner_steps),
            training=training,
            validation=None if validation is None else ValidationResult(
                metric=validation["metric"], mean=validation["mean"], ci95=validation["ci95"],
                score=validation["score"],
            ),
        )

    def save_state(self) -> None:
        if not self.is_main:
            return  # rank 0 writes the run's files
        progress = TrainingProgress(
            iteration=self.iteration, best_score=self.best_score, skipped_steps=self.skipped_steps,
            wall_seconds=self.wall_seconds, history=self.history, pretraining=self.pretraining,
            config=self.config.to_dict(),
        )
        write_state(self.output / "state.safetensors", {"learner": self.learner.state_dict()}, self.optimizer, progress)

    def load_state(self) -> bool:
        path = self.output / "state.safetensors"
        if not path.is_file():
            return False
        state = read_state(path, TRAINING_STATE, device=self.device)
        progress: TrainingProgress = state.progress
        saved, current = dict(progress.config), self.config.to_dict()
        # Changing the length of the run is what resuming is for; anything else would mix two experiments.
        for config in (saved, current):
            # Runs saved before a [meta] key existed did what its value for them says (ADDED_META_KEYS).
            meta = with_added_meta_keys(config.get("meta", {}))
            config["meta"] = {k: v for k, v in meta.items() if k != "iterations"}
            config.pop("validation", None)
            config.pop("checkpoint", None)
            # Where the data lives and whether it may be downloaded are facts of the machine, not the experiment.
            config["data"] = {k: v for k, v in config.get("data", {}).items() if k not in ("root", "download")}
            # Runs saved before data.augment existed trained without augmentation; and JSON gives its scale as a list.
            config["data"]["augment"] = AugmentConfig.from_table(config["data"].get("augment", {})).to_dict()
        if saved != current:
            changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise ValueError(
                f"{path} was written by a different config (differs in: {', '.join(changed)}); resume with the "
                "same config (only meta.iterations, data.root, data.download, [validation] and [checkpoint] may change), or choose another output_dir"
            )
        self.learner.load_state_dict(state.module("learner"))
        state.restore_optimizer(self.optimizer)
        self.iteration = progress.iteration
        self.best_score = progress.best_score
        self.skipped_steps = progress.skipped_steps
        self.wall_seconds = progress.wall_seconds
        self.history = list(progress.history)
        self.pretraining = progress.pretraining
        return True

    def start_from_pretrained(self) -> None:
        """Load the supervised pre-trained features (pre-training first when its file is missing)."""
        if not pretrained_path(self.config).is_file():
            Pretrainer(self.config, device=str(self.device), command=self.command, progress=self.progress).run()
        tensors, self.pretraining = load_pretrained(self.config, device=self.device)
        backbone = self.learner.backbone
        head = head_names(backbone)
        own = set(backbone.state_dict()) - {head.weight, head.bias}
        if set(tensors) != own:
            raise ValueError(f"{self.pretraining.file} does not hold this backbone's feature weights")
        with torch.no_grad():
            for name, tensor in backbone.state_dict().items():
                if name in tensors:
                    tensor.copy_(tensors[name])

    def share_state_from_main(self, failure: BaseException | None) -> None:
        """Under torchrun: every rank takes rank 0's meta-parameters, optimizer state and progress (what it resumed,
        pre-trained or initialised), or raises ``failure`` when rank 0 met one, so all ranks start from the same
        point and only rank 0 needs the output folder."""
        assert self.ranks is not None
        if self.is_main:
            payload: Any = failure if failure is not None else {
                "learner": _to_cpu(self.learner.state_dict()),
                "optimizer": _to_cpu(self.optimizer.state_dict()),
                "progress": (self.iteration, self.best_score, self.skipped_steps, self.wall_seconds, self.history,
                             self.pretraining),
            }
        else:
            payload = None
        received = broadcast_from_main(self.ranks, payload)
        if failure is not None:
            raise failure
        if not self.is_main:
            self.learner.load_state_dict(received["learner"])
            self.optimizer.load_state_dict(received["optimizer"])
            (self.iteration, self.best_score, self.skipped_steps, self.wall_seconds, self.history,
             self.pretraining) = received["progress"]

    def save_deployable(self, name: str, validation: dict[str, Any] | None) -> Path:
        dtype = torch.float16 if self.config.checkpoint.half_precision else None
        return save_learner(self.output / name, self.learner, self.checkpoint_metadata(validation), dtype=dtype)

    # ----- loop --------------------------------------------------------------------------------------
    def start(self, resume: bool) -> None:
        """Make the output folder, then resume its state, refuse to overwrite it, or pre-train (rank 0 only)."""
        self.output.mkdir(parents=True, exist_ok=True)
        if resume and self.load_state():
            print(f"resumed {self.output} at iteration {self.iteration}", file=sys.stderr)
        elif (self.output / "state.safetensors").exists() and not resume:
            raise FileExistsError(
                f"{self.output} already holds a training run; pass --resume to continue it or choose another output_dir"
            )
        elif self.config.pretrain.epochs:
            self.start_from_pretrained()

    def run(
        self,
        resume: bool = False,
        on_iteration: Callable[[int, int], None] | None = None,
        on_validation: Callable[[int, float], None] | None = None,
    ) -> dict[str, Any]:
        """Meta-train to ``meta.iterations``.

        ``on_iteration(done, total)`` is called after each outer iteration (and its checkpoint, when one is due);
        ``on_validation(iteration, score)`` after each validation, with the score best-checkpoint selection uses
        (higher is better: the accuracy, or minus the MSE). A job reports progress and a tuner prunes through them.
        If a callback raises, the resumable state is saved (as on Ctrl-C) and the exception re-raised unchanged.
        """
        config = self.config
        failure = None
        if self.is_main:
            try:
                self.start(resume)
            except Exception as error:
                if self.ranks is None:
                    raise
                failure = error
        if self.ranks is not None:
            self.share_state_from_main(failure)
        total = config.meta.iterations
        bar = tqdm(total=total, initial=self.iteration, desc=config.name, disable=not self.progress, dynamic_ncols=True)
        last_validation = self.history[-1]["validation"] if self.history else None

        def notify(callback: Callable[..., None], *arguments: Any) -> None:
            try:
                callback(*arguments)
            except KeyboardInterrupt:
                raise  # saved below, as any Ctrl-C
            except BaseException:
                # The caller stops the run (a cancelled job, a pruned trial): keep what it had, so it can resume.
                self.save_state()
                bar.write(f"stopped by the caller: state saved at iteration {self.iteration}", file=sys.stderr)
                raise

        try:
            while self.iteration < total:
                started = time.perf_counter()
                diagnostics = self.step(self.iteration)
                self.iteration += 1
                self.wall_seconds += time.perf_counter() - started
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in diagnostics.items()})
                if self.is_main and (self.iteration % config.validation.every == 0 or self.iteration == total):
                    started = time.perf_counter()
                    last_validation = self.validate()
                    self.wall_seconds += time.perf_counter() - started
                    record = {"iteration": self.iteration, "train": diagnostics, "validation": last_validation,
                              "wall_seconds": round(self.wall_seconds, 1)}
                    self.history.append(record)
                    with open(self.output / "history.jsonl", "a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    if last_validation is not None:
                        bar.write(f"[{self.iteration}] validation {last_validation['metric']} {last_validation['mean']:.4f} ± {last_validation['ci95']:.4f}", file=sys.stderr)
                        if self.best_score is None or last_validation["score"] > self.best_score:
                            self.best_score = last_validation["score"]
                            self.save_deployable("best.safetensors", last_validation)
                        if on_validation is not None:
                            notify(on_validation, self.iteration, float(last_validation["score"]))
                if self.is_main and (self.iteration % config.checkpoint.every == 0 or self.iteration == total):
                    self.save_deployable("last.safetensors", last_validation)
                    self.save_state()
                if on_iteration is not None:
                    notify(on_iteration, self.iteration, total)
        except KeyboardInterrupt:
            self.save_state()
            bar.write(f"interrupted: state saved at iteration {self.iteration}; continue with --resume", file=sys.stderr)
            raise
        finally:
            bar.close()
        if self.is_main and not (self.output / "best.safetensors").exists():
            self.save_deployable("best.safetensors", last_validation)
        if self.ranks is not None:
            barrier()  # every rank returns once rank 0's files are written: a finished rank means a finished run
        return {"iterations": self.iteration, "wall_seconds": self.wall_seconds, "best_score": self.best_score,
                "output": str(self.output)}


def _to_cpu(value: Any) -> Any:
    """``value`` (a state dict: nested dicts and lists) with its tensors on the CPU, to send to other ranks."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
