"""Why a shipped ALFA checkpoint adapted with ALFA can lose to plain SGD from the same weights: its generated weight
decay. ALFA's update (seed 001, eq. 5) is ``theta <- (1 - beta_j) theta - alpha_j grad``; this measures the same
checkpoint with ``beta`` switched off (``beta0 = 0``, so ``1 - beta = 1`` at every step and layer, the generated
rates ``alpha`` untouched), under the shipped protocol, next to the ALFA and SGD figures its metadata records for the
same episodes.

The held-out protocol is the shipped tables' (``core.packaging``: 15 queries per class, episode seed 12345, the
checkpoint's eval inner steps and default head). Rows are appended to ``--out`` as soon as they are measured; rows
already there for the same file (sha256), setting and episode count are skipped.

    OMP_NUM_THREADS=1 python bench/alfa_shrink.py [--checkpoint F] [--setting 5,5 --setting 20,1] [--episodes 600]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core.adapt import default_head_init
from core.checkpoint import file_sha256, load_learner, read_metadata
from core.config import config_from_dict
from core.data.factory import build_image_set
from core.evaluate import evaluate_classification
from core.packaging import EVAL_SEED, N_QUERY
from core.rules.alfa import ALFARule

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "assets" / "checkpoints" / "resnet12_alfa_maml.safetensors"


def recorded(metadata, rule: str, way: int, shot: int) -> str:
    row = next((r for r in metadata.heldout.results
                if (r.rule, r.way, r.shot, r.protocol) == (rule, way, shot, "any-classes")), None)
    return "not recorded" if row is None else f"{100 * row.accuracy:.2f} ± {100 * row.ci95:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT)
    parser.add_argument("--setting", action="append", default=None, help="WAY,SHOT (repeatable; default 5,5 and 20,1)")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "alfa_shrink.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = [tuple(int(v) for v in s.split(",")) for s in (args.setting or ["5,5", "20,1"])]
    sha256 = file_sha256(args.checkpoint)
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["sha256"], row["n_way"], row["k_shot"], row["episodes"]))
    metadata = read_metadata(args.checkpoint)
    config = config_from_dict(dict(metadata.training.config))
    test_set = build_image_set(config, "test")
    learner, _ = load_learner(args.checkpoint)
    if not isinstance(learner.rule, ALFARule):
        raise SystemExit(f"{args.checkpoint} was meta-trained with {learner.rule.name}, not ALFA")
    with torch.no_grad():
        learner.rule.beta0.zero_()  # 1 - beta_tilde * beta0 = 1: no decay, whatever the generator says
    for way, shot in settings:
        if (sha256, way, shot, args.episodes) in done:
            print(f"{args.checkpoint.name} {way}-way {shot}-shot: already in {args.out.name}")
            continue
        result = evaluate_classification(
            learner, test_set, way, shot, N_QUERY, args.episodes, metadata.inner_steps.eval, seed=EVAL_SEED,
            head_init=default_head_init(learner, way), progress=False,
        )
        row = {"checkpoint": args.checkpoint.name, "sha256": sha256, "variant": "alfa without decay (beta0 = 0)",
               **result.to_dict(), "threads": torch.get_num_threads()}
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"{args.checkpoint.name} {way}-way {shot}-shot: ALFA without decay {result.summary()}; recorded ALFA "
              f"{recorded(metadata, 'alfa', way, shot)}, SGD {recorded(metadata, 'sgd', way, shot)} "
              f"({result.seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
