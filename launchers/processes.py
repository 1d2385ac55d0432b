"""Child processes of a deployment: spawn detached with a log file, find again by record, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass
class ProcessRecord:
    """Enough to find a process again from another process (pid + start time guard against reuse)."""

    name: str
    pid: int
    create_time: float
    log: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ProcessRecord:
        return cls(
            name=data["name"],
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            log=data.get("log"),
        )


def spawn(
    name: str, argv: list[str], log_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.Popen, ProcessRecord]:
    """Start ``argv`` in its own session (a Ctrl-C in the terminal does not reach it directly)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    created = psutil.Process(proc.pid).create_time()
    return proc, ProcessRecord(name=name, pid=proc.pid, create_time=created, log=str(log_path))


def find(record: ProcessRecord) -> psutil.Process | None:
    """The live process a record names, or None (gone, zombie, or the pid was reused)."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def stop(records: list[ProcessRecord], timeout: float = 30.0, *, children: bool = True) -> None:
    """SIGTERM each live process (and its children), wait, then SIGKILL what is left."""
    procs: list[psutil.Process] = []
    for record in records:
        proc = find(record)
        if proc is None:
            continue
        if children:
            try:
                procs.extend(proc.children(recursive=True))
            except psutil.Error:
                pass
        procs.append(proc)
    terminate(procs, timeout)


def terminate(procs: list[psutil.Process], timeout: float = 30.0) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL whatever is left, and wait for it."""
    procs = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module`` immune to the current directory.

    ``-P`` (safe path, Python >= 3.11) keeps the cwd off ``sys.path``: a clone's source
    tree or any folder named ``alchemiscale_local`` there must not shadow the installed package.
    """
    return [sys.executable, "-P", "-m", module, *args]


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONUNBUFFERED"] = "1"
    # Also for grandchildren that run ``python -m`` without -P (protocol helpers).
    env["PYTHONSAFEPATH"] = "1"
    # As activating the environment would: tools that protocols find only on PATH (AmberTools'
    # sqm/antechamber for AM1-BCC charges) live next to this interpreter in a venv or conda env.
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join([bindir, path]) if path else bindir
    env.update(extra or {})
    return env
