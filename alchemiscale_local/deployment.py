"""``LocalDeployment``: Neo4j -> API -> compute pool on this machine, from Python or ``up``.

    with LocalDeployment(ephemeral=True) as dep:
        client = dep.client()

A state file in the runtime dir records every process (pid + start time) so that
``down`` can stop a deployment from another process, also after the process that
started it was killed. The owner holds the deployment's lock (``launchers/ownership.py``)
while it lives, so a second owner is refused before it touches anything.
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

from alchemiscale_local.backends.objectstore import ObjectStore, ObjectStoreUnavailable
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.launchers.api_server import start_api
from alchemiscale_local.launchers.compute_pool import ComputePool, plan_from_settings
from alchemiscale_local.launchers.neo4j import get_launcher
from alchemiscale_local.launchers.ownership import (
    DeploymentError,
    DeploymentRunning,
    OwnerLock,
    lock_holder,
    marked_processes,
    marker,
    port_file,
    running_message,
)
from alchemiscale_local.launchers.processes import ProcessRecord, find, stop, terminate
from alchemiscale_local.launchers.tls import TLSMaterial, apply_tls
from alchemiscale_local.secretfiles import private_dir, write_private_json
from alchemiscale_local.settings import Settings, load_settings, masked_dump

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

__all__ = ["DeploymentError", "DeploymentRunning", "LocalDeployment", "down", "read_state"]

# Launchers whose Neo4j this deployment owns, and so restarts when it dies.
SUPERVISED_NEO4J = ("jar", "docker")


def read_state(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(settings.state_file.read_text())
    except (OSError, ValueError):
        return None


def ensure_identities(
    store: Neo4jStore, settings: Settings, api_url: str, tls: TLSMaterial | None = None
) -> dict[str, Any]:
    """The default user and compute identities, reused when the credentials file still works.

    Over HTTPS the file pins the API's certificate (``tls``), which the compute services use.
    """
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
    if tls is not None:
        out["tls"] = tls.pin()
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
        #: the certificate the API serves (None: plain HTTP)
        self.tls: TLSMaterial | None = None
        self.started_at: float | None = None
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = OwnerLock(self.settings)
        self._neo4j_lock = threading.Lock()
        self.api_restarts = 0
        self.neo4j_restarts = 0

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
        # Refuse before touching anything: stop() of a refused instance must not stop the owner's parts.
        self._lock.acquire()
        try:
            existing = read_state(self.settings)
            if existing and _owner_alive(existing):  # an owner from before the lock existed
                raise DeploymentRunning(running_message(self.settings, {}))
        except BaseException:
            self._lock.release()
            raise
        if existing:
            log.warning(
                "deployment %r: found the state file of a dead owner (pid %s); cleaning up what it left",
                self.settings.name,
                existing.get("owner_pid"),
            )
            down(self.settings, owner_lock=self._lock)
        self.started_at = time.time()
        private_dir(self.settings.secrets_dir)
        # The store and the results are nobody else's business.
        private_dir(self.settings.data_dir)
        private_dir(self.settings.deployment_dir)
        try:
            # Before anything starts: a bad certificate fails here, in a second.
            self.tls = apply_tls(self.settings)  # the API process and its callers see the files
            say("checking the object store")
            _check_object_store(self.settings)
            say("starting Neo4j")
            conn = self.neo4j.start()
            # Pin the port: a restarted Neo4j must come back where the API's driver looks.
            # (Only ours restart; an external URI may have no port, e.g. Aura's neo4j+s://host.)
            if self.neo4j.kind in SUPERVISED_NEO4J:
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
            self.api, self.api_url = start_api(self.settings, self.settings_file, port=self._api_port())
            if not self.ephemeral:
                # The next `up` comes back on this port: clients made before a restart keep working.
                write_private_json(port_file(self.settings), {"api_port": _port_of(self.api_url)})
            self.credentials = ensure_identities(self.store, self.settings, self.api_url, self.tls)
            specs = plan_from_settings(self.settings.compute)
            say(f"starting {len(specs)} compute service(s)")
            self.pool = ComputePool.for_deployment(
                specs,
                self.settings,
                self.settings_file,
                self.api_url,
                self.settings.credentials_file,
                on_change=self._write_state,
            )
            self.pool.start()
            self._write_state()
            self._watcher = threading.Thread(
                target=self._supervise, name="deployment-supervisor", daemon=True
            )
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
            "tls": {**self.tls.pin(), "cert_file": str(self.tls.cert_path)} if self.tls else None,
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

    def _api_port(self) -> int | None:
        """settings.api.port, else the port a persistent deployment used last time (if still free)."""
        if self.settings.api.port or self.ephemeral:
            return self.settings.api.port or None
        try:
            port = int(json.loads(port_file(self.settings).read_text())["api_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        from alchemiscale_local.launchers.neo4j.base import port_in_use

        if port_in_use(self.settings.api.host, port):
            log.warning(
                "the API's previous port %d is taken; picking another (clients need the new URL)", port
            )
            return None
        return port

    def _supervise(self) -> None:
        """Restart Neo4j (same port, same store) and the API (same port) when their process dies."""
        while not self._watch_stop.wait(1.0):
            self._heal_neo4j()
            if self._watch_stop.is_set():
                return
            self._heal_api()

    def _heal_neo4j(self) -> None:
        if self.neo4j.kind not in SUPERVISED_NEO4J or self.neo4j.is_running():
            return
        log.warning("Neo4j died; restarting it on port %s with the same store", self.settings.neo4j.port)
        try:
            if self.restart_neo4j(only_if_dead=True):
                self.neo4j_restarts += 1
                log.warning("Neo4j is back")
        except Exception as exc:  # e.g. the port is still held: try again next round
            log.error("could not restart Neo4j: %s", exc)

    def _heal_api(self) -> None:
        record = self.api
        if record is None or self.api_url is None or find(record) is not None:
            return
        port = _port_of(self.api_url)
        log.warning("the API process died; restarting it on port %d", port)
        try:
            self.api, _ = start_api(self.settings, self.settings_file, port=port)
            self.api_restarts += 1
            self._write_state()
        except Exception as exc:  # e.g. the port is taken: try again next round
            log.error("could not restart the API: %s", exc)

    def restart_neo4j(self, *, only_if_dead: bool = False) -> bool:
        """Start Neo4j again on the same port (after a crash); the API reconnects by itself.

        Returns whether it was (re)started; ``only_if_dead``: leave a running Neo4j alone.
        """
        with self._neo4j_lock:  # the supervisor and a caller must not start two JVMs on one store
            if only_if_dead and self.neo4j.is_running():
                return False
            self.neo4j.stop()
            self.neo4j.start()
        self._write_state()
        return True

    # -- use ---------------------------------------------------------------------------
    def client(self, **kwargs: Any):
        """A user client for this deployment."""
        from alchemiscale_local.client import AlchemiscaleLocalClient

        if not self.credentials:
            raise DeploymentError("the deployment is not started")
        user = self.credentials["user"]
        if self.tls is not None and "tls_fingerprint" not in kwargs and "ca_cert" not in kwargs:
            kwargs.update(tls_fingerprint=self.tls.sha256, ca_cert=self.tls.cert_pem)
        return AlchemiscaleLocalClient(self.api_url, user["identifier"], user["key"], **kwargs)

    def compute_services(self) -> list[dict[str, Any]]:
        return self.store.list_computeservices() if self.store else []

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop compute services, the API and Neo4j, in that order; remove ephemeral dirs.

        A no-op for an instance that does not own the deployment (e.g. one whose start was refused).
        """
        atexit.unregister(self.stop)
        if not self._lock.held:
            return
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
        # Whatever left the process tree (a protocol child of a killed service) still carries the marker.
        terminate(marked_processes(marker(self.settings)), timeout=10)
        try:
            self.settings.state_file.unlink()
        except OSError:
            pass
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._lock.release()


def _check_object_store(settings: Settings) -> None:
    """A probe write: a missing bucket or wrong keys stop `up` here, not as results that never land."""
    try:
        ObjectStore.from_settings(settings.objectstore).check()
    except ObjectStoreUnavailable as exc:
        raise DeploymentError(
            f"{exc}. Create the bucket (or fix objectstore.url / its credentials) and run up again."
        ) from None


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _owner_alive(state: dict[str, Any]) -> bool:
    pid, created = state.get("owner_pid"), state.get("owner_create_time")
    if not pid or created is None:
        return False
    return find(ProcessRecord("owner", int(pid), float(created))) is not None


def down(settings: Settings, timeout: float = 30.0, *, owner_lock: OwnerLock | None = None) -> dict[str, Any]:
    """Stop a deployment from its state file, whether or not its owner is alive.

    Every process that carries the deployment's marker is ended too, orphans included.
    ``owner_lock``: the caller already owns the deployment (cleaning up after a dead owner).
    """
    state = read_state(settings)
    stopped: dict[str, Any] = {"state_file": state is not None}
    # An owner still starting has no state file yet, but holds the lock: stop it first, or its
    # supervisor would bring back what is stopped below.
    holder = None if owner_lock is not None else lock_holder(settings)
    if holder and holder.get("pid") and holder.get("create_time") is not None:
        stopped["owner"] = True
        stop(
            [ProcessRecord("owner", int(holder["pid"]), float(holder["create_time"]))],
            timeout,
            children=False,
        )
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
    # Wait for the owner to let go, then sweep what escaped the tree (orphans, reparented to init).
    if owner_lock is None:
        _wait_for_owner_exit(settings, timeout)
    leftovers = marked_processes(marker(settings))
    terminate(leftovers, timeout=10)
    stopped["orphans"] = len(leftovers)
    try:
        settings.state_file.unlink()
    except OSError:
        pass
    if state and state.get("ephemeral_root"):
        shutil.rmtree(state["ephemeral_root"], ignore_errors=True)
    return stopped


def _wait_for_owner_exit(settings: Settings, timeout: float) -> None:
    lock = OwnerLock(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.acquire()
        except DeploymentRunning:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.2)
            continue
        lock.release()
        return
