"""A real, throw-away Redis server for tests and benchmarks, from Debian's ``redis-server``.

:func:`running_redis` starts ``redis-server`` in the foreground on a free port with no persistence (no RDB
snapshots, no append-only file: a test queue need not survive a restart), waits until it answers ``PING``, and on
exit kills it and deletes its working directory. Given a :class:`tests.support.netns.Host`, the server runs inside
that network namespace, listening on the host's address, so the other host reaches it over the veth pair;
protected mode (which refuses clients from other addresses while no password is set) is turned off only there.
The ``PING`` is sent with ``redis-cli`` from beside the server, which works whether or not this process can
reach the server's namespace.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.ports import free_port

if TYPE_CHECKING:
    from tests.support.netns import Host

__all__ = ["RedisServer", "running_redis", "unavailable_reason"]

SERVER = "redis-server"
CLIENT = "redis-cli"
_START_TIMEOUT_S = 30
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def unavailable_reason() -> str | None:
    """Why a server cannot be started and used here (no ``redis-server``, no ``redis-cli``, no Python client);
    None when it can."""
    if shutil.which(SERVER) is None:
        return f"`{SERVER}` is not installed (apt-get install redis-server)"
    if shutil.which(CLIENT) is None:
        return f"`{CLIENT}` is not installed (apt-get install redis-tools)"
    try:
        import redis  # noqa: F401  # RedisHuey's client
    except ImportError:
        return "the redis Python client is not installed (pip install redis)"
    return None


@dataclass(frozen=True)
class RedisServer:
    """A running server: where it listens. ``namespace``: the network namespace it runs in (None: this one)."""

    host: str
    port: int
    namespace: Host | None = None

    def url(self, database: int = 0) -> str:
        """The ``redis://`` URL of logical database ``database`` (what ``FEWSHOT_JOBS_REDIS_URL`` takes)."""
        return f"redis://{self.host}:{self.port}/{database}"

    def cli(self, *argv: str) -> str:
        """Run ``redis-cli`` against this server from beside it; returns its output (e.g. ``cli("PING")``)."""
        command: Sequence[str] = [CLIENT, "-h", self.host, "-p", str(self.port), *argv]
        if self.namespace is not None:
            command = self.namespace.command(command)
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()


@contextmanager
def running_redis(
    *, listen: str = "127.0.0.1", port: int | None = None, host: Host | None = None
) -> Iterator[RedisServer]:
    """Start a fresh Redis server listening on ``listen``:``port`` (a free port when None); kill it on exit.

    With ``host`` the server runs inside that network namespace; ``listen`` then defaults to the host's address.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    if host is not None and listen == "127.0.0.1":
        listen = host.address
    port = port if port is not None else free_port()
    base = Path(tempfile.mkdtemp(prefix="fewshot-redis-"))
    argv = [
        SERVER,
        "--bind", listen,
        "--port", str(port),
        "--save", "",  # no snapshots
        "--appendonly", "no",
        "--dir", str(base),
        "--daemonize", "no",
        # Protected mode refuses clients from other addresses while no password is set: off only on a simulated
        # host's own address, which the other simulated host must reach (never on this machine's interfaces).
        "--protected-mode", "no" if host is not None and listen not in _LOOPBACK else "yes",
    ]  # fmt: skip
    command = host.command(argv) if host is not None else argv
    log_path = base / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115  # closed in finally, after the server is gone
    # `ip netns exec` replaces itself by the server, so this pid is the server's.
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        server = RedisServer(listen, port, host)
        _wait_for_ping(server, process, log_path)
        yield server
    finally:
        process.kill()
        process.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_ping(server: RedisServer, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if server.cli("PING") == "PONG":
                return
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer PING in {_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
