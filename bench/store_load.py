"""Load test of the run store (issue 16): writer processes save dashboard-like runs for a bounded time while reader
processes browse them as the Runs page does; then every stored row is checked against what the writers reported.

    OMP_NUM_THREADS=1 python bench/store_load.py                  # PostgreSQL and SQLite (WAL), 8 writers, 3 readers, 20 s
    OMP_NUM_THREADS=1 python bench/store_load.py --seconds 5 --databases sqlite

Writes ``bench/results/store_load.json``. PostgreSQL is a throw-away server started by ``tests/support/postgres.py``
(fsync off: a test server, so writes cost less than on a durable one); SQLite is one file in WAL mode, the store's
default set-up (``core.store.database``). Each writer is its own process with its own ``Store``, saving through the
real ``Store.save_run`` API: a 5-way 1-shot episode with 5 queries (10 images, each with a preview; the 5 support
images are the same bytes in every run, so writers race to insert them), 2 adaptations of 10 steps with per-layer
traces for 8 layers and 5 predictions each. A save either returns the new run's id (committed) or raises: the error
is counted, never retried or hidden. Readers loop over one "page view": the newest runs, a filtered list, the
filter widgets' distinct values, one run opened in full and its image previews.

The check afterwards: the number of runs equals exactly the number of saves the writers saw commit, with the same
ids and names (no duplicates, none lost, none extra), and every run reads back equal to the input its writer built
(every image, trace, prediction). Timings on a shared machine are not speed figures: the load average is recorded
with them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULT = ROOT / "bench" / "results" / "store_load.json"

from sqlalchemy.exc import SQLAlchemyError

from core.store import AdaptationInput, CheckpointInput, EpisodeItemInput, ImageInput, RunInput, Store

N_WAY = 5
QUERIES_PER_CLASS = 1
STEPS = 10
LAYERS = tuple(f"block{block}.{kind}" for block in range(4) for kind in ("weight", "bias"))
RULES = ("sgd", "alfa")
IMAGE_BYTES = 2048
PREVIEW_BYTES = 512
TAG = "load"


# ----- what a writer saves -------------------------------------------------------------------------------------
def run_name(writer: int, number: int) -> str:
    return f"load-w{writer}-r{number}"


def _image(seed: str, size: int, source_name: str) -> ImageInput:
    data = hashlib.shake_256(seed.encode()).digest(size)
    preview = hashlib.shake_256(f"preview {seed}".encode()).digest(PREVIEW_BYTES)
    return ImageInput(data=data, mime="image/png", width=28, height=28, source_name=source_name, preview=preview)


def _checkpoint(index: int) -> CheckpointInput:
    """One of two checkpoints every writer's runs share (a checkpoint row is created by whichever save comes first)."""
    name = f"load-checkpoint-{index}"
    return CheckpointInput(
        name=name,
        path=f"assets/checkpoints/{name}.safetensors",
        file_sha256=hashlib.sha256(name.encode()).hexdigest(),
        backbone={"kind": "conv4", "channels": 64},
        rule={"name": "alfa", "steps": STEPS},
        image_spec={"size": 28, "channels": 1},
        metadata={"name": name},
    )


def build_run(writer: int, number: int) -> tuple[RunInput, list[AdaptationInput]]:
    """The run writer ``writer`` saves as its ``number``-th: deterministic, so the check can rebuild it."""
    rng = random.Random(f"{writer}/{number}")
    class_names = [f"class{index}" for index in range(N_WAY)]
    # Support images: the same bytes in every run (stored once, inserted concurrently by every writer).
    support = [
        EpisodeItemInput("support", index, index, _image(f"support {index}", IMAGE_BYTES, f"s{index}.png"))
        for index in range(N_WAY)
    ]
    query = [
        EpisodeItemInput(
            "query", index, index % N_WAY, _image(f"query {writer} {number} {index}", IMAGE_BYTES, f"q{index}.png")
        )
        for index in range(N_WAY * QUERIES_PER_CLASS)
    ]
    run = RunInput(
        source="benchmark",
        dataset="omniglot",
        split="test",
        n_way=N_WAY,
        k_shot=1,
        n_query=QUERIES_PER_CLASS,
        seed=writer * 1_000_000 + number,
        checkpoint=_checkpoint(writer % 2),
        checkpoint_name=f"load-checkpoint-{writer % 2}",
        device="cpu",
        steps=STEPS,
        class_names=class_names,
        config={"writer": writer, "number": number, "rules": list(RULES)},
        items=support + query,
        name=run_name(writer, number),
        tags=[TAG, f"w{writer}"],
    )
    adaptations = []
    n_queries = len(query)
    for rule in RULES:
        probabilities = []
        for _ in range(n_queries):
            raw = [rng.random() + 1e-3 for _ in range(N_WAY)]
            total = sum(raw)
            probabilities.append([value / total for value in raw])
        predictions = [max(range(N_WAY), key=row.__getitem__) for row in probabilities]
        truths = [item.label for item in query]
        adaptations.append(
            AdaptationInput(
                rule=rule,
                rule_label=rule.upper(),
                steps=STEPS,
                head_init="prototype",
                accuracy=sum(p == t for p, t in zip(predictions, truths)) / n_queries,
                query_loss=rng.random(),
                seconds=rng.random(),
                predictions=predictions,
                probabilities=probabilities,
                truths=truths,
                support_loss=[rng.random() for _ in range(STEPS + 1)],
                support_accuracy=[rng.random() for _ in range(STEPS + 1)],
                traces=[
                    {layer: {"alpha": rng.random(), "beta": rng.random()} for layer in LAYERS} for _ in range(STEPS)
                ],
            )
        )
    return run, adaptations


# ----- the processes -------------------------------------------------------------------------------------------
@dataclass
class WriterReport:
    writer: int
    committed: dict[str, int] = field(default_factory=dict)  # run name -> id the save returned
    errors: list[str] = field(default_factory=list)  # one line per failed save: its run's name and the exception
    latencies_s: list[float] = field(default_factory=list)  # committed saves only


@dataclass
class ReaderReport:
    reader: int
    page_views: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)  # one per page view


def _writer(url: str, writer: int, start: Any, seconds: float, results: Any) -> None:
    report = WriterReport(writer)
    try:
        with Store(url, migrate=False) as store:
            store.list_runs(limit=1)  # connected before the clock starts
            start.wait()
            deadline = time.monotonic() + seconds
            number = 0
            while time.monotonic() < deadline:
                run, adaptations = build_run(writer, number)
                began = time.perf_counter()
                try:
                    run_id = store.save_run(run, adaptations, total_seconds=1.0)
                except SQLAlchemyError as error:  # counted and reported, never retried
                    report.errors.append(f"{run.name}: {type(error).__name__}: {str(error).splitlines()[0]}")
                else:
                    report.latencies_s.append(time.perf_counter() - began)
                    report.committed[run.name] = run_id
                number += 1
    except Exception:  # noqa: BLE001  # anything else stops the process, and the report says why
        report.errors.append(f"writer {writer} stopped: {traceback.format_exc()}")
    results.put(("writer", asdict(report)))


def browse_once(store: Store, rng: random.Random) -> None:
    """One page view of the Runs page: the filter widgets, the newest runs, a filtered list, one run in full."""
    for column in ("dataset", "n_way", "k_shot", "checkpoint_name", "rule", "tag"):
        store.distinct_values(column)
    newest = store.list_runs(limit=200)
    store.list_runs(rule="alfa", min_accuracy=0.2, tag=TAG, checkpoint_name="load-checkpoint-0", limit=200)
    if newest:
        detail = store.get_run(rng.choice(newest).id)
        store.get_previews(item.image_sha256 for item in detail.items)


def _reader(url: str, reader: int, start: Any, seconds: float, results: Any) -> None:
    report = ReaderReport(reader)
    rng = random.Random(reader)
    try:
        with Store(url, migrate=False) as store:
            store.list_runs(limit=1)  # connected before the clock starts
            start.wait()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    browse_once(store, rng)
                except SQLAlchemyError as error:
                    report.errors.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")
                else:
                    report.latencies_s.append(time.perf_counter() - began)
                    report.page_views += 1
    except Exception:  # noqa: BLE001  # anything else stops the process, and the report says why
        report.errors.append(f"reader {reader} stopped: {traceback.format_exc()}")
    results.put(("reader", asdict(report)))


# ----- the check -----------------------------------------------------------------------------------------------
@dataclass
class Verification:
    runs_stored: int
    runs_committed: int
    problems: list[str]  # empty when every run is there exactly once, complete and equal to its input


def _same_floats(stored: list[float], given: list[float]) -> bool:
    return len(stored) == len(given) and all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(stored, given))


def verify(url: str, committed: dict[str, int]) -> Verification:
    """Every committed run stored once, with the id its save returned, and equal to the input its writer built."""
    problems: list[str] = []
    with Store(url, migrate=False) as store:
        summaries = store.list_runs(limit=None)
        by_name: dict[str, list[int]] = {}
        for summary in summaries:
            by_name.setdefault(summary.name or "", []).append(summary.id)
        duplicates = {name: ids for name, ids in by_name.items() if len(ids) > 1}
        if duplicates:
            problems.append(f"{len(duplicates)} run names stored more than once, e.g. {next(iter(duplicates.items()))}")
        lost = sorted(set(committed) - set(by_name))
        extra = sorted(set(by_name) - set(committed))
        if lost:
            problems.append(f"{len(lost)} committed runs missing, e.g. {lost[:3]}")
        if extra:
            problems.append(f"{len(extra)} runs stored that no writer saw commit, e.g. {extra[:3]}")
        wrong_ids = [name for name, run_id in committed.items() if name in by_name and by_name[name] != [run_id]]
        if wrong_ids:
            problems.append(f"{len(wrong_ids)} runs stored under another id than their save returned")
        ids = [committed[name] for name in sorted(committed) if name in by_name]
        for start in range(0, len(ids), 200):
            for detail in store.get_runs(ids[start : start + 200]):
                problems.extend(_compare(store, detail))
    return Verification(runs_stored=len(summaries), runs_committed=len(committed), problems=problems)


def _compare(store: Store, detail: Any) -> list[str]:
    writer, number = (int(part[1:]) for part in detail.name.split("-")[1:])
    run, adaptations = build_run(writer, number)
    problems = []
    expected_items = [(i.role, i.position, i.label, hashlib.sha256(i.image.data).hexdigest()) for i in run.items]
    stored_items = [(i.role, i.position, i.label, i.image_sha256) for i in detail.items]
    if sorted(stored_items) != sorted(expected_items):
        problems.append(f"{detail.name}: {len(stored_items)} episode items differ from the {len(expected_items)} saved")
    images = store.get_images(sha for *_, sha in expected_items)
    previews = store.get_previews(sha for *_, sha in expected_items)
    for item in run.items:
        sha = hashlib.sha256(item.image.data).hexdigest()
        if images.get(sha, (None,))[0] != item.image.data or previews.get(sha) != item.image.preview:
            problems.append(f"{detail.name}: image {item.image.source_name} or its preview is missing or different")
    if len(detail.adaptations) != len(adaptations):
        problems.append(f"{detail.name}: {len(detail.adaptations)} adaptations, {len(adaptations)} saved")
    for stored, given in zip(detail.adaptations, adaptations):
        same = (
            stored.rule == given.rule
            and stored.predictions == given.predictions
            and all(_same_floats(a, b) for a, b in zip(stored.probabilities, given.probabilities))
            and len(stored.probabilities) == len(given.probabilities)
            and stored.truths == given.truths
            and _same_floats(stored.support_loss, given.support_loss)
            and _same_floats(stored.support_accuracy, given.support_accuracy)
            and stored.traces == given.traces
            and stored.accuracy == given.accuracy
        )
        if not same:
            problems.append(f"{detail.name}: adaptation {given.rule} reads back different from what was saved")
    return problems


# ----- one measurement -----------------------------------------------------------------------------------------
def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def run_load(url: str, writers: int, readers: int, seconds: float) -> dict[str, Any]:
    """Migrate ``url``'s empty database, run the writers and readers for ``seconds``, verify; returns the figures."""
    Store(url).close()  # the schema, once, before the clock starts
    context = multiprocessing.get_context("spawn")
    # Every process imports the store and connects first; the clock starts when all of them (and this one) are ready.
    start = context.Barrier(writers + readers + 1)
    results = context.Queue()
    processes = [context.Process(target=_writer, args=(url, w, start, seconds, results)) for w in range(writers)]
    processes += [context.Process(target=_reader, args=(url, r, start, seconds, results)) for r in range(readers)]
    for process in processes:
        process.start()
    start.wait(timeout=600)
    load_before = os.getloadavg()
    began = time.perf_counter()
    reports = [results.get(timeout=seconds + 600) for _ in processes]
    wall_s = time.perf_counter() - began
    load_after = os.getloadavg()
    for process in processes:
        process.join()
    writer_reports = [report for kind, report in reports if kind == "writer"]
    reader_reports = [report for kind, report in reports if kind == "reader"]
    committed = {name: run_id for report in writer_reports for name, run_id in report["committed"].items()}
    verification = verify(url, committed)
    write_latencies = [value for report in writer_reports for value in report["latencies_s"]]
    read_latencies = [value for report in reader_reports for value in report["latencies_s"]]
    write_errors = [error for report in writer_reports for error in report["errors"]]
    read_errors = [error for report in reader_reports for error in report["errors"]]
    return {
        "writers": writers,
        "readers": readers,
        "seconds": seconds,
        "wall_s": round(wall_s, 2),
        "runs_committed": verification.runs_committed,
        "runs_stored": verification.runs_stored,
        "exact": verification.runs_stored == verification.runs_committed and not verification.problems,
        "problems": verification.problems[:20],
        "writes_per_s": round(len(write_latencies) / seconds, 2),
        "write_p50_ms": _ms(_percentile(write_latencies, 0.5)),
        "write_p95_ms": _ms(_percentile(write_latencies, 0.95)),
        "write_errors": len(write_errors),
        "write_error_kinds": dict(Counter(error.split(": ", 1)[1] for error in write_errors)),
        "write_error_examples": write_errors[:5],
        "page_views_per_s": round(len(read_latencies) / seconds, 2),
        "page_view_p50_ms": _ms(_percentile(read_latencies, 0.5)),
        "page_view_p95_ms": _ms(_percentile(read_latencies, 0.95)),
        "read_errors": len(read_errors),
        "read_error_examples": read_errors[:5],
        "runs_per_writer": sorted(len(report["committed"]) for report in writer_reports),
        "loadavg_before": [round(value, 2) for value in load_before],
        "loadavg_after": [round(value, 2) for value in load_after],
    }


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh empty database: ``sqlite`` (a WAL file in ``folder``) or ``postgresql`` (a throw-away server)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'store_load.sqlite3'}"
        return
    from tests.support.postgres import running_postgres

    with running_postgres() as server:
        yield server.create_database("store_load")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--databases", nargs="+", default=["postgresql", "sqlite"], choices=["postgresql", "sqlite"])
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    command = "OMP_NUM_THREADS=1 python bench/store_load.py" + (f" {' '.join(argv)}" if argv else "")
    results: dict[str, Any] = {
        "command": command,
        "cpu_count": os.cpu_count(),
        "note": "Shared 2-core machine; PostgreSQL with fsync off (a throw-away test server); see loadavg per case.",
        "episode": {
            "images": N_WAY * (1 + QUERIES_PER_CLASS),
            "image_bytes": IMAGE_BYTES,
            "adaptations": len(RULES),
            "steps": STEPS,
            "layers": len(LAYERS),
        },
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="store-load-") as folder:
        for kind in args.databases:
            with database(kind, Path(folder)) as url:
                case = run_load(url, args.writers, args.readers, args.seconds)
            results["cases"]["sqlite_wal" if kind == "sqlite" else kind] = case
            print(kind, json.dumps(case, indent=2), flush=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(case["exact"] for case in results["cases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
