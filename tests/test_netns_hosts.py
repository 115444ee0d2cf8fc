"""The simulated hosts of tests/support/netns.py: each reaches the other over the veth pair, and only there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.netns import two_hosts, unavailable_reason

CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close(); print('open')\n"
    "except OSError:\n"
    "    print('refused')\n"
)
SERVE = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); print('ready', flush=True)\n"
    "while True: s.accept()[0].close()\n"
)


@pytest.fixture(scope="module")
def hosts():
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to make network namespaces: {reason}")
        pytest.skip(reason)
    with two_hosts("nt") as pair:
        yield pair


def test_a_server_on_one_host_is_reached_from_the_other_only_at_its_veth_address(hosts):
    a, b = hosts
    port = "18765"
    server = b.popen([sys.executable, "-c", SERVE, "0.0.0.0", port], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"

        def probe(host, address):
            return host.run(
                [sys.executable, "-c", CONNECT, address, port], capture_output=True, text=True, check=True
            ).stdout.strip()

        assert probe(a, b.address) == "open"
        assert probe(b, "127.0.0.1") == "open"
        # a's own loopback is its own: nothing listens there.
        assert probe(a, "127.0.0.1") == "refused"
    finally:
        server.kill()
        server.wait()
