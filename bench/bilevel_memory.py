"""Peak memory of ONE meta-gradient computation: second-order MAML against FO-B-MAML (forward and symmetric) for the
1-D CNN of the MNIST-1D experiment (``models/backbones/conv1d.py``), as the width grows (channels 16 to 256 at 10
inner steps) and as the inner loop grows (5 to 50 steps at 64 channels). Issue 14; the claim tested is Chayti and
Jaggi's (FO-B-MAML): a first-order estimator keeps no graph of the inner loop, so its memory does not grow with the
number of inner steps, while second-order MAML stores every step's activations for the backward pass through them.

    OMP_NUM_THREADS=1 python bench/bilevel_memory.py                      # every case (about 5 minutes; twice that with --compare-default-allocator)
    OMP_NUM_THREADS=1 python bench/bilevel_memory.py --estimators maml --channels 16 32 --steps 5

Each case runs in its own subprocess (``--case JSON``), so ``ru_maxrss`` (the process's high-water mark of resident
memory) is that case's own. In the subprocess: build the learner and a synthetic meta-batch (memory does not depend
on the signal values), run one plain forward and backward pass so that torch's one-time allocations are made, read
the resident size (``/proc/self/statm``), compute one meta-gradient, read ``ru_maxrss``. ``peak_extra_mb`` is the
difference: what the meta-gradient itself needed at its peak. With CUDA, ``torch.cuda.max_memory_allocated`` after
the same call (its peak statistics reset just before) minus the memory allocated then gives ``peak_extra_cuda_mb``.

Resident memory counts what the C library's allocator holds, not what torch's tensors hold. Its defaults let the
heap and its dynamic mmap threshold keep freed buffers resident, and a first-order inner loop, which frees and
re-allocates one step's activations every step, then climbs slowly with the number of steps. So each case runs with
``GLIBC_TUNABLES`` fixing the mmap threshold at 64 KiB and the trim threshold at 0 (``ALLOCATOR_TUNABLES``): every
buffer above 64 KiB is mapped on allocation and returned on free, so the peak follows the live tensors.
``--compare-default-allocator`` measures every case under the library's defaults too (``rows_default_allocator``:
FO-B-MAML's step sweep then climbs, MAML's hardly changes); ``--default-allocator`` measures with the defaults only.
``core.device.tune_host_allocator`` is not called (it keeps a gigabyte of freed memory resident on purpose).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ESTIMATORS = ("maml", "fo_b_maml", "fo_b_maml_sym")
CHANNEL_SWEEP = (16, 32, 64, 128, 256)
STEP_SWEEP = (5, 10, 20, 50)
FIXED_STEPS = 10
FIXED_CHANNELS = 64
PROXIMAL_LAMBDA = 1.0  # the MNIST-1D configs' inner problem, so every estimator solves the same one
INNER_LR = 0.1
# 5-way 5-shot, 15 queries per class, 4 tasks: 100 signals per task, so a 256-channel step's activations are
# megabytes, well above the parameters' (about 0.8 MB at 256 channels).
N_WAY, K_SHOT, N_QUERY, META_BATCH = 5, 5, 15, 4
ALLOCATOR_TUNABLES = "glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=0"


@dataclass(frozen=True)
class MemoryCase:
    estimator: str
    channels: int
    inner_steps: int
    n_way: int = N_WAY
    k_shot: int = K_SHOT
    n_query: int = N_QUERY
    meta_batch: int = META_BATCH
    length: int = 40


def resident_mb() -> float:
    """The process's resident size now (``/proc/self/statm``, second field, in pages)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_resident_mb() -> float:
    """The process's high-water mark of resident memory (Linux reports ``ru_maxrss`` in kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_meta_gradient_memory(case: MemoryCase, device: str = "cpu") -> dict:
    """One meta-gradient of ``case`` in this process: the resident size before it, the peak after it, and their
    difference (call it in a fresh process: ``ru_maxrss`` never goes down)."""
    import torch

    from core.data.task import Task
    from core.learner import Learner
    from core.meta.estimator import build_estimator

    generator = torch.Generator().manual_seed(0)
    backbone = {
        "name": "conv1d",
        "in_channels": 1,
        "length": case.length,
        "channels": case.channels,
        "n_blocks": 3,
        "n_classes": case.n_way,
    }
    learner = Learner(backbone, {"name": "sgd", "lr": INNER_LR}, seed=0, proximal_lambda=PROXIMAL_LAMBDA).to(device)
    estimator = build_estimator(case.estimator, learner, case.inner_steps)
    labels = torch.arange(case.n_way)
    tasks = [
        Task(
            support_x=torch.randn(case.n_way * case.k_shot, 1, case.length, generator=generator),
            support_y=labels.repeat_interleave(case.k_shot),
            query_x=torch.randn(case.n_way * case.n_query, 1, case.length, generator=generator),
            query_y=labels.repeat_interleave(case.n_query),
            class_names=[str(c) for c in range(case.n_way)],
        ).to(device)
        for _ in range(case.meta_batch)
    ]
    # One plain forward and backward pass: kernels and allocator pools that any first call sets up, not the
    # meta-gradient's own memory.
    learner.backbone(tasks[0].query_x).sum().backward()
    learner.zero_grad(set_to_none=True)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated() / 2**20
    before_mb, peak_before_mb = resident_mb(), peak_resident_mb()
    started = time.perf_counter()
    estimate = estimator.meta_grad(tasks)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak_mb = peak_resident_mb()
    finite = all(bool(torch.isfinite(g).all()) for g in estimate.grads.values())
    row = {
        **asdict(case),
        "peak_rss_mb": round(peak_mb, 1),
        "rss_before_mb": round(before_mb, 1),
        "peak_rss_before_mb": round(peak_before_mb, 1),
        "peak_extra_mb": round(peak_mb - before_mb, 1),
        "seconds": round(seconds, 3),
        "finite": finite,
        "device": device,
        "parameters_mb": round(sum(p.numel() * p.element_size() for p in learner.parameters()) / 2**20, 3),
    }
    if cuda:
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["peak_extra_cuda_mb"] = round(row["peak_cuda_mb"] - cuda_before, 1)
    return row


def cases(estimators: list[str], channels: list[int], steps: list[int]) -> list[MemoryCase]:
    """The channel sweep at ``FIXED_STEPS`` inner steps, then the step sweep at ``FIXED_CHANNELS`` (the shared point
    measured once, in the first sweep)."""
    chosen = []
    for estimator in estimators:
        chosen += [MemoryCase(estimator, width, FIXED_STEPS) for width in channels]
        chosen += [
            MemoryCase(estimator, FIXED_CHANNELS, count)
            for count in steps
            if MemoryCase(estimator, FIXED_CHANNELS, count) not in chosen
        ]
    return chosen


def run_in_subprocess(case: MemoryCase, device: str, timeout: float, default_allocator: bool = False) -> dict:
    """``case`` measured in a fresh Python process (its ``ru_maxrss`` its own), under ``ALLOCATOR_TUNABLES`` unless
    ``default_allocator``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(asdict(case)), "--device", device]
    env = dict(os.environ)
    if default_allocator:
        env.pop("GLIBC_TUNABLES", None)
    else:
        env["GLIBC_TUNABLES"] = ALLOCATOR_TUNABLES
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def flatness(rows: list[dict], estimator: str, axis: str) -> dict:
    """The peak extra memory at the sweep's largest point over its smallest (1 = flat)."""
    fixed = {"channels": ("inner_steps", FIXED_STEPS), "inner_steps": ("channels", FIXED_CHANNELS)}[axis]
    sweep = sorted((r for r in rows if r["estimator"] == estimator and r[fixed[0]] == fixed[1]), key=lambda r: r[axis])
    if len(sweep) < 2:
        return {}
    low, high = sweep[0], sweep[-1]
    return {
        "estimator": estimator,
        "axis": axis,
        "from": low[axis],
        "to": high[axis],
        "peak_extra_mb_from": low["peak_extra_mb"],
        "peak_extra_mb_to": high["peak_extra_mb"],
        "ratio": round(high["peak_extra_mb"] / max(low["peak_extra_mb"], 0.1), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    parser.add_argument("--channels", nargs="+", type=int, default=list(CHANNEL_SWEEP))
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEP_SWEEP))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CUDA peaks are added when it is cuda)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per case")
    parser.add_argument("--default-allocator", action="store_true", help="measure with glibc's default thresholds")
    parser.add_argument(
        "--compare-default-allocator",
        action="store_true",
        help="also measure every case with glibc's defaults (rows_default_allocator in the json)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # run one case in this process and print its row
    parser.add_argument("--cpu-note", default="", help="what else ran on the machine (recorded in the json)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bilevel_memory.json")
    args = parser.parse_args(argv)
    if args.case:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(measure_meta_gradient_memory(MemoryCase(**json.loads(args.case)), args.device)))
        return 0
    command = " ".join(
        [
            "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset"),
            "python",
            "bench/bilevel_memory.py",
            *map(shlex.quote, sys.argv[1:] if argv is None else argv),
        ]
    )
    rows, default_rows = [], []
    for case in cases(args.estimators, args.channels, args.steps):
        row = run_in_subprocess(case, args.device, args.timeout, args.default_allocator)
        rows.append(row)
        line = (
            f"{case.estimator:14s} channels {case.channels:4d} steps {case.inner_steps:3d}: "
            f"peak {row['peak_rss_mb']:8.1f} MB, extra {row['peak_extra_mb']:8.1f} MB ({row['seconds']:.1f} s)"
        )
        if args.compare_default_allocator:
            default_rows.append(run_in_subprocess(case, args.device, args.timeout, default_allocator=True))
            line += f"; glibc defaults: extra {default_rows[-1]['peak_extra_mb']:8.1f} MB"
        print(line, flush=True)
    report = {
        "command": command,
        "setting": f"conv1d (3 blocks), {N_WAY}-way {K_SHOT}-shot {N_QUERY} queries per class, meta-batch "
        f"{META_BATCH} (tasks one at a time), sgd inner rule lr {INNER_LR}, proximal lambda "
        f"{PROXIMAL_LAMBDA:g}, synthetic signals of length 40; channel sweep at {FIXED_STEPS} inner steps, "
        f"step sweep at {FIXED_CHANNELS} channels; one meta-gradient per fresh subprocess",
        "device": args.device,
        "allocator": "glibc defaults" if args.default_allocator else f"GLIBC_TUNABLES={ALLOCATOR_TUNABLES}",
        "cpu_note": args.cpu_note,
        "rows": rows,
        "growth": [
            g for e in args.estimators for axis in ("channels", "inner_steps") if (g := flatness(rows, e, axis))
        ],
    }
    if default_rows:
        report["rows_default_allocator"] = default_rows
        report["growth_default_allocator"] = [
            g for e in args.estimators for axis in ("channels", "inner_steps") if (g := flatness(default_rows, e, axis))
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
