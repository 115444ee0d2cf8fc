"""Meta-training across two hosts: ``torchrun --nnodes 2`` with c10d rendezvous between two network namespaces.

    sudo env OMP_NUM_THREADS=1 python bench/multihost_torchrun.py [--iterations 3]

``tests/support/netns.py`` makes hosts ``a`` and ``b`` joined by a veth pair. One ``torchrun --nnodes 2
--nproc-per-node 1`` runs in each, meeting at the c10d rendezvous on ``a.address:PORT`` (host ``a`` serves its
store: ``is_host=1``); the rendezvous decides which host's process is rank 0, and gloo sends the meta-gradients
over the veth pair (``GLOO_SOCKET_IFNAME``). The hosts share nothing but addresses: each gets its own
``--output-dir``, and exactly one must exist afterwards, rank 0's (rank 1 writes and reads nothing; rank 0's state
reaches it over the network).

Checked: both torchruns exit 0, and rank 0's weights equal the single-process run with the whole meta-batch within
the float32 bound derived in tests/support/distributed_reference.py. Writes bench/results/multihost_torchrun.json.
Needs root and iproute2 (network namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.checkpoint.format import read_tensors
from tests.support.distributed_reference import (
    largest_excess,
    sine_config,
    single_process_reference,
)
from tests.support.netns import Host, two_hosts

RESULT = REPO / "bench" / "results" / "multihost_torchrun.json"
RENDEZVOUS_PORT = 29400  # on host a's own network stack, so no other program of the machine holds it


@dataclass(frozen=True)
class HostRun:
    host: str
    address: str
    interface: str
    returncode: int
    seconds: float
    stderr_tail: str


@dataclass(frozen=True)
class MultiHostResult:
    """What :func:`train_on_two_hosts` measured."""

    command: str
    iterations: int
    rule: str
    hosts: list[HostRun]
    hosts_that_wrote: list[str]  # whose --output-dir exists: the host of rank 0 alone
    largest_distance_over_bound: float  # at most 1: within the derived float32 bound of the single-process run
    worst_tensor: str
    loadavg: tuple[float, float, float]

    @property
    def passed(self) -> bool:
        return (
            all(run.returncode == 0 for run in self.hosts)
            and len(self.hosts_that_wrote) == 1
            and self.largest_distance_over_bound <= 1
        )


def interface_of(host: Host) -> str:
    """The name of the network interface holding ``host.address`` inside the host (its veth end)."""
    listing = host.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        if f"{host.address}/" in line:
            return fields[1]
    raise RuntimeError(f"no interface of {host.name} holds {host.address}:\n{listing}")


def torchrun_command(
    config: Path, output: Path, serves_rendezvous: bool, endpoint: str, local_addr: str, iterations: int
) -> list[str]:
    """One host's torchrun (``python -m torch.distributed.run``: the ``torchrun`` script of this interpreter)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
        "--rdzv-id", "fewshot-multihost", "--rdzv-conf", f"is_host={int(serves_rendezvous)}",
        "--local-addr", local_addr, "--max-restarts", "0",
        "-m", "core", "train", "--config", str(config), "--output-dir", str(output), "--device", "cpu",
        "--no-progress", "--iterations", str(iterations),
    ]  # fmt: skip


def train_on_two_hosts(workdir: Path, iterations: int = 3, rule: str = "alfa", timeout: float = 300) -> MultiHostResult:
    """Meta-train ``iterations`` steps with rank 0 on host a and rank 1 on host b; compare with one process."""
    config = sine_config(workdir / "config.toml", workdir / "unused", rule, iterations)
    outputs = (workdir / "host-a-run", workdir / "host-b-run")
    runs: list[HostRun] = []
    with two_hosts("tr") as (a, b):
        endpoint = f"{a.address}:{RENDEZVOUS_PORT}"
        processes = []
        for node_rank, (host, output) in enumerate(zip((a, b), outputs)):
            interface = interface_of(host)
            environment = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": interface,
                           "PYTHONPATH": str(REPO)}  # fmt: skip
            command = torchrun_command(config, output, node_rank == 0, endpoint, host.address, iterations)
            started = time.perf_counter()
            process = host.popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
            processes.append((host, interface, started, process))
        try:
            for host, interface, started, process in processes:
                _, err = process.communicate(timeout=timeout)
                runs.append(HostRun(host.name, host.address, interface, process.returncode,
                                    round(time.perf_counter() - started, 1), err[-3000:]))  # fmt: skip
        finally:
            for _, _, _, process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    # The c10d rendezvous, not the command line, decides which host's process is rank 0: the host whose folder exists.
    written = [name for name, output in zip((a.name, b.name), outputs) if output.exists()]
    worst, largest = "", float("inf")  # no weights from one rank 0: nothing is within any bound
    if len(written) == 1:
        last = outputs[(a.name, b.name).index(written[0])] / "last.safetensors"
        worst, largest = largest_excess(read_tensors(last), single_process_reference(config, iterations))
    command = shlex.join(torchrun_command(config, outputs[0], True, f"A:{RENDEZVOUS_PORT}", "A", iterations)[1:])
    return MultiHostResult(
        command="python " + command, iterations=iterations, rule=rule, hosts=runs, hosts_that_wrote=written,
        largest_distance_over_bound=largest, worst_tensor=worst, loadavg=os.getloadavg(),
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--rule", choices=("sgd", "alfa"), default="alfa", help="sgd: second-order MAML")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULT.relative_to(REPO)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="multihost-") as folder:
        result = train_on_two_hosts(Path(folder), args.iterations, args.rule)
    row = {
        "script": "sudo env OMP_NUM_THREADS=1 python bench/multihost_torchrun.py "
        + f"--iterations {args.iterations} --rule {args.rule}",
        **asdict(result), "passed": result.passed,
        "note": "host a runs the command shown with A = its address; host b the same with --rdzv-conf is_host=0 "
        "and its own --local-addr and --output-dir; both with GLOO_SOCKET_IFNAME=<veth>. Timings shared the 2 CPU "
        "cores with other work (loadavg).",
    }  # fmt: skip
    for run in result.hosts:
        print(
            f"{run.host} ({run.address}, {run.interface}): exit {run.returncode} after {run.seconds} s", file=sys.stderr
        )
    print(f"largest distance / derived bound: {result.largest_distance_over_bound:.3g} ({result.worst_tensor}); "
          f"hosts that wrote files: {', '.join(result.hosts_that_wrote) or 'none'}", file=sys.stderr)  # fmt: skip
    if not args.no_write:
        RESULT.write_text(json.dumps(row, indent=2) + "\n")
    if not result.passed:
        for run in result.hosts:
            print(f"--- {run.host} stderr ---\n{run.stderr_tail}", file=sys.stderr)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
