"""Meta-gradient estimators on the shipped Omniglot Conv4 recipe: cost per outer iteration and held-out accuracy.

    OMP_NUM_THREADS=1 python bench/omniglot_estimators.py cost       # seconds per iteration and peak memory
    OMP_NUM_THREADS=1 python bench/omniglot_estimators.py heldout    # 600-episode held-out rows of trained files

Both write into ``bench/results/omniglot_estimators.json`` (``cost`` and ``rows``; each run replaces its own part).

The configurations (``configs/omniglot/``): ``conv4_maml`` is the shipped recipe (second-order MAML on the plain
support loss, 5 inner steps). The others solve the proximal inner problem (support loss + lambda/2 ||y - x||^2,
lambda = 1, the recipe's 5 inner steps; shared/reference.md, "The bilevel view"), so FO-B-MAML and iMAML, which need
it, are compared with second-order MAML on the same objective (``conv4_maml_proximal``), each for 200 outer
iterations (the shipped recipe's 1,500 did not fit the CPU time at hand: FO-B-MAML's inner steps also run the
query set, 30 images a step instead of 5).

cost: each configuration in its own subprocess (so ``ru_maxrss`` is its own): the Trainer is built from the config,
``WARMUP + REPEATS`` real meta-batches are drawn first (reading Omniglot is not the estimator's cost), then the
estimator's ``meta_grad`` is timed on each; ``peak_rss_mb`` is the process's peak, ``peak_extra_mb`` the peak
minus the resident size just before the first meta-gradient. On CUDA the allocator's peak is recorded too.

heldout: every trained ``best.safetensors`` among the configurations, adapted with the rule and inner steps it was
trained with, on the held-out alphabets (Japanese_(katakana), Tagalog): 5-way 1-shot, 5-way 5-shot and 20-way
1-shot, 15 queries, 600 episodes, seed 12345 (the shipped protocol of README's tables), mean and 95% CI.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULT = ROOT / "bench" / "results" / "omniglot_estimators.json"
CONFIGS = {
    "maml": "configs/omniglot/conv4_maml.toml",
    "maml_proximal": "configs/omniglot/conv4_maml_proximal.toml",
    "fo_b_maml_sym": "configs/omniglot/conv4_fo_b_maml_sym.toml",
    "imaml": "configs/omniglot/conv4_imaml.toml",
}
PROTOCOLS = ((5, 1), (5, 5), (20, 1))
EPISODES, QUERY, SEED = 600, 15, 12345
WARMUP, REPEATS = 2, 10


def measure_cost(config_path: str, repeats: int = REPEATS, warmup: int = WARMUP) -> dict:
    """Seconds per meta-gradient and peak memory of one configuration, in this process (call it in a fresh one)."""
    import torch

    from core.config import load_config
    from core.meta.estimator import LAST_STEP
    from core.train import Trainer

    config = load_config(config_path)
    trainer = Trainer(config, progress=False)
    batches = [trainer.tasks(i) for i in range(warmup + repeats)]
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    resident_before_mb = _resident_mb()
    times = []
    for index, tasks in enumerate(batches):
        started = time.perf_counter()
        estimate = trainer.estimator.meta_grad(tasks, LAST_STEP)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - started)
        if not all(bool(torch.isfinite(g).all()) for g in estimate.grads.values()):
            raise RuntimeError(f"{config_path}: a meta-gradient that is not finite")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = config.meta
    row = {
        "config": config_path, "estimator": meta.estimator, "estimator_options": meta.estimator_options,
        "proximal_lambda": meta.proximal_lambda, "inner_steps": meta.inner_steps, "meta_batch": meta.meta_batch,
        "way": config.task.n_way, "shot": config.task.k_shot, "query": config.task.n_query,
        "seconds_per_iteration": statistics.median(times), "min_seconds": min(times), "repeats": len(times),
        "peak_rss_mb": round(peak_mb, 1), "peak_extra_mb": round(peak_mb - resident_before_mb, 1),
        "device": str(trainer.device), "threads": torch.get_num_threads(),
    }
    if trainer.device.type == "cuda":
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def _resident_mb() -> float:
    """The process's resident size now (Linux /proc), the baseline that ``peak_extra_mb`` is measured from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: the peak above the baseline needs Linux")


def run_cost(names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "_cost_case", CONFIGS[name]], capture_output=True, text=True, cwd=ROOT
        )
        if out.returncode != 0:
            raise SystemExit(f"{name}: the cost case failed:\n{out.stderr.strip()[-2000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["name"] = name
        row["command"] = f"OMP_NUM_THREADS=1 python bench/omniglot_estimators.py cost --only {name}"
        rows.append(row)
        print(f"{name:16s} {row['seconds_per_iteration']:.3f} s/iteration, peak {row['peak_rss_mb']:.0f} MB "
              f"(+{row['peak_extra_mb']:.0f} MB over the resident size before the first meta-gradient)")
    return rows


def run_heldout(names: list[str]) -> list[dict]:
    from core.checkpoint import load_learner
    from core.config import load_config
    from core.data.factory import build_image_set
    from core.device import pick_device
    from core.evaluate import evaluate_classification

    device = pick_device(None)
    rows = []
    for name in names:
        config = load_config(CONFIGS[name])
        checkpoint = ROOT / config.output_dir / "best.safetensors"
        if not checkpoint.exists():
            print(f"{name}: {checkpoint} is not trained yet: python -m core train --config {CONFIGS[name]}")
            continue
        learner, metadata = load_learner(checkpoint, device=device)
        image_set = build_image_set(config, "test")
        for way, shot in PROTOCOLS:
            started = time.perf_counter()
            result = evaluate_classification(
                learner, image_set, way, shot, QUERY, EPISODES, metadata.inner_steps.eval, seed=SEED, progress=False
            )
            row = {
                "name": name, "estimator": config.meta.estimator, "checkpoint": str(checkpoint.relative_to(ROOT)),
                "way": way, "shot": shot, "protocol": "any-classes", "accuracy": result.mean,
                "ci95": result.ci95, "episodes": EPISODES, "steps": result.steps, "head_init": result.head_init,
                "proximal_lambda": config.meta.proximal_lambda, "seconds": round(time.perf_counter() - started, 1),
                "command": f"OMP_NUM_THREADS=1 python bench/omniglot_estimators.py heldout --only {name}",
            }
            rows.append(row)
            print(f"{name:16s} {way}-way {shot}-shot: {100 * row['accuracy']:.2f} ± {100 * row['ci95']:.2f}")
    return rows


def _merge(part: str, rows: list[dict]) -> None:
    """Replace this part's rows of the same configurations, keep every other row."""
    data = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    names = {row["name"] for row in rows}
    kept = [row for row in data.get(part, []) if row.get("name") not in names]
    data[part] = kept + rows
    data.setdefault("rows", [])
    data.setdefault("cost", [])
    RESULT.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {RESULT.relative_to(ROOT)}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_cost_case":
        print(json.dumps(measure_cost(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("cost", "heldout"))
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), default=sorted(CONFIGS))
    args = parser.parse_args()
    if args.part == "cost":
        _merge("cost", run_cost(args.only))
    else:
        _merge("rows", run_heldout(args.only))


if __name__ == "__main__":
    main()
