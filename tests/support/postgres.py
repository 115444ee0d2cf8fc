"""A real, throw-away PostgreSQL server for tests and benchmarks, from the installed server binaries.

:func:`running_postgres` runs ``initdb`` into a fresh directory under /tmp, starts the server on a free port with
password (SCRAM) authentication for one superuser role, waits until it accepts connections, and on exit stops it
and deletes the directory. It uses the Debian ``postgresql`` package's binaries (``/usr/lib/postgresql/N/bin``) or
the ones on ``PATH``; nothing is installed or left behind.

The server refuses to run as root, so under root every server command runs as the ``postgres`` system user
(``runuser -u postgres``); the data directory is made with :func:`tempfile.mkdtemp` directly under /tmp, not in
pytest's root-only ``tmp_path``, and handed to that user. Given a :class:`tests.support.netns.Host`, every server
command runs inside that network namespace, so the server is reachable at that host's address only.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
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

__all__ = ["PostgresServer", "running_postgres", "unavailable_reason"]

SUPERUSER = "fewshot"
SERVER_USER = "postgres"  # the system user the server runs as when we are root
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_START_TIMEOUT_S = 30


def _bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: the newest Debian install, else the one on ``PATH``."""
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(re.findall(r"\d+", p)[0]), reverse=True
    )
    if debian:
        return Path(debian[0]).parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    return None


def _runs_as_server_user() -> bool:
    return os.geteuid() == 0


def unavailable_reason() -> str | None:
    """Why a server cannot be started here (no binaries, no ``postgres`` user under root); None when it can."""
    if os.name != "posix":
        return "the PostgreSQL test server needs Linux"
    if _bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found (apt-get install postgresql)"
    if _runs_as_server_user():
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and there is no `{SERVER_USER}` user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root, and `runuser` (util-linux) is missing"
    return None


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and the superuser role to connect as.

    ``namespace`` is the network namespace it runs in (None: this one); clients outside it cannot reach it.
    """

    host: str
    port: int
    user: str
    password: str
    namespace: Host | None = None

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server, with the psycopg 3 driver."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name`` (a fresh, empty one); returns its URL."""
        self._admin(f'CREATE DATABASE "{_checked_name(name)}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE name``, closing the connections still open to it (``WITH (FORCE)``, PostgreSQL 13+)."""
        self._admin(f'DROP DATABASE IF EXISTS "{_checked_name(name)}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        """Run ``statement`` outside a transaction on the ``postgres`` database, as the superuser."""
        if self.namespace is None:
            import psycopg

            with psycopg.connect(self._libpq_url("postgres"), autocommit=True) as connection:
                connection.execute(statement)
        else:
            # Our namespace cannot reach the server's; psql runs beside it.
            psql = str(_bin_dir() / "psql")
            argv = [psql, "-v", "ON_ERROR_STOP=1", "-q", "-c", statement, self._libpq_url("postgres")]
            subprocess.run(self.namespace.command(argv), check=True, capture_output=True, text=True)

    def _libpq_url(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


def _checked_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: use lower-case letters, digits and _ (at most 63)")
    return name


def _server_command(argv: Sequence[str], host: Host | None) -> list[str]:
    command = list(argv)
    if _runs_as_server_user():
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    if host is not None:
        command = host.command(command)
    return command


def _run(argv: Sequence[str], host: Host | None, what: str) -> None:
    result = subprocess.run(_server_command(argv, host), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"PostgreSQL {what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _chown_to_server_user(path: Path) -> None:
    if _runs_as_server_user():
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@contextmanager
def running_postgres(
    *, listen: str = "127.0.0.1", port: int | None = None, host: Host | None = None
) -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL server listening on ``listen``:``port`` (a free port when None); stop it on exit.

    With ``host`` the server runs inside that network namespace; ``listen`` then defaults to the host's address.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    if host is not None and listen == "127.0.0.1":
        listen = host.address
    bin_dir = _bin_dir()
    port = port if port is not None else free_port()
    password = secrets.token_hex(16)
    base = Path(tempfile.mkdtemp(prefix="fewshot-pg-", dir="/tmp"))
    data = base / "data"
    started = False
    try:
        os.chmod(base, 0o700)
        _chown_to_server_user(base)
        password_file = base / "password"
        password_file.write_text(password + "\n")
        _chown_to_server_user(password_file)
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(password_file)]
        # --no-sync: a test cluster need not survive a crash; C locale: no dependence on installed locales.
        initdb += ["--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync", "--no-instructions"]
        _run(initdb, host, "initdb")
        # Test speed over durability: fsync and synchronous commit off, no full-page writes, small buffers.
        # The connection limit leaves room for the load test's writers and readers and several test workers.
        settings = {
            "listen_addresses": f"'{listen}'",
            "port": str(port),
            "unix_socket_directories": f"'{base}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": "200",
            "log_min_messages": "warning",
        }
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\n# tests/support/postgres.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        (data / "pg_hba.conf").write_text(
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all 10.0.0.0/8 scram-sha-256\n"
        )
        pg_ctl = str(bin_dir / "pg_ctl")
        # -w: pg_ctl returns once the server accepts connections.
        start = [pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", str(_START_TIMEOUT_S), "start"]
        result = subprocess.run(_server_command(start, host), capture_output=True, text=True)
        started = True
        if result.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start ({result.returncode}):\n{result.stderr}\n{log}")
        server = PostgresServer(listen, port, SUPERUSER, password, host)
        if host is None:
            _wait_for_tcp(server)
        yield server
    finally:
        if started:
            stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(_server_command(stop, host), capture_output=True, text=True)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_tcp(server: PostgresServer) -> None:
    """Connect over TCP with the password, as clients will (pg_ctl -w checks the Unix socket)."""
    import psycopg

    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(server._libpq_url("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
