"""Frozen-schedule ablation (after ALFA's Table 6) for ALFA checkpoints: the real generator against the same generator
reading its mean learning state over training episodes, on the same held-out episodes (``core.schedule_ablation``).

The held-out protocol is the shipped tables' (``core.packaging``: 15 queries per class, episode seed 12345, the
checkpoint's eval inner steps and default head). Each row is appended to ``--out`` as soon as it is measured, and
rows already there for the same file (sha256) and setting are skipped, so an interrupted run continues.

    OMP_NUM_THREADS=1 python bench/alfa_ablation.py [--checkpoint F ...] [--setting 5,1 --setting 20,1] \
        [--episodes 600] [--out bench/results/alfa_ablation.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import file_sha256, load_learner, read_metadata
from core.config import config_from_dict
from core.data.factory import build_image_set
from core.packaging import EVAL_SEED, N_QUERY
from core.schedule_ablation import frozen_schedule_ablation

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("resnet12_alfa_maml", "conv4_alfa_maml", "conv4_alfa_random", "resnet12_alfa_random")
CALIBRATION_SEED = 1  # training episodes for the mean learning state: another stream than training's seed 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", type=Path,
                        help="a .safetensors file (repeatable; default: the four shipped ALFA checkpoints)")
    parser.add_argument("--setting", action="append", default=None, help="WAY,SHOT (repeatable; default 5,1)")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--calibration-episodes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "alfa_ablation.jsonl")
    args = parser.parse_args()
    paths = args.checkpoint or [REPO / "assets" / "checkpoints" / f"{name}.safetensors" for name in SHIPPED]
    settings = [tuple(int(v) for v in s.split(",")) for s in (args.setting or ["5,1"])]
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["sha256"], row["n_way"], row["k_shot"], row["episodes"]))
    for path in paths:
        sha256 = file_sha256(path)
        metadata = read_metadata(path)
        config = config_from_dict(dict(metadata.training.config))
        train_set, test_set = build_image_set(config, "train"), build_image_set(config, "test")
        learner, _ = load_learner(path)
        for way, shot in settings:
            if (sha256, way, shot, args.episodes) in done:
                print(f"{path.name} {way}-way {shot}-shot: already in {args.out.name}")
                continue
            result = frozen_schedule_ablation(
                learner, train_set, test_set, way, shot, N_QUERY, metadata.inner_steps.eval,
                episodes=args.episodes, calibration_episodes=args.calibration_episodes, seed=EVAL_SEED,
                calibration_seed=CALIBRATION_SEED,
            )
            # A training run's best.safetensors is named by its run folder.
            name = f"{path.parent.name}/{path.stem}" if path.stem in ("best", "last") else path.stem
            row = {"checkpoint": name, "file": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
                   "sha256": sha256, "rule": learner.rule.name, **result.to_dict()}
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"{path.name} {way}-way {shot}-shot: real {100 * result.real:.2f} ± {100 * result.real_ci95:.2f}, "
                  f"frozen {100 * result.frozen:.2f} ± {100 * result.frozen_ci95:.2f}, difference "
                  f"{100 * result.difference:+.2f} ± {100 * result.difference_ci95:.2f} points "
                  f"({result.episodes_changed} of {result.episodes} episodes changed), {result.seconds:.0f} s")


if __name__ == "__main__":
    main()
