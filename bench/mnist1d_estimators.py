"""MNIST-1D few-shot, every meta-gradient estimator (issue 14; the revised FO-B-MAML paper's experiment, Chayti and
Jaggi): the 1-D CNN of ``configs/mnist1d/conv1d_<estimator>.toml`` meta-trained on digits 0-4 with each estimator
for the same number of iterations on the same proximal inner problem, validation accuracy recorded against the
seconds spent in meta-training steps, then held-out accuracy on digits 5-9 (5-way 1-shot and 5-way 5-shot, 600
episodes, 95% interval). The protocol is ``core/data/mnist1d.py``'s.

    OMP_NUM_THREADS=1 python bench/mnist1d_estimators.py                  # every estimator (about 35 minutes on a shared core)
    OMP_NUM_THREADS=1 python bench/mnist1d_estimators.py --estimators maml fo_b_maml --iterations 20

Each run goes through ``core.train.Trainer``'s own step (the estimator, the outer step), one thread. The curve's
``seconds`` count meta-training steps only: validation is paused out of the clock, as in ``Trainer.run``. Every
estimator's held-out episodes are the same (the same sampler seed), so the rows are paired. The models evaluated are
the final ones (no selection on validation), each adapting with its config's ``eval_inner_steps`` on the proximal
problem it was trained on. The json is rewritten after each estimator, so a stopped run keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch

from core.config import TrainConfig, load_config
from core.data.factory import build_image_set
from core.evaluate import evaluate_classification
from core.train import Trainer

ESTIMATORS = ("maml", "fomaml", "reptile", "imaml", "fo_b_maml", "fo_b_maml_sym")
HELD_OUT_SHOTS = (1, 5)
HELD_OUT_QUERIES = 15
VALIDATION_SEED_OFFSET = 10_000  # Trainer.validate's seed: validation episodes are not training episodes
TEST_SEED = 2024  # one held-out episode stream for every estimator


def config_for(estimator: str, iterations: int | None) -> TrainConfig:
    config = load_config(ROOT / "configs" / "mnist1d" / f"conv1d_{estimator}.toml")
    if iterations is not None:
        config.meta.iterations = iterations
    return config


def protocol_text(config: TrainConfig) -> str:
    meta, task = config.meta, config.task
    return (
        "MNIST-1D generated locally (mnist1d.data.make_dataset, seed 42, 1000 signals per digit, length 40); "
        "meta-train on digits 0-4, validation on the first 200 signals of each digit 5-9, test on the other 800; "
        f"training episodes {task.n_way}-way {task.k_shot}-shot {task.n_query} queries per class, labels permuted per "
        f"episode; conv1d {config.model.backbone}; sgd inner rule lr {config.rule.options.lr}, "
        f"{meta.inner_steps} inner steps ({meta.eval_inner_steps} at evaluation) on support loss + "
        f"{meta.proximal_lambda:g}/2 ||y - x||^2; meta-batch {meta.meta_batch}, {meta.outer_step} outer step "
        f"lr {meta.outer_lr:g}; held-out 5-way {HELD_OUT_QUERIES} queries per class; final model"
    )


def run_estimator(estimator: str, iterations: int | None, episodes: int, validation_episodes: int | None) -> dict:
    """Meta-train one estimator, recording validation accuracy against training seconds, then score held-out tasks."""
    config = config_for(estimator, iterations)
    trainer = Trainer(config, device="cpu", progress=False)
    total, every = config.meta.iterations, config.validation.every
    val_episodes = validation_episodes or config.validation.episodes
    steps = config.meta.eval_inner_steps

    def validate(iteration: int, seconds: float) -> dict:
        result = trainer.val_source.evaluate(
            trainer.learner, val_episodes, steps, seed=config.seed + VALIDATION_SEED_OFFSET
        )
        print(f"  {estimator} iteration {iteration:4d} at {seconds:7.1f} s: validation {result.mean:.4f}", flush=True)
        return {
            "estimator": estimator,
            "iteration": iteration,
            "seconds": round(seconds, 3),
            "val_accuracy": result.mean,
        }

    curve = [validate(0, 0.0)]
    train_seconds, skipped = 0.0, 0
    for iteration in range(total):
        started = time.perf_counter()
        diagnostics = trainer.step(iteration)
        train_seconds += time.perf_counter() - started
        skipped = int(diagnostics.get("skipped", skipped))
        if (iteration + 1) % every == 0 or iteration + 1 == total:
            curve.append(validate(iteration + 1, train_seconds))
    test_set = build_image_set(config, "test")
    rows = []
    for shot in HELD_OUT_SHOTS:
        result = evaluate_classification(
            trainer.learner,
            test_set,
            config.task.n_way,
            shot,
            HELD_OUT_QUERIES,
            episodes,
            steps,
            seed=TEST_SEED,
            progress=False,
        )
        print(f"  {estimator} held-out 5-way {shot}-shot: {result.mean:.4f} ± {result.ci95:.4f}", flush=True)
        rows.append(
            {
                "estimator": estimator,
                "way": config.task.n_way,
                "shot": shot,
                "accuracy": result.mean,
                "ci95": result.ci95,
                "episodes": episodes,
                "train_seconds": round(train_seconds, 3),
                "iterations": total,
                "seconds_per_iteration": round(train_seconds / total, 4),
                "skipped_nonfinite_steps": skipped,
                "config": f"configs/mnist1d/conv1d_{estimator}.toml",
            }
        )
    return {"rows": rows, "curves": curve, "protocol": protocol_text(config)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    parser.add_argument("--iterations", type=int, default=None, help="meta-iterations (default: the configs')")
    parser.add_argument("--episodes", type=int, default=600, help="held-out episodes per setting")
    parser.add_argument("--validation-episodes", type=int, default=None, help="default: the configs'")
    parser.add_argument("--cpu-note", default="", help="what else ran on the machine (recorded in the json)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mnist1d_estimators.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = " ".join(
        [
            "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset"),
            "python",
            "bench/mnist1d_estimators.py",
            *map(shlex.quote, sys.argv[1:] if argv is None else argv),
        ]
    )
    report = {
        "command": command,
        "protocol": "",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "cpu_note": args.cpu_note,
        "rows": [],
        "curves": [],
    }
    for estimator in args.estimators:
        print(f"{estimator}: meta-training", flush=True)
        result = run_estimator(estimator, args.iterations, args.episodes, args.validation_episodes)
        report["protocol"] = result["protocol"]
        report["rows"] += result["rows"]
        report["curves"] += result["curves"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
