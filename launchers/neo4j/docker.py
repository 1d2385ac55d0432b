"""Run Neo4j in a Docker container via the ``docker`` SDK.

Bolt (7687) is published on 127.0.0.1 only, on a random host port (or
``settings.neo4j.port``) read back after ``container.reload()``. The store is a bind
mount of ``<neo4j_home>/docker/data``; the password is generated once and kept in
the same 0600 file the jar launcher uses. The client is injectable (tests pass a fake).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import (
    Neo4jConnection,
    Neo4jLauncher,
    Neo4jLauncherError,
    Neo4jStartError,
    load_or_create_password,
    password_file,
    wait_for_bolt,
)

if TYPE_CHECKING:  # pragma: no cover
    from alchemiscale_local.settings import Settings

BOLT = "7687/tcp"
LABEL_APP = "alchemiscale-local"
LABEL_DEPLOYMENT = "alchemiscale-local.deployment"
LABEL_COMPONENT = "alchemiscale-local.component"


class DockerUnavailableError(Neo4jLauncherError):
    """No Docker engine answered."""


def container_name(settings: Settings) -> str:
    """``alchemiscale-local-<name>-neo4j``."""
    return f"alchemiscale-local-{settings.name}-neo4j"


def _neo4j_size(value: str) -> str:
    """Settings sizes ('512m') in neo4j.conf spelling ('512m' is accepted as is)."""
    return value.lower()


def container_spec(settings: Settings, password: str) -> dict[str, Any]:
    """The keyword arguments for ``client.containers.run(...)`` derived from settings."""
    n4j = settings.neo4j
    base = settings.neo4j_home / "docker"
    port = n4j.port or None
    spec: dict[str, Any] = {
        "image": n4j.docker_image,
        "name": container_name(settings),
        "detach": True,
        "labels": {
            LABEL_APP: "1",
            LABEL_DEPLOYMENT: settings.name,
            LABEL_COMPONENT: "neo4j",
        },
        "environment": {
            "NEO4J_AUTH": f"neo4j/{password}",
            "NEO4J_server_memory_heap_initial__size": _neo4j_size(n4j.heap),
            "NEO4J_server_memory_heap_max__size": _neo4j_size(n4j.heap),
            "NEO4J_server_memory_pagecache_size": _neo4j_size(n4j.pagecache),
            "NEO4J_db_transaction_timeout": f"{n4j.transaction_timeout_s}s",
            "NEO4J_server_http_enabled": "false",
        },
        "ports": {BOLT: ("127.0.0.1", port)},
        "volumes": {
            str(base / "data"): {"bind": "/data", "mode": "rw"},
            str(base / "logs"): {"bind": "/logs", "mode": "rw"},
        },
    }
    if hasattr(os, "getuid"):
        spec["user"] = f"{os.getuid()}:{os.getgid()}"
    return spec


def default_client_factory() -> Any:
    """``docker.from_env()`` with a short timeout (imported lazily)."""
    import docker

    return docker.from_env(timeout=10)


def connect_docker(factory: Callable[[], Any] | None = None) -> Any:
    """A Docker client that answered ``ping()``; :class:`DockerUnavailableError` otherwise."""
    factory = factory or default_client_factory
    try:
        client = factory()
        if not client.ping():
            raise RuntimeError("ping() returned False")
    except Exception as exc:  # noqa: BLE001 - docker raises many kinds
        raise DockerUnavailableError(
            "No Docker engine answered "
            f"({type(exc).__name__}: {str(exc).strip()[:300] or 'no details'}). Start Docker "
            "(or set DOCKER_HOST), or use another launcher: `--launcher jar` (Java 17+ and Maven) "
            "or `--launcher external` with ALCHEMISCALE_LOCAL_NEO4J__URI."
        ) from exc
    return client


class DockerLauncher(Neo4jLauncher):
    """Neo4j in a container named ``alchemiscale-local-<name>-neo4j``."""

    kind = "docker"

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any | None = None,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(settings)
        self._client = client
        self._factory = client_factory

    @property
    def client(self) -> Any:
        """The Docker client (connected and pinged on first use)."""
        if self._client is None:
            self._client = connect_docker(self._factory)
        return self._client

    @property
    def name(self) -> str:
        return container_name(self.settings)

    @property
    def log_path(self) -> Path:
        return self.settings.neo4j_home / "docker" / "logs" / "neo4j.log"

    def _container(self) -> Any | None:
        from docker.errors import NotFound

        try:
            return self.client.containers.get(self.name)
        except NotFound:
            return None

    def is_running(self) -> bool:
        try:
            container = self._container()
        except DockerUnavailableError:
            return False
        if container is None:
            return False
        container.reload()
        return container.status == "running"

    def _host_port(self, container: Any) -> int:
        container.reload()
        bindings = (container.ports or {}).get(BOLT) or []
        for binding in bindings:
            if binding.get("HostPort"):
                return int(binding["HostPort"])
        raise Neo4jLauncherError(f"container {self.name} publishes no Bolt port")

    def connection(self) -> Neo4jConnection:
        container = self._container()
        if container is None:
            raise Neo4jLauncherError(f"no container {self.name}: start Neo4j first.")
        pw_file = password_file(self.settings)
        if not pw_file.exists():
            raise Neo4jLauncherError(f"no Neo4j password file at {pw_file}.")
        return Neo4jConnection(
            uri=f"bolt://127.0.0.1:{self._host_port(container)}",
            user="neo4j",
            password=pw_file.read_text().strip(),
            database=self.settings.neo4j.database,
        )

    def start(self) -> Neo4jConnection:
        """Create (or restart) the container and wait until Bolt answers."""
        from docker.errors import ImageNotFound

        password = load_or_create_password(self.settings)
        spec = container_spec(self.settings, password)
        for host_dir in spec["volumes"]:
            Path(host_dir).mkdir(parents=True, exist_ok=True)
        container = self._container()
        if container is not None:
            container.reload()
            if container.status == "running":
                return self.wait_ready()
            container.remove(force=True)
        try:
            self.client.containers.run(**spec)
        except ImageNotFound:
            self.client.images.pull(self.settings.neo4j.docker_image)
            self.client.containers.run(**spec)
        return self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> Neo4jConnection:
        timeout = self.settings.neo4j.start_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        conn = self.connection()
        err = wait_for_bolt(conn, max(1.0, deadline - time.monotonic()), alive=self.is_running)
        if err is None:
            return conn
        container = self._container()
        logs = ""
        if container is not None:
            logs = container.logs(tail=40).decode("utf-8", errors="replace")
        raise Neo4jStartError(
            f"Neo4j in container {self.name} did not answer on {conn.uri}: {err}.\n"
            "Likely cause: a store created with another password (NEO4J_AUTH only applies to a "
            f"fresh /data: remove {self.settings.neo4j_home / 'docker' / 'data'}), or a failed "
            f"start.\n--- last lines ---\n{logs}"
        )

    def stop(self, timeout: float = 60.0) -> bool:
        container = self._container()
        if container is None:
            return False
        container.stop(timeout=int(timeout))
        container.remove()
        return True
