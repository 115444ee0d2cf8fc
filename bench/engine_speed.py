"""The engine's speed and memory: adaptation latency, meta-training throughput, vmap against the loop,
evaluation throughput. Each case runs in its own subprocess, so its peak resident memory (ru_maxrss) is its own.

Synthetic images of the right shape are used (speed does not depend on pixel values). Prints a table, checks
the targets of issue 4 and writes JSON.

    python bench/engine_speed.py                          # every group (about 40 minutes on 2 idle CPU cores)
    python bench/engine_speed.py --groups latency eval    # some groups
    python bench/engine_speed.py --cases conv4-84-train-2nd --repeats 2
    python bench/engine_speed.py --threads 1              # one intra-op thread per case
    python bench/engine_speed.py --device cuda            # on the GPU (default: $FEWSHOT_DEVICE, else auto)
    FEWSHOT_TUNE_MALLOC=0 python bench/engine_speed.py    # glibc's default allocator (see core.device)

Groups:
- latency: one episode's adaptation (the first-order evaluation path, no meta-graph), 5-way 1- and 5-shot, Conv4
  and the shipped ResNet12 on Omniglot-sized images, every rule; plus the 84x84 paper configurations;
- train: seconds per meta-iteration, tasks per second and peak memory for the ALFA paper's configurations
  (84x84 5-way 5-shot, 15 queries, meta-batch 2, 5 steps, second order) and for the shipped Omniglot recipes;
- vmap: the same meta-batch through the per-task loop (reference) and under ``torch.func.vmap``, with the
  speed-up and the largest difference between the two meta-gradients;
- eval: evaluation throughput, episodes per second of the 600-episode protocol's loop.
"""

from __future__ import annotations

import argparse
import copy
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
CONV4_84 = {"name": "conv4", "in_channels": 3, "image_size": 84, "filters": 48}  # ALFA paper's 4-CONV (48 filters)
RESNET12_28 = {"name": "resnet12", "in_channels": 1, "image_size": 28, "widths": [32, 64, 128, 256]}  # shipped
RESNET12_84 = {"name": "resnet12", "in_channels": 3, "image_size": 84, "widths": [64, 128, 256, 512]}  # paper
# The registered rules, spelled out: core.rules imports torch, which must wait until the allocator is tuned.
RULES = ("sgd", "per_step", "meta_sgd", "alfa", "alfa_random", "anil")


def _case(kind, backbone, n_way, k_shot, n_query, steps=5, meta_batch=1, second_order=False, rule="alfa",
          head="learned", group=None, recompute=False, max_repeats=None):
    return {"kind": kind, "backbone": backbone, "n_way": n_way, "k_shot": k_shot, "n_query": n_query,
            "steps": steps, "meta_batch": meta_batch, "second_order": second_order, "rule": rule, "head": head,
            "group": group or kind, "recompute": recompute, "max_repeats": max_repeats}


CASES: dict[str, dict] = {}
for _rule in RULES:
    for _shot in (1, 5):
        CASES[f"conv4-omniglot-adapt-{_shot}shot-{_rule}"] = _case("adapt", CONV4_28, 5, _shot, 15, rule=_rule, group="latency")
        CASES[f"resnet12-omniglot-adapt-{_shot}shot-{_rule}"] = _case("adapt", RESNET12_28, 5, _shot, 15, rule=_rule, group="latency")
CASES["conv4-84-adapt-5shot-alfa"] = _case("adapt", CONV4_84, 5, 5, 15, group="latency")
CASES["resnet12-84-adapt-5shot-alfa"] = _case("adapt", RESNET12_84, 5, 5, 15, group="latency")
CASES["resnet12-84-adapt-5shot-sgd"] = _case("adapt", RESNET12_84, 5, 5, 15, rule="sgd", group="latency")
# Meta-training: the paper's configurations, then the shipped Omniglot recipes (configs/omniglot/*.toml).
CASES["conv4-84-train-2nd"] = _case("train", CONV4_84, 5, 5, 15, meta_batch=2, second_order=True)
CASES["conv4-84-train-2nd-maml"] = _case("train", CONV4_84, 5, 5, 15, meta_batch=2, second_order=True, rule="sgd")
# Minutes per ResNet12 84x84 iteration: one timed run after the warm-up.
CASES["resnet12-84-train-2nd"] = _case("train", RESNET12_84, 5, 5, 15, meta_batch=2, second_order=True, recompute=True,
                                       max_repeats=1)
CASES["conv4-84-train-2nd-recompute"] = _case("train", CONV4_84, 5, 5, 15, meta_batch=2, second_order=True, recompute=True)
CASES["resnet12-84-train-1st"] = _case("train", RESNET12_84, 5, 5, 15, meta_batch=2, second_order=False, max_repeats=1)
CASES["conv4-omniglot-recipe-alfa"] = _case("train", CONV4_28, 5, 1, 5, meta_batch=4, second_order=True)
CASES["conv4-omniglot-recipe-maml"] = _case("train", CONV4_28, 5, 1, 5, meta_batch=4, second_order=True, rule="sgd")
CASES["resnet12-omniglot-recipe-alfa"] = _case("train", RESNET12_28, 5, 1, 5, meta_batch=4, second_order=True, head="zero")
CASES["resnet12-omniglot-recipe-maml"] = _case("train", RESNET12_28, 5, 1, 5, meta_batch=4, second_order=True, rule="sgd", head="zero")
CASES["resnet12-omniglot-recipe-alfa_random"] = _case("train", RESNET12_28, 5, 1, 5, meta_batch=4, second_order=True, rule="alfa_random", head="zero")
# vmap against the loop (same tasks, same meta-gradient).
CASES["vmap-conv4-omniglot-2nd"] = _case("vmap", CONV4_28, 5, 1, 15, meta_batch=4, second_order=True)
CASES["vmap-conv4-84-2nd"] = _case("vmap", CONV4_84, 5, 5, 15, meta_batch=2, second_order=True)
CASES["vmap-resnet12-omniglot-2nd"] = _case("vmap", RESNET12_28, 5, 1, 5, meta_batch=4, second_order=True, head="zero")
# Evaluation throughput: the protocol's loop over episodes (5-way, 15 queries per class).
CASES["eval-conv4-omniglot-1shot-alfa"] = _case("eval", CONV4_28, 5, 1, 15)
CASES["eval-conv4-omniglot-5shot-alfa"] = _case("eval", CONV4_28, 5, 5, 15)
CASES["eval-resnet12-omniglot-1shot-alfa"] = _case("eval", RESNET12_28, 5, 1, 15, head="zero")
CASES["eval-resnet12-omniglot-20way-alfa"] = _case("eval", RESNET12_28, 20, 1, 15, head="zero")

GROUPS = ("latency", "train", "vmap", "eval")

# Issue 4's targets on this machine: (case, field, limit, "max" or "min", what the number is compared with).
TARGETS = [
    ("conv4-84-train-2nd", "tasks_per_s", 0.85, "min", "3x the authors' 0.28 tasks/s"),
    ("conv4-84-train-2nd", "peak_rss_mb", 2250, "max", "half the authors' 4.4 GB"),
    ("conv4-84-train-2nd-recompute", "tasks_per_s", 0.85, "min", "3x the authors' 0.28 tasks/s"),
    ("conv4-84-train-2nd-recompute", "peak_rss_mb", 2250, "max", "half the authors' 4.4 GB"),
    ("resnet12-84-train-2nd", "peak_rss_mb", 12 * 1024, "max", "12 GB (the authors' code ran out of memory)"),
    ("resnet12-84-adapt-5shot-alfa", "median_s", 8.0, "max", "8 s per 84x84 5-way 5-shot evaluation episode"),
    ("conv4-omniglot-adapt-1shot-alfa", "median_s", 0.3, "max", "0.3 s per Omniglot episode"),
]


def _synthetic_task(torch, case, device, generator):
    backbone, n_way = case["backbone"], case["n_way"]
    c, s = backbone["in_channels"], backbone["image_size"]
    support = torch.randn(n_way * case["k_shot"], c, s, s, generator=generator).to(device)
    query = torch.randn(n_way * case["n_query"], c, s, s, generator=generator).to(device)
    labels_s = torch.arange(n_way, device=device).repeat_interleave(case["k_shot"])
    labels_q = torch.arange(n_way, device=device).repeat_interleave(case["n_query"])
    return support, labels_s, query, labels_q


def run_case(name: str, repeats: int, device_name: str | None = None) -> dict:
    from core.device import tune_host_allocator

    allocator_tuned = tune_host_allocator()  # as the CLI does (FEWSHOT_TUNE_MALLOC=0 measures glibc's default)
    import torch

    from core.adapt import adapt
    from core.config import RuleConfig
    from core.data.task import Task
    from core.device import pick_device
    from core.learner import Learner
    from core.meta.estimator import build_estimator

    case = CASES[name]
    kind, n_way, steps = case["kind"], case["n_way"], case["steps"]
    repeats = min(repeats, case["max_repeats"] or repeats)
    device = pick_device(device_name)  # None: the FEWSHOT_DEVICE setting, else CUDA, MPS or the CPU
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    rule_config = RuleConfig.from_table({"name": case["rule"], "lr": 0.1}, inner_steps=steps).as_rule_dict()
    trained_way = 5
    learner = Learner({**case["backbone"], "n_classes": trained_way}, rule_config, head_init=case["head"]).to(device)

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn, count):
        times, value = [], None
        for i in range(count + 1):
            started = time.perf_counter()
            value = fn()
            synchronise()
            if i:  # the first run warms allocators and kernels up
                times.append(time.perf_counter() - started)
        return times, value

    row = {"case": name, **{k: v for k, v in case.items() if k != "backbone"}, "backbone": case["backbone"]["name"],
           "widths": case["backbone"].get("widths") or case["backbone"].get("filters"),
           "image_size": case["backbone"]["image_size"], "device": str(device), "repeats": repeats,
           "threads": torch.get_num_threads(), "allocator_tuned": allocator_tuned}
    names = [str(k) for k in range(n_way)]
    if kind in ("train", "vmap"):
        tasks = [Task(*_synthetic_task(torch, case, device, generator), class_names=names) for _ in range(case["meta_batch"])]
        estimator = "maml" if case["second_order"] else "fomaml"
        loop = build_estimator(estimator, learner, steps, execution="recompute" if case["recompute"] else "loop")
        times, estimate = timed(lambda: loop.meta_grad(tasks), repeats)
        grads = estimate.grads
        row.update(median_s=statistics.median(times), min_s=min(times))
        row["tasks_per_s"] = case["meta_batch"] / row["median_s"]
        if kind == "vmap":
            batched = build_estimator(estimator, learner, steps, execution="vmap")
            vtimes, vestimate = timed(lambda: batched.meta_grad(tasks), repeats)
            vgrads = vestimate.grads
            row.update(vmap_median_s=statistics.median(vtimes), speedup=row["median_s"] / statistics.median(vtimes))
            row["max_grad_difference"] = max(float((grads[k] - vgrads[k]).abs().max()) for k in grads)
            row["max_grad"] = max(float(g.abs().max()) for g in grads.values())
            # float32 rounding, amplified through 5 differentiated steps, can make the two differ visibly; the
            # same computation in float64 shows whether they are the same function (differences near 1e-15).
            learner64 = copy.deepcopy(learner).double()
            tasks64 = [Task(t.support_x.double(), t.support_y, t.query_x.double(), t.query_y,
                            class_names=names) for t in tasks]
            loop64 = build_estimator(estimator, learner64, steps).meta_grad(tasks64).grads
            vmap64 = build_estimator(estimator, learner64, steps, execution="vmap").meta_grad(tasks64).grads
            row["max_grad_difference_float64"] = max(float((loop64[k] - vmap64[k]).abs().max()) for k in loop64)
            # Each float32 result against its own float64 twin: the rounding error of this very computation on
            # this machine, which sets the tolerance of the float64 comparison (tests/bench/test_engine_speed.py).
            row["loop_float32_error"] = max(float((grads[k].double() - loop64[k]).abs().max()) for k in grads)
            row["vmap_float32_error"] = max(float((vgrads[k].double() - vmap64[k]).abs().max()) for k in vgrads)
    elif kind == "adapt":
        support, labels_s, query, labels_q = _synthetic_task(torch, case, device, generator)
        episode = Task(support, labels_s, query, labels_q, names)
        times, _ = timed(lambda: adapt(learner, episode, steps=steps), repeats)
        row.update(median_s=statistics.median(times), min_s=min(times))
    else:  # eval: a loop of episodes, as core.evaluate runs them
        episodes = [
            Task(*_synthetic_task(torch, case, device, generator), names)
            for _ in range(max(repeats, 1) * 4)
        ]
        adapt(learner, episodes[0], steps=steps)
        started = time.perf_counter()
        for episode in episodes:
            adapt(learner, episode, steps=steps)
        synchronise()
        seconds = time.perf_counter() - started
        row.update(episodes=len(episodes), seconds=seconds, episodes_per_s=len(episodes) / seconds,
                   median_s=seconds / len(episodes))
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if device.type == "cuda":
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def describe(row: dict) -> str:
    shape = f"{row['backbone']}{row['widths']} {row['image_size']}px {row['n_way']}w{row['k_shot']}s q{row['n_query']}"
    if row["kind"] == "train":
        order = ("2nd" if row["second_order"] else "1st") + (", recomputed" if row.get("recompute") else "")
        return (f"{row['case']:40s} {shape:44s} meta-iteration of {row['meta_batch']} ({order}, {row['rule']}): "
                f"{row['median_s']:.2f} s, {row['tasks_per_s']:.2f} tasks/s, peak {row['peak_rss_mb']} MB")
    if row["kind"] == "vmap":
        return (f"{row['case']:40s} {shape:44s} loop {row['median_s']:.2f} s, vmap {row['vmap_median_s']:.2f} s: "
                f"speed-up {row['speedup']:.2f}x, max |grad diff| {row['max_grad_difference']:.1e} "
                f"(float64: {row['max_grad_difference_float64']:.1e})")
    if row["kind"] == "eval":
        return f"{row['case']:40s} {shape:44s} {row['episodes_per_s']:.2f} episodes/s ({row['rule']})"
    return f"{row['case']:40s} {shape:44s} adapt one episode ({row['rule']}): {row['median_s']:.3f} s, peak {row['peak_rss_mb']} MB"


def check_targets(rows: list[dict]) -> list[dict]:
    by_case = {row["case"]: row for row in rows}
    verdicts = []
    for case, field, limit, sense, meaning in TARGETS:
        row = by_case.get(case)
        if row is None or field not in row:
            continue
        value = row[field]
        met = value >= limit if sense == "min" else value <= limit
        ratio = value / limit
        verdicts.append({"case": case, "field": field, "value": value, "limit": limit, "met": met,
                         "ratio": ratio, "meaning": meaning})
        word = "met" if met else "MISSED"
        print(f"target {word:6s} {case}: {field} = {value:.3g} (target {'>=' if sense == 'min' else '<='} {limit:g}: "
              f"{meaning}; {ratio:.2f}x the target)")
    return verdicts


def markdown(report: dict) -> str:
    """The README's speed tables, from a JSON report this script wrote."""
    rows = {row["case"]: row for row in report["results"] if "error" not in row}
    lines = []

    def table(header: list[str], body: list[list[str]]) -> None:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines.extend("| " + " | ".join(cells) + " |" for cells in body)
        lines.append("")

    def seconds(case: str, digits: int = 3) -> str:
        return f"{rows[case]['median_s']:.{digits}f}" if case in rows else "-"

    lines.append("Adaptation latency of one episode, seconds (5-way, 15 queries per class, 5 first-order steps):\n")
    table(["rule", "Conv4 28px 1-shot", "Conv4 28px 5-shot", "ResNet12 28px 1-shot", "ResNet12 28px 5-shot"],
          [[rule] + [seconds(f"{net}-omniglot-adapt-{shot}shot-{rule}") for net in ("conv4", "resnet12") for shot in (1, 5)]
           for rule in RULES])
    adapt84 = [name for name, case in CASES.items() if case["kind"] == "adapt" and case["backbone"]["image_size"] == 84]
    table(["84x84 5-way 5-shot episode", "rule", "seconds", "peak MB"],
          [[name, rows[name]["rule"], seconds(name, 2), str(rows[name]["peak_rss_mb"])] for name in adapt84 if name in rows])
    lines.append("Meta-training (second order unless said; synthetic images):\n")
    body = []
    for name, case in CASES.items():
        if case["kind"] != "train" or name not in rows:
            continue
        row = rows[name]
        order = ("2nd" if row["second_order"] else "1st") + (" recomputed" if row.get("recompute") else "")
        setting = (f"{row['backbone']} {row['image_size']}px {row['n_way']}w{row['k_shot']}s, {row['n_query']} queries, "
                   f"meta-batch {row['meta_batch']}, {row['steps']} steps, {row['rule']}, {order}")
        body.append([name, setting, f"{row['median_s']:.2f}", f"{row['tasks_per_s']:.3f}", str(row["peak_rss_mb"])])
    table(["case", "setting", "s per iteration", "tasks/s", "peak MB"], body)
    lines.append("Per-task loop (the reference) against `torch.func.vmap` over the meta-batch, same tasks:\n")
    table(["case", "loop s", "vmap s", "speed-up", "max meta-gradient difference float32 (largest entry)", "same in float64"],
          [[name, f"{rows[name]['median_s']:.2f}", f"{rows[name]['vmap_median_s']:.2f}", f"{rows[name]['speedup']:.2f}x",
            f"{rows[name]['max_grad_difference']:.1e} ({rows[name]['max_grad']:.1e})",
            f"{rows[name].get('max_grad_difference_float64', float('nan')):.1e}"]
           for name, case in CASES.items() if case["kind"] == "vmap" and name in rows])
    lines.append("Evaluation throughput (the 600-episode protocol's loop):\n")
    table(["case", "episodes/s"],
          [[name, f"{rows[name]['episodes_per_s']:.2f}"] for name, case in CASES.items() if case["kind"] == "eval" and name in rows])
    lines.append("Targets:\n")
    table(["case", "measured", "target", "verdict"],
          [[v["case"], f"{v['field']} = {v['value']:.4g}", (f"{'>=' if v['field'] == 'tasks_per_s' else '<='} {v['limit']:g} "
            f"({v['meaning']})"), "met" if v["met"] else f"missed ({v['ratio']:.2f}x the target)"]
           for v in report["targets"]])
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", nargs="*", choices=GROUPS, help="default: all")
    parser.add_argument("--cases", nargs="*", choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads per case (default: torch's)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per case")
    parser.add_argument("--device", help="cpu, cuda, cuda:N, mps or auto (default: $FEWSHOT_DEVICE, else auto)")
    parser.add_argument("--out", default="bench/results/engine_speed.json")
    parser.add_argument("--markdown", metavar="JSON", help="print the README tables of an earlier report and stop")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.one:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(run_case(args.one, args.repeats, args.device)))
        return 0
    if args.device:  # a device this machine lacks stops here, not once per case (a case's own process tunes the
        # allocator before it imports torch, so the check is here, in the parent)
        from core.device import pick_device

        try:
            pick_device(args.device)
        except ValueError as error:
            parser.error(str(error))
    names = args.cases or [n for n, c in CASES.items() if not args.groups or c["group"] in args.groups]
    rows = []
    for name in names:
        command = [sys.executable, __file__, "--one", name, "--repeats", str(args.repeats)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if args.device:
            command += ["--device", args.device]
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{name}: over {args.timeout} s, stopped", file=sys.stderr)
            rows.append({"case": name, "error": f"timeout after {args.timeout} s"})
            continue
        if out.returncode != 0:
            reason = "killed (out of memory?)" if out.returncode < 0 else out.stderr.strip().splitlines()[-1:]
            print(f"{name}: failed: {reason}", file=sys.stderr)
            rows.append({"case": name, "error": str(reason), "returncode": out.returncode})
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(describe(row), flush=True)
    verdicts = check_targets([r for r in rows if "error" not in r])
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": rows, "targets": verdicts}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
