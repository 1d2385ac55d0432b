"""``LocalDeployment``: Neo4j -> API -> compute pool on this machine, from Python or ``up``.

    with LocalDeployment(ephemeral=True) as dep:
        client = dep.client()

A state file in the runtime dir records every process (pid + start time) so that
``down`` can stop a deployment from another process, also after the process that
started it was killed.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.launchers.api_server import start_api
from alchemiscale_local.launchers.compute_pool import ComputePool, plan_from_settings
from alchemiscale_local.launchers.neo4j import get_launcher
from alchemiscale_local.launchers.processes import ProcessRecord, find, stop
from alchemiscale_local.secretfiles import private_dir, write_private_json
from alchemiscale_local.settings import Settings, load_settings, masked_dump

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class DeploymentError(RuntimeError):
    """A deployment could not start, or its state is not what was expected."""


def read_state(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(settings.state_file.read_text())
    except (OSError, ValueError):
        return None


def ensure_identities(store: Neo4jStore, settings: Settings, api_url: str) -> dict[str, Any]:
    """The default user and compute identities, reused when the credentials file still works."""
    creds: dict[str, Any] = {}
    try:
        creds = json.loads(settings.credentials_file.read_text())
    except (OSError, ValueError):
        pass
    out: dict[str, Any] = {"api_url": api_url}
    for kind in ("user", "compute"):
        entry = creds.get(kind) or {}
        ident, key = entry.get("identifier"), entry.get("key")
        if not (ident and key and store.authenticate(ident, key)):
            ident = f"{settings.name}-{kind}"
            key = store.add_identity(ident, kind, scopes=["*-*-*"], replace=True)
        out[kind] = {"identifier": ident, "key": key}
    write_private_json(settings.credentials_file, out)
    return out


class LocalDeployment:
    """Start and stop a whole deployment; the notebook entry point and what ``up`` uses."""

    def __init__(
        self, settings: Settings | None = None, *, ephemeral: bool = False, **overrides: Any
    ) -> None:
        self._tmp: Path | None = None
        if ephemeral:
            self._tmp = Path(tempfile.mkdtemp(prefix="alchemiscale-local-"))
            for d in ("data_dir", "config_dir", "log_dir", "runtime_dir"):
                overrides.setdefault(d, self._tmp / d.removesuffix("_dir"))
            overrides.setdefault("name", "ephemeral")
        self.settings = settings if settings is not None and not overrides else load_settings(**overrides)
        self.ephemeral = ephemeral
        self.neo4j = get_launcher(self.settings)
        self.store: Neo4jStore | None = None
        self.pool: ComputePool | None = None
        self.api: ProcessRecord | None = None
        self.api_url: str | None = None
        self.credentials: dict[str, Any] | None = None
        self.started_at: float | None = None
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.api_restarts = 0

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> LocalDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def settings_file(self) -> Path:
        return self.settings.secrets_dir / "deployment-settings.json"

    # -- start -------------------------------------------------------------------------
    def start(self, progress: Progress | None = None) -> LocalDeployment:
        say = progress or (lambda msg: log.info(msg))
        existing = read_state(self.settings)
        if existing and _owner_alive(existing):
            raise DeploymentError(
                f"deployment {self.settings.name!r} is already running (pid {existing.get('owner_pid')}); "
                "run `alchemiscale-local down` first, or use another --name"
            )
        self.started_at = time.time()
        private_dir(self.settings.secrets_dir)
        try:
            say("starting Neo4j")
            conn = self.neo4j.start()
            # Pin the port: a restarted Neo4j must come back where the API's driver looks.
            self.settings.neo4j.port = int(conn.uri.rsplit(":", 1)[1])
            self.store = Neo4jStore.connect(conn.uri, conn.user, conn.password, conn.database)
            self.store.initialize()
            # Children inherit the resolved settings, Neo4j connection included, from a 0600 file.
            child = masked_dump(self.settings, reveal=True)
            child["neo4j"].update(
                uri=conn.uri, user=conn.user, password=conn.password, database=conn.database
            )
            write_private_json(self.settings_file, child)
            say("starting the API")
            self.api, self.api_url = start_api(self.settings, self.settings_file)
            self.credentials = ensure_identities(self.store, self.settings, self.api_url)
            specs = plan_from_settings(self.settings.compute)
            say(f"starting {len(specs)} compute service(s)")
            self.pool = ComputePool(
                specs,
                self.settings,
                self.settings_file,
                self.api_url,
                self.settings.credentials_file,
                on_change=self._write_state,
            )
            self.pool.start()
            self._write_state()
            self._watcher = threading.Thread(target=self._watch_api, name="api-supervisor", daemon=True)
            self._watcher.start()
            # A notebook kernel that exits without dep.stop() still takes its processes along.
            atexit.register(self.stop)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_state(self) -> None:
        state = {
            "name": self.settings.name,
            "owner_pid": os.getpid(),
            "owner_create_time": psutil.Process().create_time(),
            "started_at": self.started_at,
            "api_url": self.api_url,
            "api": self.api.to_dict() if self.api else None,
            "neo4j": self.neo4j.describe(),
            "compute": [
                {**r.to_dict(), "gpu": spec.gpu}
                for r, spec in zip(self.pool.records(), self.pool.specs, strict=False)
            ]
            if self.pool
            else [],
            "settings_file": str(self.settings_file),
            "ephemeral_root": str(self._tmp) if self._tmp else None,
        }
        write_private_json(self.settings.state_file, state)

    def _watch_api(self) -> None:
        """Restart the API on the same port if its process dies (services reconnect by URL)."""
        while not self._watch_stop.wait(1.0):
            record = self.api
            if record is None or find(record) is not None:
                continue
            port = int(self.api_url.rsplit(":", 1)[1])
            log.warning("the API process died; restarting it on port %d", port)
            try:
                self.api, _ = start_api(self.settings, self.settings_file, port=port)
                self.api_restarts += 1
                self._write_state()
            except Exception as exc:  # e.g. the port is taken: try again next round
                log.error("could not restart the API: %s", exc)

    def restart_neo4j(self) -> None:
        """Start Neo4j again on the same port (after a crash); the API reconnects by itself."""
        self.neo4j.stop()
        self.neo4j.start()

    # -- use ---------------------------------------------------------------------------
    def client(self, **kwargs: Any):
        """A user client for this deployment."""
        from alchemiscale_local.client import AlchemiscaleLocalClient

        if not self.credentials:
            raise DeploymentError("the deployment is not started")
        user = self.credentials["user"]
        return AlchemiscaleLocalClient(self.api_url, user["identifier"], user["key"], **kwargs)

    def compute_services(self) -> list[dict[str, Any]]:
        return self.store.list_computeservices() if self.store else []

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop compute services, the API and Neo4j, in that order; remove ephemeral dirs."""
        atexit.unregister(self.stop)
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
        if self.api is not None:
            stop([self.api])
            self.api = None
        if self.store is not None:
            self.store.close()
            self.store = None
        try:
            self.neo4j.stop()
        except Exception as exc:  # keep tearing down; report what could not be stopped
            log.warning("could not stop Neo4j: %s", exc)
        try:
            self.settings.state_file.unlink()
        except OSError:
            pass
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _owner_alive(state: dict[str, Any]) -> bool:
    pid, created = state.get("owner_pid"), state.get("owner_create_time")
    if not pid or created is None:
        return False
    return find(ProcessRecord("owner", int(pid), float(created))) is not None


def down(settings: Settings, timeout: float = 30.0) -> dict[str, Any]:
    """Stop a deployment from its state file, whether or not its owner is alive."""
    state = read_state(settings)
    stopped: dict[str, Any] = {"state_file": state is not None}
    if state:
        owner = ProcessRecord("owner", int(state["owner_pid"]), float(state["owner_create_time"]))
        # Ask the owner to stop everything in order; whatever it leaves is stopped below.
        stop([owner], timeout=timeout, children=False)
        records = [ProcessRecord.from_dict(r) for r in state.get("compute", [])]
        stop(records, timeout=timeout)
        if state.get("api"):
            stop([ProcessRecord.from_dict(state["api"])], timeout=timeout)
        stopped["compute"] = len(records)
    stopped["neo4j"] = get_launcher(settings).stop()
    try:
        settings.state_file.unlink()
    except OSError:
        pass
    if state and state.get("ephemeral_root"):
        shutil.rmtree(state["ephemeral_root"], ignore_errors=True)
    return stopped
