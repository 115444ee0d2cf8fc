"""Seconds per meta-training iteration and per single-episode adaptation, Conv4 and ResNet12.

Each case runs in its own subprocess so its peak resident memory (ru_maxrss) is its own. Synthetic images
of the right shape are used: speed does not depend on pixel values. Prints a table and writes JSON.

    python bench/engine_speed.py                 # all default cases
    python bench/engine_speed.py --quick         # fewer repeats
    python bench/engine_speed.py --cases conv4-omniglot-train-2nd resnet12-84-adapt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONV4_28 = {"name": "conv4", "in_channels": 1, "image_size": 28, "filters": 64}
CONV4_84 = {"name": "conv4", "in_channels": 3, "image_size": 84, "filters": 48}
RESNET12_28 = {"name": "resnet12", "in_channels": 1, "image_size": 28, "widths": [64, 128, 256, 512]}
RESNET12_84 = {"name": "resnet12", "in_channels": 3, "image_size": 84, "widths": [64, 128, 256, 512]}

# name: (kind, backbone, n_way, k_shot, n_query, steps, meta_batch, second_order, rule)
CASES = {
    "conv4-omniglot-train-2nd": ("train", CONV4_28, 5, 1, 15, 5, 4, True, "alfa"),
    "conv4-omniglot-train-2nd-maml": ("train", CONV4_28, 5, 1, 15, 5, 4, True, "sgd"),
    "conv4-84-train-2nd": ("train", CONV4_84, 5, 5, 15, 5, 2, True, "alfa"),
    "resnet12-omniglot-train-1st": ("train", RESNET12_28, 5, 1, 15, 5, 2, False, "alfa"),
    "resnet12-omniglot-train-2nd": ("train", RESNET12_28, 5, 1, 15, 5, 2, True, "alfa"),
    "conv4-omniglot-adapt": ("adapt", CONV4_28, 5, 1, 15, 5, 1, False, "alfa"),
    "conv4-omniglot-adapt-5shot": ("adapt", CONV4_28, 5, 5, 15, 5, 1, False, "alfa"),
    "conv4-84-adapt": ("adapt", CONV4_84, 5, 5, 15, 5, 1, False, "alfa"),
    "resnet12-omniglot-adapt": ("adapt", RESNET12_28, 5, 1, 15, 5, 1, False, "alfa"),
    "resnet12-84-adapt": ("adapt", RESNET12_84, 5, 5, 15, 5, 1, False, "alfa"),
}


def run_case(name: str, repeats: int) -> dict:
    import torch

    from core.adapt import adapt
    from core.config import RuleConfig
    from core.data.episode import Episode
    from core.device import pick_device
    from core.learner import Learner
    from core.meta.maml import MAMLGradient, Task

    kind, backbone, n_way, k_shot, n_query, steps, meta_batch, second_order, rule = CASES[name]
    device = pick_device()
    torch.manual_seed(0)
    rule_config = RuleConfig(name=rule, lr=0.1).as_rule_dict(steps)
    learner = Learner({**backbone, "n_classes": n_way}, rule_config).to(device)
    c, s = backbone["in_channels"], backbone["image_size"]

    def task():
        support = torch.randn(n_way * k_shot, c, s, s, device=device)
        query = torch.randn(n_way * n_query, c, s, s, device=device)
        labels_s = torch.arange(n_way, device=device).repeat_interleave(k_shot)
        labels_q = torch.arange(n_way, device=device).repeat_interleave(n_query)
        return support, labels_s, query, labels_q

    times = []
    if kind == "train":
        estimator = MAMLGradient(learner, steps, second_order=second_order)
        tasks = [Task(*task(), n_classes=n_way) for _ in range(meta_batch)]
        for i in range(repeats + 1):
            started = time.perf_counter()
            estimator.meta_grad(tasks)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first run warms up allocators and kernels
                times.append(time.perf_counter() - started)
    else:
        support, labels_s, query, labels_q = task()
        episode = Episode(support, labels_s, query, labels_q, [str(k) for k in range(n_way)])
        for i in range(repeats + 1):
            result = adapt(learner, episode, steps=steps)
            if i:
                times.append(result.seconds)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    median = statistics.median(times)
    return {
        "case": name, "kind": kind, "backbone": backbone["name"], "image_size": s, "n_way": n_way, "k_shot": k_shot,
        "n_query": n_query, "steps": steps, "meta_batch": meta_batch, "second_order": second_order, "rule": rule,
        "device": str(device), "repeats": repeats, "median_s": median, "min_s": min(times),
        "per_task_s": median / meta_batch if kind == "train" else median,
        "tasks_per_s": meta_batch / median if kind == "train" else None, "peak_rss_mb": round(peak_mb),
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--out", default="bench/results/engine_speed.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    if args.one:
        print(json.dumps(run_case(args.one, repeats)))
        return 0
    rows = []
    for name in args.cases:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--repeats", str(repeats)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        shape = f"{row['backbone']} {row['image_size']}px {row['n_way']}w{row['k_shot']}s q{row['n_query']} {row['steps']} steps"
        if row["kind"] == "train":
            order = "2nd" if row["second_order"] else "1st"
            print(f"{name:32s} {shape:42s} meta-iter ({row['meta_batch']} tasks, {order}, {row['rule']}): "
                  f"{row['median_s']:.3f} s  ({row['tasks_per_s']:.2f} tasks/s)  peak {row['peak_rss_mb']} MB", flush=True)
        else:
            print(f"{name:32s} {shape:42s} adapt one episode ({row['rule']}): {row['median_s']:.3f} s  peak {row['peak_rss_mb']} MB", flush=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(), "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
