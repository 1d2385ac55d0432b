"""Who owns a deployment: one owner process at a time, found again from any process.

The owner (``up``, or a notebook's ``LocalDeployment``) holds an exclusive ``flock`` on
``<runtime dir>/<name>.lock`` for as long as it lives; the kernel drops the lock when the
owner dies, however it dies, so a second owner is refused at once and a dead one is
recognised without guessing from pids. Light on imports: ``up`` checks this before
anything else.

Every process a deployment starts carries ``MARKER_ENV`` in its environment (inherited by
protocol children and their children), so ``down`` can find orphans that left the tree.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:  # pragma: no cover
    from alchemiscale_local.settings import Settings

MARKER_ENV = "ALCHEMISCALE_LOCAL_DEPLOYMENT"


class DeploymentError(RuntimeError):
    """A deployment could not start, or its state is not what was expected."""


class DeploymentRunning(DeploymentError):
    """Another live process owns this deployment."""


def lock_file(settings: Settings) -> Path:
    return settings.runtime_dir / f"{settings.name}.lock"


def port_file(settings: Settings) -> Path:
    """The API port a persistent deployment used last (kept with its config)."""
    return settings.secrets_dir / "api-port.json"


def marker(settings: Settings) -> str:
    """The value of ``MARKER_ENV`` for this deployment's processes (unique per host)."""
    return f"{settings.runtime_dir}/{settings.name}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def running_message(settings: Settings, holder: dict[str, Any]) -> str:
    """Who runs the deployment and how to stop it, for the refusal."""
    state = _read_json(settings.state_file)
    pid = state.get("owner_pid") or holder.get("pid") or "unknown"
    url = state.get("api_url")
    where = f"API {url}" if url else "still starting"
    name_flag = "" if settings.name == "default" else f" --name {settings.name}"
    return (
        f"deployment {settings.name!r} is already running (pid {pid}, {where}). "
        f"Stop it with `alchemiscale-local{name_flag} down`, or start another one with --name."
    )


class OwnerLock:
    """The exclusive lock of one deployment's owner; ``release()`` (or exit) frees it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> OwnerLock:
        """Take the lock or raise :class:`DeploymentRunning` naming the owner; never blocks."""
        path = lock_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(path, "a+")  # noqa: SIM115 - held open for the owner's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            fh.close()
            raise DeploymentRunning(running_message(self.settings, holder)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "create_time": psutil.Process().create_time()}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        # The file stays: unlinking a lock file others may be opening lets two owners in.
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def lock_holder(settings: Settings) -> dict[str, Any] | None:
    """``{pid, create_time}`` of the live owner holding the lock (also while it starts), else None."""
    try:
        OwnerLock(settings).acquire().release()
    except DeploymentRunning:
        return _read_json(lock_file(settings)) or None
    return None


def ensure_not_running(settings: Settings) -> None:
    """Raise :class:`DeploymentRunning` if a live owner holds the deployment (fast, touches nothing)."""
    OwnerLock(settings).acquire().release()


def marked_processes(value: str) -> list[psutil.Process]:
    """Live processes of this user whose environment carries ``MARKER_ENV=value`` (not this one)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER_ENV) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue  # another user's process, or gone
    return found
