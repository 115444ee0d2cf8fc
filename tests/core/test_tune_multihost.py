"""Several ``python -m core tune`` workers share one study in a real PostgreSQL server: in separate processes on one
host, and on two hosts (network namespaces, the server on host a listening on a's address).

Each worker is the command a user runs on each machine, ``python -m core tune --config FILE --trials N --study S
--storage postgresql+psycopg://...``. What the shared study must show afterwards, read back from the server:
every trial recorded once, numbers 0..N-1 with no duplicate and no gap, as many trials as the workers together
say they ran (Optuna logs each trial a worker finishes: "Trial 3 finished with value ...", "Trial 4 pruned"), each
stored value the one its worker logged, and the best trial the best of the stored values, as the last worker to
finish prints it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from core.settings import REPO_ROOT
from core.tune import default_output_root
from tests.support import netns, postgres
from tests.support.netns import Host

pytestmark = pytest.mark.slow

CONFIG = REPO_ROOT / "configs" / "sine" / "tune_tiny.toml"  # 12 iterations a trial: seconds on one core
TRIALS_PER_WORKER = 2
WORKER_TIMEOUT_S = 300  # three workers importing torch on a busy 2-core machine

# What one worker logs about a trial it ran (Optuna's INFO lines), and the best trial it prints at its end.
FINISHED = re.compile(r"Trial (\d+) finished with value: (\S+) and parameters")
PRUNED = re.compile(r"Trial (\d+) pruned\.")
FAILED = re.compile(r"Trial (\d+) failed")
BEST = re.compile(r"^best: trial (\d+), value (\S+), ", re.MULTILINE)

# Read the study back beside the server (the test process may not reach host a's address).
READ_STUDY = """
import json, sys
from core.tune import load_result
result = load_result(sys.argv[1], sys.argv[2])
print(json.dumps({
    "best_trial": result.best_trial, "best_value": result.best_value,
    "trials": [[t.number, t.state, t.value] for t in result.trials],
    "params": [json.dumps(t.params, sort_keys=True) for t in result.trials],
}))
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the multi-host tuning tests: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class WorkerReport:
    """What one ``python -m core tune`` process printed: the trials it ran and the best trial it saw at its end."""

    returncode: int
    ran: dict[int, str]  # trial number -> "COMPLETE" | "PRUNED" | "FAIL", as the worker logged it
    values: dict[int, float]  # its complete trials' values, as logged (repr: exact)
    best: tuple[int, str] | None  # (trial number, value as printed with 6 significant digits); None: not printed
    output: str

    @classmethod
    def parse(cls, returncode: int, output: str) -> WorkerReport:
        ran: dict[int, str] = {}
        for pattern, state in ((FINISHED, "COMPLETE"), (PRUNED, "PRUNED"), (FAILED, "FAIL")):
            for match in pattern.finditer(output):
                number = int(match.group(1))
                assert number not in ran, f"the worker logged trial {number} twice:\n{output}"
                ran[number] = state
        values = {int(m.group(1)): float(m.group(2)) for m in FINISHED.finditer(output)}
        best = BEST.search(output)
        return cls(returncode, ran, values, best and (int(best.group(1)), best.group(2)), output)


@dataclass(frozen=True)
class StoredStudy:
    best_trial: int | None
    best_value: float | None
    trials: list[tuple[int, str, float | None]]  # (number, state, value) in the order the storage lists them
    params: list[str]  # each trial's parameters (JSON), in the same order


def _worker_argv(study: str, storage: str, worker: int) -> list[str]:
    return [
        sys.executable, "-m", "core", "tune", "--config", str(CONFIG), "--trials", str(TRIALS_PER_WORKER),
        "--study", study, "--storage", storage, "--device", "cpu", "--worker", str(worker),
    ]  # fmt: skip


def _environment(tmp_path) -> dict[str, str]:
    # The run store is not the study's storage: a file of this test's own, never the checkout's.
    return {**os.environ, "OMP_NUM_THREADS": "1", "FEWSHOT_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}"}


def run_workers(commands: Sequence[list[str]], env: dict[str, str]) -> list[WorkerReport]:
    """Start every command at once (each a worker process, maybe inside a host) and wait for them all."""
    processes = [
        subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for argv in commands
    ]
    try:
        outputs = [process.communicate(timeout=WORKER_TIMEOUT_S)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [WorkerReport.parse(process.returncode, output) for process, output in zip(processes, outputs)]


def read_study(study: str, storage: str, env: dict[str, str], host: Host | None = None) -> StoredStudy:
    argv = [sys.executable, "-c", READ_STUDY, study, storage]
    result = subprocess.run(
        host.command(argv) if host else argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return StoredStudy(
        data["best_trial"], data["best_value"], [tuple(row) for row in data["trials"]], list(data["params"])
    )


def check_shared_study(reports: list[WorkerReport], stored: StoredStudy) -> None:
    """The shared study holds exactly the trials the workers ran, once each, numbered 0..N-1, with their values,
    and its best is the best of them."""
    for report in reports:
        assert report.returncode == 0, report.output[-3000:]
        assert len(report.ran) == TRIALS_PER_WORKER and report.best is not None, report.output[-3000:]
    numbers = [number for number, _, _ in stored.trials]
    total = TRIALS_PER_WORKER * len(reports)
    assert sorted(numbers) == list(range(total))  # no duplicate, no gap
    assert sum(len(report.ran) for report in reports) == total
    # Each worker seeds its sampler by its --worker index: no trial's values are another's (none spent twice).
    assert len(set(stored.params)) == total, stored.params
    # Each trial was run by exactly one worker, and stored as that worker logged it.
    ran_by: dict[int, str] = {}
    for report in reports:
        assert not set(report.ran) & set(ran_by), "two workers logged the same trial number"
        ran_by.update(report.ran)
    assert {number: state for number, state, _ in stored.trials} == ran_by
    logged_values = {number: value for report in reports for number, value in report.values.items()}
    stored_values = {number: value for number, state, value in stored.trials if state == "COMPLETE"}
    assert stored_values == logged_values  # exact: the same float the worker reported to the storage
    # The best (validation MSE: the smallest) of the stored values; the worker that finished last printed it.
    assert stored_values, "no trial completed"
    best_number = min(stored_values, key=stored_values.__getitem__)
    assert (stored.best_trial, stored.best_value) == (best_number, stored_values[best_number])
    assert (best_number, f"{stored.best_value:.6g}") in {report.best for report in reports}
    for report in reports:  # a worker that finished earlier saw a subset: its best is a real trial, no better
        assert report.best is not None
        number, printed = report.best
        assert printed == f"{stored_values[number]:.6g}" and stored_values[number] >= stored.best_value


@pytest.fixture
def study_name() -> Iterator[str]:
    name = f"multihost-{uuid.uuid4().hex[:10]}"
    yield name
    shutil.rmtree(default_output_root() / name, ignore_errors=True)  # the trials' checkpoints (runs/tune/<study>)


def test_three_tune_processes_on_one_host_share_one_study(tmp_path, study_name):
    reason = postgres.unavailable_reason()
    if reason is not None:
        _unavailable(reason)
    env = _environment(tmp_path)
    with postgres.running_postgres() as server:
        storage = server.create_database("tuning")
        reports = run_workers([_worker_argv(study_name, storage, worker) for worker in range(3)], env)
        check_shared_study(reports, read_study(study_name, storage, env))


def test_tune_workers_on_two_hosts_share_one_study(tmp_path, study_name):
    for reason in (postgres.unavailable_reason(), netns.unavailable_reason()):
        if reason is not None:
            _unavailable(reason)
    env = _environment(tmp_path)
    with netns.two_hosts("tu") as (a, b), postgres.running_postgres(host=a) as server:
        assert server.host == a.address  # b reaches it over the veth pair only
        storage = server.create_database("tuning")
        argvs = [_worker_argv(study_name, storage, worker) for worker in range(3)]
        reports = run_workers([a.command(argvs[0]), b.command(argvs[1]), b.command(argvs[2])], env)
        check_shared_study(reports, read_study(study_name, storage, env, host=b))
