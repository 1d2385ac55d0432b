"""The interface every Neo4j launcher implements, plus helpers they share.

A launcher turns settings into a running Neo4j and a :class:`Neo4jConnection`
(``uri``, ``user``, ``password``, ``database``) that the state store connects with.
"""

from __future__ import annotations

import abc
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Shared helpers, re-exported here because the launchers import them from this module.
from alchemiscale_local.secretfiles import private_dir, read_or_create_secret  # noqa: F401

from ..processes import free_port  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    from neo4j import Driver

    from alchemiscale_local.settings import Settings

PASSWORD_FILE_NAME = "neo4j-password"


class Neo4jLauncherError(RuntimeError):
    """A launcher cannot be used as configured (missing tool, missing setting)."""


class Neo4jStartError(Neo4jLauncherError):
    """Neo4j did not come up; the message carries the likely cause and the log tail."""


@dataclass(frozen=True)
class Neo4jConnection:
    """Where and how to reach a running Neo4j."""

    uri: str
    user: str
    password: str = field(repr=False)
    database: str = "neo4j"

    @property
    def auth(self) -> tuple[str, str]:
        """``(user, password)`` for ``neo4j.GraphDatabase.driver(uri, auth=...)``."""
        return (self.user, self.password)

    def driver(self, **kwargs: Any) -> Driver:
        """A new driver for this connection (the caller closes it)."""
        from neo4j import GraphDatabase

        return GraphDatabase.driver(self.uri, auth=self.auth, **kwargs)


class Neo4jLauncher(abc.ABC):
    """Start, watch and stop one Neo4j for one deployment."""

    #: short name, as in ``settings.neo4j.launcher``
    kind: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def start(self) -> Neo4jConnection:
        """Start Neo4j (or attach to the one already running) and wait until it answers."""

    @abc.abstractmethod
    def wait_ready(self, timeout: float | None = None) -> Neo4jConnection:
        """Block until Bolt answers with our credentials; raise :class:`Neo4jStartError` on timeout."""

    @abc.abstractmethod
    def stop(self) -> bool:
        """Stop Neo4j; return whether something was running. Leaves no process behind."""

    @abc.abstractmethod
    def is_running(self) -> bool:
        """Whether the Neo4j this launcher manages is up (process/container alive)."""

    @abc.abstractmethod
    def connection(self) -> Neo4jConnection:
        """The connection details, without checking that Neo4j answers."""

    @property
    @abc.abstractmethod
    def log_path(self) -> Path | None:
        """Where Neo4j's output goes (``None`` when there is no local log)."""

    def describe(self) -> dict[str, Any]:
        """A JSON-ready status summary (for ``neo4j status``); password left out."""
        info: dict[str, Any] = {"launcher": self.kind, "running": self.is_running()}
        try:
            conn = self.connection()
            info.update(uri=conn.uri, user=conn.user, database=conn.database)
        except Neo4jLauncherError as exc:
            info["error"] = str(exc)
        info["log"] = str(self.log_path) if self.log_path else None
        return info


# -- helpers shared by the launchers -------------------------------------------------


def password_file(settings: Settings) -> Path:
    """The 0600 file that keeps this deployment's generated Neo4j password."""
    return settings.secrets_dir / PASSWORD_FILE_NAME


def load_or_create_password(settings: Settings) -> str:
    """Read the deployment's Neo4j password, generating it (0600 file, 0700 dir) on first use."""
    return read_or_create_secret(password_file(settings), 24)


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails (something already listens there).

    SO_REUSEADDR, as servers set it: connections in TIME_WAIT do not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_bolt(conn: Neo4jConnection, timeout: float = 5.0) -> None:
    """Raise unless Bolt answers and accepts ``conn``'s credentials."""
    with conn.driver(connection_timeout=timeout, connection_acquisition_timeout=timeout) as driver:
        driver.verify_connectivity()


def wait_for_bolt(
    conn: Neo4jConnection,
    timeout: float,
    *,
    alive: Any = None,
    interval: float = 0.5,
) -> Exception | None:
    """Poll until Bolt answers; return ``None`` when it does, else the last error.

    ``alive`` is an optional callable; polling stops early when it returns False.
    Authentication failures are not retried: they will not fix themselves.
    """
    from neo4j.exceptions import AuthError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            check_bolt(conn, timeout=min(5.0, max(1.0, deadline - time.monotonic())))
            return None
        except AuthError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        if alive is not None and not alive():
            return last
        if time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        data = fh.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])
