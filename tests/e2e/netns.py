"""Two network namespaces joined by a veth pair: two "hosts" on one machine, for the e2e tests.

Each host has its own loopback (so a Neo4j on 127.0.0.1 in one is invisible from the other) and
one address on a private /30 that only the two of them share. Nothing is added to the root
namespace: the veth is created inside the first namespace with its peer inside the second, so
deleting the namespaces removes it. Needs root (``ip netns add``); :func:`unavailable_reason`
says why not otherwise, for a skip.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psutil

#: namespace names are ``<PREFIX><pid of the test process>-<a|b>``; a dead pid's are swept
PREFIX = "alxt-"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable_reason() -> str | None:
    """Why two namespaces cannot be made here (None when they can)."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "`ip netns add` needs root (run as root, or in CI's root container)"
    probe = f"{PREFIX}probe-{os.getpid()}"
    proc = _ip("netns", "add", probe, check=False)
    if proc.returncode != 0:
        return f"`ip netns add` is not permitted here: {proc.stderr.strip()}"
    try:  # some containers allow the namespace but not `exec` into it (remounting /sys)
        ran = _ip("netns", "exec", probe, "true", check=False)
    finally:
        _ip("netns", "del", probe, check=False)
    if ran.returncode != 0:
        return f"`ip netns exec` is not permitted here: {ran.stderr.strip()}"
    return None


@dataclass(frozen=True)
class Host:
    """One namespace: its name and its address on the shared link."""

    netns: str
    address: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` to be run inside this namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.argv(argv), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.argv(argv), **kwargs)

    def pids(self) -> list[int]:
        """Every process living in this namespace now."""
        proc = _ip("netns", "pids", self.netns, check=False)
        return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def _kill_all(hosts: Sequence[Host], timeout: float = 20.0) -> None:
    """SIGTERM every process in the namespaces, SIGKILL what is left after ``timeout``."""
    procs = []
    for host in hosts:
        for pid in host.pids():
            with suppress(psutil.Error):
                procs.append(psutil.Process(pid))
    for p in procs:
        with suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def _delete(names: Sequence[str]) -> None:
    hosts = [Host(n, "") for n in names]
    _kill_all(hosts)
    for name in names:
        _ip("netns", "del", name, check=False)


def sweep_stale() -> None:
    """Remove the namespaces of earlier test processes that died without cleaning up."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    stale = []
    for line in listed:
        name = line.split(" ")[0]
        if not name.startswith(PREFIX):
            continue
        pid = name.removeprefix(PREFIX).split("-")[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            stale.append(name)
    if stale:
        _delete(stale)


@contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Namespaces ``a`` and ``b`` with ``lo`` up, joined by a veth pair on 10.213.<n>.0/30.

    On exit every process inside either namespace is ended and both namespaces (and so the
    veth pair) are deleted, whatever happened in between.
    """
    sweep_stale()
    tag = f"{PREFIX}{os.getpid()}"
    net = f"10.213.{random.randrange(256)}"
    a, b = Host(f"{tag}-a", f"{net}.1"), Host(f"{tag}-b", f"{net}.2")
    veth_a, veth_b = f"ax{os.getpid() % 100000}a", f"ax{os.getpid() % 100000}b"  # <= 15 chars
    made: list[str] = []
    try:
        for host in (a, b):
            _ip("netns", "add", host.netns)
            made.append(host.netns)
        _ip("-n", a.netns, "link", "add", veth_a, "type", "veth", "peer", "name", veth_b, "netns", b.netns)
        for host, dev in ((a, veth_a), (b, veth_b)):
            _ip("-n", host.netns, "addr", "add", f"{host.address}/30", "dev", dev)
            _ip("-n", host.netns, "link", "set", dev, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
        _wait_link(a, b)
        yield a, b
    finally:
        _delete(made)


_LISTEN = (
    "import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(1); "
    "print(s.getsockname()[1], flush=True); s.settimeout(30); s.accept()"
)
_CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()"


def _wait_link(a: Host, b: Host, timeout: float = 20.0) -> None:
    """Until a TCP connection from b reaches a listener on a's address (the veth needs a moment)."""
    listener = a.popen([sys.executable, "-c", _LISTEN, a.address], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        port = listener.stdout.readline().strip()
        deadline = time.monotonic() + timeout
        while True:
            proc = b.run([sys.executable, "-c", _CONNECT, a.address, port], timeout=timeout)
            if proc.returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{b.netns} cannot reach {a.address}:{port}: {proc.stderr.strip()}")
            time.sleep(0.2)
    finally:
        listener.kill()
        listener.wait(timeout=10)
