"""A free TCP port number for a throw-away server of the tests."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing on this host's loopback listens on now. Inside a fresh network namespace every port is free,
    so the same number serves a server started there; the probe only reads a number the kernel hands out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
