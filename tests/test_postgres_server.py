"""The throw-away PostgreSQL server of tests/support/postgres.py: password authentication, fresh databases, cleanup,
and a server in one simulated host reached from the other over the veth pair only."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from tests.support import netns, postgres


@pytest.fixture(scope="module")
def available() -> None:
    reason = postgres.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests on a real server: {reason}")
        pytest.skip(reason)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_the_server_asks_for_the_password_and_its_folder_is_gone_afterwards(available) -> None:
    with postgres.running_postgres() as server:
        [folder] = [
            conf.parent.parent
            for conf in Path("/tmp").glob("fewshot-pg-*/data/postgresql.conf")
            if f"port = {server.port}\n" in conf.read_text()
        ]
        url = server.create_database("made_here")
        with psycopg.connect(_libpq(url)) as connection:
            assert connection.execute("SELECT current_database(), current_user").fetchone() == ("made_here", "fewshot")
        wrong = _libpq(server.url("made_here")).replace(server.password, "not-the-password")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong)
        with pytest.raises(ValueError, match="database name 'Bad-Name'"):
            server.create_database("Bad-Name")
        server.drop_database("made_here")
        with psycopg.connect(_libpq(server.url())) as connection:
            names = [row[0] for row in connection.execute("SELECT datname FROM pg_database")]
        assert "made_here" not in names
    assert not folder.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_libpq(server.url()), connect_timeout=2)


def test_a_server_in_one_host_is_reached_from_the_other_at_its_address(available) -> None:
    reason = netns.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to make network namespaces: {reason}")
        pytest.skip(reason)
    psql = str(postgres._bin_dir() / "psql")
    with netns.two_hosts("pg") as (a, b), postgres.running_postgres(host=a) as server:
        assert server.host == a.address
        url = _libpq(server.create_database("across"))
        query = [psql, url, "-Atc", "SELECT current_database()"]
        assert b.run(query, capture_output=True, text=True, check=True).stdout.strip() == "across"
        # Not on b's own loopback, and not from this (the root) namespace.
        at_loopback = b.run([psql, url.replace(a.address, "127.0.0.1"), "-Atc", "SELECT 1"], capture_output=True)
        assert at_loopback.returncode != 0
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
