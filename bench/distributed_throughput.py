"""Meta-training throughput of 1, 2 and 4 processes (torchrun, gloo), one thread each, on one machine.

    python bench/distributed_throughput.py                  # about 2-3 minutes on 2 CPU cores
    python bench/distributed_throughput.py --processes 1 2  # some process counts

The fixed config: Omniglot-shaped images (28x28 grey, synthetic: a folder of random PNGs, since speed does not
depend on pixel values), Conv4 with 64 filters, 5-way 1-shot with 5 queries, second-order MAML with 1 inner step,
meta-batch 8, no validation. One process runs ``python -m core train``; K processes run ``torchrun --standalone
--nproc-per-node K -m core train``, each with ``OMP_NUM_THREADS=1``, splitting each meta-batch of 8 into K shares.

Measured: rank 0's training clock (``wall_seconds`` of the history, which counts the meta-iterations and their
all-reduce but not start-up or checkpoint writing) between the end of the warm-up iterations and the end of the
run; iterations/s and tasks/s from it. The load average before and after each run is recorded: figures taken while
other programs use the CPU are not speed figures. With 2 cores, 4 single-threaded processes cannot beat 2.
Writes bench/results/distributed_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "distributed_throughput.json"
META_BATCH = 8
WARMUP = 2  # iterations before the clock starts: the first ones allocate and fill the allocator's heap

CONFIG = """
name = "throughput-conv4-omniglot-shaped"
seed = 0
output_dir = "{output}"

[data]
kind = "folder"
root = "{root}"
image_size = 28
channels = 1
mean = [0.5]
std = [0.5]
train = ["train"]
val = []
test = []

[task]
n_way = 5
k_shot = 1
n_query = 5

[model]
backbone = {{ name = "conv4", filters = 64 }}

[rule]
name = "sgd"
lr = 0.4

[meta]
estimator = "maml"
meta_batch = {meta_batch}
iterations = {iterations}
inner_steps = 1
eval_inner_steps = 1

[validation]
every = {warmup}
episodes = 0

[checkpoint]
every = 100000
"""


@dataclass(frozen=True)
class Measurement:
    processes: int
    command: str
    timed_iterations: int
    seconds: float
    iterations_per_second: float
    tasks_per_second: float
    speedup_over_one_process: float | None
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]


def make_images(root: Path, classes: int = 20, per_class: int = 20, size: int = 28) -> None:
    """``root/train/<class>/<n>.png``: random grey images of Omniglot's size."""
    generator = np.random.default_rng(0)
    for c in range(classes):
        folder = root / "train" / f"class{c:02d}"
        folder.mkdir(parents=True)
        for n in range(per_class):
            pixels = generator.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{n:02d}.png")


def command_for(processes: int, config: Path) -> list[str]:
    train = ["-m", "core", "train", "--config", str(config), "--device", "cpu", "--no-progress"]
    if processes == 1:
        return [sys.executable, *train]
    torchrun = shutil.which("torchrun") or sys.exit("torchrun (installed with torch) is not on PATH")
    return [torchrun, "--standalone", "--nproc-per-node", str(processes), *train]


def measure(processes: int, workdir: Path, images: Path, iterations: int) -> Measurement:
    output = workdir / f"run-{processes}"
    config = workdir / f"config-{processes}.toml"
    config.write_text(CONFIG.format(output=output, root=images, meta_batch=META_BATCH, iterations=iterations,
                                    warmup=WARMUP))  # fmt: skip
    command = command_for(processes, config)
    before = os.getloadavg()
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    after = os.getloadavg()
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    history = [json.loads(line) for line in (output / "history.jsonl").read_text().splitlines()]
    clock = {record["iteration"]: record["wall_seconds"] for record in history}
    seconds = clock[iterations] - clock[WARMUP]
    timed = iterations - WARMUP
    shown = ["python" if processes == 1 else "torchrun", *command[1:]]
    return Measurement(
        processes=processes, command="OMP_NUM_THREADS=1 " + " ".join(shown).replace(str(workdir), "$WORK"),
        timed_iterations=timed, seconds=seconds, iterations_per_second=timed / seconds,
        tasks_per_second=timed * META_BATCH / seconds, speedup_over_one_process=None,
        loadavg_before=before, loadavg_after=after,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--iterations", type=int, default=8, help=f"per run, the first {WARMUP} untimed")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULT.relative_to(REPO)}")
    args = parser.parse_args()
    if args.iterations <= WARMUP:
        parser.error(f"--iterations must be more than the {WARMUP} warm-up iterations")
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="throughput-") as folder:
        workdir = Path(folder)
        make_images(workdir / "images")
        for processes in args.processes:
            row = measure(processes, workdir, workdir / "images", args.iterations)
            rows.append(row)
            print(f"{processes} process(es): {row.iterations_per_second:.3f} it/s, {row.tasks_per_second:.2f} tasks/s "
                  f"(load {row.loadavg_before[0]:.2f} -> {row.loadavg_after[0]:.2f})", file=sys.stderr)  # fmt: skip
    one = next((row for row in rows if row.processes == 1), None)
    if one is not None:
        rows = [Measurement(**{**asdict(row), "speedup_over_one_process": row.tasks_per_second / one.tasks_per_second})
                for row in rows]  # fmt: skip
    payload = {
        "script": "python bench/distributed_throughput.py "
        + f"--processes {' '.join(map(str, args.processes))} --iterations {args.iterations}",
        "config": "Conv4-64 on 28x28 grey synthetic images, 5-way 1-shot 5 queries, second-order MAML, 1 inner step, "
        f"meta_batch {META_BATCH}, each process OMP_NUM_THREADS=1, gloo on 127.0.0.1",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "results": [asdict(row) for row in rows],
        "note": "Timed on rank 0's training clock after the warm-up iterations. The load average is recorded because "
        "other work may share the CPUs: with a load above the core count these are not speed figures, and more "
        "processes then take a larger share of the CPUs from the other programs (so 4 can look faster than 2: that "
        "is the scheduler, not speed). On 2 quiet cores, 4 single-threaded processes cannot beat 2.",
    }  # fmt: skip
    if not args.no_write:
        RESULT.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload["results"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
