"""A few iterations of the ALFA paper's miniImageNet meta-training, second order, on synthetic random images:
seconds per iteration and peak memory, for 4-CONV and ResNet12 with MAML and with ALFA+MAML.

Each case is a config of ``configs/miniimagenet`` run by the engine's own trainer (``core.train.Trainer.step``: its
second-order MAML estimator, ResNet12's recomputed inner steps, the multi-step loss, the Adam outer step) with only
``data.root`` changed: a generated folder of random 84x84 RGB images, one class per way with K + Q images each, so
no dataset is needed (speed and memory do not depend on the pixel values). Validation is not run. Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU (and what the caching allocator reserved), the process's peak resident
set size (``ru_maxrss``) on the CPU; each case runs in a process of its own, so a peak is its own.

    python bench/gpu_training_memory.py --device cuda                  # the four 5-shot configs, 5 iterations
    python bench/gpu_training_memory.py --device cuda --shot 1
    python bench/gpu_training_memory.py --device cpu --tiny --iterations 2    # tiny sizes: a CPU check in minutes

``--tiny`` keeps every config's meta-batch, way and inner steps but shrinks the images to 28x28, the task to 1 shot
and 2 queries per class, and the networks (4-CONV 8 filters, ResNet12 8-16-32-64): it checks the path, it measures
nothing of the paper's configurations.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CONFIG_DIR = ROOT / "configs" / "miniimagenet"
# The second-order configurations: {backbone}_{rule}_{shot}shot.toml
CONFIG_STEMS = ("conv4_maml", "conv4_alfa_maml", "resnet12_maml", "resnet12_alfa_maml")
TINY_IMAGE_SIZE = 28
TINY_BACKBONES = {"conv4": {"filters": 8}, "resnet12": {"widths": [8, 16, 32, 64]}}


def config_path(stem: str, shot: int) -> Path:
    return CONFIG_DIR / f"{stem}_{shot}shot.toml"


def write_random_images(root: Path, n_way: int, per_class: int, size: int, channels: int, seed: int) -> None:
    """``root/train/<class>/<i>.png``: ``n_way`` classes of ``per_class`` uniform random images (a folder dataset)."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(seed)
    mode = "RGB" if channels == 3 else "L"
    for c in range(n_way):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size, size, channels) if channels == 3 else (size, size)
            pixels = generator.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(folder / f"{i:03d}.png")


def run_case(config_file: Path, iterations: int, device_name: str, tiny: bool) -> dict:
    """Train ``iterations`` outer steps of ``config_file`` on random images; the timings and the peak memory."""
    from core.device import tune_host_allocator

    allocator_tuned = tune_host_allocator()  # as `python -m core train` does, before torch is imported
    import torch

    from core.config import load_config
    from core.train import Trainer

    config = load_config(config_file)
    if tiny:
        config.data.image_size = TINY_IMAGE_SIZE
        config.task.k_shot, config.task.n_query = 1, 2
        backbone = config.model.backbone
        backbone.update(TINY_BACKBONES[backbone["name"]])
    with tempfile.TemporaryDirectory(prefix="gpu-training-memory-") as folder:
        work = Path(folder)
        write_random_images(
            work / "data",
            config.task.n_way,
            config.task.k_shot + config.task.n_query,
            config.data.image_size,
            config.data.channels,
            config.seed,
        )
        config.data.root = str(work / "data")
        config.data.val, config.data.test = [], []  # no held-out classes: validation is not what is measured
        config.output_dir = str(work / "run")  # Trainer.step writes nothing; set so that nothing lands in runs/
        trainer = Trainer(config, device=device_name, progress=False)
        device = trainer.device
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        seconds, losses = [], []
        for iteration in range(iterations):
            started = time.perf_counter()
            diagnostics = trainer.step(iteration)
            if cuda:
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - started)
            losses.append(diagnostics["loss"])
    timed = seconds[1:] or seconds  # the first iteration also warms the allocator and the kernels up
    meta = config.meta
    row = {
        "config": str(config_file.relative_to(ROOT)),
        "backbone": config.model.backbone["name"],
        "rule": config.rule.name,
        "estimator": meta.estimator,
        "execution": meta.execution,
        "image_size": config.data.image_size,
        "n_way": config.task.n_way,
        "k_shot": config.task.k_shot,
        "n_query": config.task.n_query,
        "meta_batch": meta.meta_batch,
        "inner_steps": meta.inner_steps,
        "multi_step_loss": meta.multi_step_loss,
        "tiny": tiny,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "threads": torch.get_num_threads(),
        "allocator_tuned": allocator_tuned,
        "iterations": iterations,
        "seconds": [round(s, 4) for s in seconds],
        "median_s_per_iteration": statistics.median(timed),
        "losses": losses,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_average": os.getloadavg(),
    }
    if cuda:
        row["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        row["peak_cuda_reserved_mb"] = round(torch.cuda.max_memory_reserved(device) / 2**20)
    return row


def describe(row: dict) -> str:
    peak = (
        f"peak GPU memory {row['peak_cuda_allocated_mb']} MB allocated ({row['peak_cuda_reserved_mb']} MB reserved)"
        if "peak_cuda_allocated_mb" in row
        else f"peak RSS {row['peak_rss_mb']} MB"
    )
    shape = (
        f"{row['image_size']}px {row['n_way']}w{row['k_shot']}s q{row['n_query']} meta-batch {row['meta_batch']}, "
        f"{row['inner_steps']} steps, {row['estimator']} ({row['execution']}){', tiny' if row['tiny'] else ''}"
    )
    return (
        f"{Path(row['config']).stem:32s} {shape}: {row['median_s_per_iteration']:.3f} s/iteration "
        f"over {row['iterations']} on {row['device_name']}, {peak}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--iterations", type=int, default=5, help="outer steps per config (default 5)")
    parser.add_argument("--shot", type=int, choices=(1, 5), default=5, help="the 1- or 5-shot configs (default 5)")
    parser.add_argument("--configs", nargs="*", choices=CONFIG_STEMS, help="default: all four")
    parser.add_argument("--tiny", action="store_true", help="tiny images, tasks and networks (a CPU check)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per config")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.one:
        print(json.dumps(run_case(args.one, args.iterations, args.device, args.tiny)))
        return 0
    rows, failed = [], 0
    for stem in args.configs or CONFIG_STEMS:
        command = [
            sys.executable,
            __file__,
            "--one",
            str(config_path(stem, args.shot)),
            "--device",
            args.device,
            "--iterations",
            str(args.iterations),
        ] + (["--tiny"] if args.tiny else [])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{stem}: over {args.timeout} s, stopped", flush=True)
            rows.append({"config": stem, "error": f"timeout after {args.timeout} s"})
            failed += 1
            continue
        if done.returncode != 0:
            reason = (
                "killed (out of memory?)" if done.returncode < 0 else "\n".join(done.stderr.strip().splitlines()[-3:])
            )
            print(f"{stem}: failed: {reason}", flush=True)
            rows.append({"config": stem, "error": reason, "returncode": done.returncode})
            failed += 1
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(describe(row), flush=True)
    if args.out:
        command = "python bench/gpu_training_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
