"""Two "hosts" on one machine: Linux network namespaces joined by a veth pair.

Each host has its own network stack (its own loopback, its own ports) and reaches the other only through the
veth pair's private addresses, so a program that works here talks to the other host over a real network
interface, as it would across machines. Everything the hosts share (the file system, the CPU) is what a test
must not rely on: the tests pass addresses and URLs, never paths, between the hosts.

Making namespaces needs root and iproute2 (``ip``); :func:`unavailable_reason` says why they cannot be made.
Names and the subnet derive from the process id, so two test runs on one machine do not collide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Host", "two_hosts", "unavailable_reason"]


@dataclass(frozen=True)
class Host:
    """One network namespace: its name and its address on the veth pair."""

    name: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's network namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: Sequence[str], **options: Any) -> subprocess.Popen:
        return subprocess.Popen(self.command(argv), **options)

    def run(self, argv: Sequence[str], **options: Any) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), **options)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``); None when they can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    return None


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


@contextmanager
def two_hosts(tag: str = "fs") -> Iterator[tuple[Host, Host]]:
    """Make hosts ``a`` (10.X.Y.1) and ``b`` (10.X.Y.2) joined by a veth pair; remove them on exit.

    Each has its loopback up, so a server in one host can also listen on 127.0.0.1 for itself alone.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    pid = os.getpid()
    # Interface names are at most 15 characters; the /24 is picked from the pid, away from 10.0.x and 10.1.x.
    suffix = f"{tag}{pid % 100000}"
    subnet = f"10.{200 + pid % 50}.{(pid // 50) % 250}"
    hosts = (Host(f"{suffix}a", f"{subnet}.1"), Host(f"{suffix}b", f"{subnet}.2"))
    links = (f"{suffix}va", f"{suffix}vb")
    made: list[str] = []
    try:
        for host in hosts:
            _ip("netns", "add", host.name)
            made.append(host.name)
        _ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for host, link in zip(hosts, links):
            _ip("link", "set", link, "netns", host.name)
            _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", link)
            _ip("-n", host.name, "link", "set", link, "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
        yield hosts
    finally:
        # Deleting a namespace deletes the veth end inside it, and with it its peer.
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
