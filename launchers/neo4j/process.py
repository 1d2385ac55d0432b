"""Process bookkeeping for the jar launcher: pid files, finding and ending JVMs, log diagnosis."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil

from ..processes import terminate  # noqa: F401  (the launchers call it from here)

LAUNCHER_MAIN = "Launcher.java"
LAUNCHER_MAIN_CLASS = "Launcher"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Atomically write the pid file (JSON), its directory private (0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def read_record(path: Path) -> dict[str, Any] | None:
    """The pid file's contents, or ``None`` when absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_launcher_for(proc: psutil.Process, home: Path | None = None) -> bool:
    """Whether ``proc`` is our Java launcher (for ``home``, when given)."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return False
    if "-cp" not in cmdline or not any(
        arg.endswith(LAUNCHER_MAIN) or arg == LAUNCHER_MAIN_CLASS for arg in cmdline
    ):
        return False
    if home is None:
        return True
    for flag, value in zip(cmdline, cmdline[1:], strict=False):
        if flag == "--home":
            return os.path.realpath(value) == os.path.realpath(home)
    return False


def process_from_record(record: dict[str, Any] | None) -> psutil.Process | None:
    """The live launcher process a pid file names (pid and start time must match)."""
    if not record or "pid" not in record:
        return None
    try:
        proc = psutil.Process(int(record["pid"]))
        created = proc.create_time()
    except (psutil.Error, ValueError):
        return None
    if record.get("create_time") is not None and abs(created - float(record["create_time"])) > 1.0:
        return None  # the pid was reused by another process
    if not _alive(proc) or not is_launcher_for(proc):
        return None
    return proc


def launchers_for_home(home: Path) -> list[psutil.Process]:
    """Every live launcher JVM on this host whose ``--home`` is ``home``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if _alive(proc) and is_launcher_for(proc, home):
                found.append(proc)
        except psutil.Error:
            continue
    return found


# -- log diagnosis -----------------------------------------------------------------

_CAUSES: list[tuple[tuple[str, ...], str]] = [
    (
        ("UnsupportedClassVersionError", "has been compiled by a more recent version"),
        "the Java runtime is too old: Neo4j 5.26 needs Java 17 or newer (set neo4j.java_home "
        "or JAVA_HOME to a Java 17/21)",
    ),
    (
        ("Lock file has been locked by another process", "FileLockException", "store_lock"),
        "the store lock is held by another process: another Neo4j uses this data directory "
        "(stop it with `alchemiscale-local neo4j stop`, or use another --data-dir/--name)",
    ),
    (
        ("Address already in use", "BindException", "PortBindException"),
        "the Bolt port is already in use (choose another neo4j.port, or 0 for a free one)",
    ),
    (
        ("package org.neo4j", "ClassNotFoundException: org.neo4j", "NoClassDefFoundError: org/neo4j"),
        "the Neo4j jars are missing or incomplete: run `alchemiscale-local neo4j fetch --force`",
    ),
    (
        ("jdk.compiler", "Module jdk.compiler not found"),
        "this Java has no compiler module: install a full JDK 17/21 (not only a JRE)",
    ),
    (
        ("OutOfMemoryError",),
        "the JVM ran out of memory: raise neo4j.heap (ALCHEMISCALE_LOCAL_NEO4J__HEAP)",
    ),
    (
        ("AccessDeniedException", "Permission denied"),
        "a file or directory is not writable: check permissions of the data and log dirs",
    ),
]


def diagnose(log_text: str) -> str | None:
    """The likely cause of a failed start, read from the launcher's output."""
    for needles, cause in _CAUSES:
        if any(n in log_text for n in needles):
            return cause
    return None
