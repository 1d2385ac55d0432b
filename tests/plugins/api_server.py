"""pytest plugin: the real API app under uvicorn on a loopback port, plus clients.

Fixtures:
    api_server       module-scoped :class:`ApiServer` on the session's Neo4j
                     (``neo4j_connection``) and a file object store in a tmp dir, with three
                     identities: ``user`` (scope ``*-*-*``), ``limited`` (``org1-*-*``) and
                     ``compute`` (``*-*-*``). The graph is cleared (identities kept) at start.
    user_client      AlchemiscaleLocalClient of ``user``
    limited_client   AlchemiscaleLocalClient of ``limited``
    compute_client   ComputeClient of ``compute``

Helpers for tests that need their own server (small body limits, short token TTLs):
``make_settings(tmp_dir, **api)`` and ``running_api(neo4j_connection, tmp_dir, **api)``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest

USER = ("test-user", "test-user-key-0123456789abcdef")
LIMITED = ("test-limited", "test-limited-key-0123456789abcdef")
COMPUTE = ("test-compute", "test-compute-key-0123456789abcdef")
JWT_SECRET = "test-jwt-secret-not-for-production-0123456789"
IDENTITIES = {
    "user": (USER, "user", ["*-*-*"]),
    "limited": (LIMITED, "user", ["org1-*-*"]),
    "compute": (COMPUTE, "compute", ["*-*-*"]),
}
# Fast failure in tests: a handful of quick retries.
CLIENT_OPTIONS: dict[str, Any] = {
    "max_retries": 2,
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 0.5,
    "timeout": 120.0,
}


def make_settings(tmp_dir: Path, **api: Any) -> Settings:  # noqa: F821
    """Settings rooted in ``tmp_dir`` with a fixed JWT secret; ``api`` overrides ``settings.api``.

    The user's ALCHEMISCALE_LOCAL_* environment and config file are ignored while resolving.
    """
    from alchemiscale_local.settings import ENV_PREFIX, load_settings

    api_settings = {"jwt_secret": JWT_SECRET, "reaper_interval_s": 3600.0, **api}
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    try:
        for name in saved:
            del os.environ[name]
        os.environ[f"{ENV_PREFIX}CONFIG_FILE"] = str(tmp_dir / "config" / "config.toml")
        return load_settings(
            name="apitest",
            data_dir=tmp_dir / "data",
            config_dir=tmp_dir / "config",
            cache_dir=tmp_dir / "cache",
            log_dir=tmp_dir / "log",
            runtime_dir=tmp_dir / "run",
            objectstore={"url": (tmp_dir / "objects").as_uri()},
            api=api_settings,
        )
    finally:
        for name in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[name]
        os.environ.update(saved)


@contextlib.contextmanager
def serve(app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yield its base URL (port 0: a free one)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="api-server")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the API server thread exited during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not start in time")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class ApiServer:
    """A running API: its URL, settings, stores and the identities' credentials."""

    url: str
    settings: Any
    store: Any
    objects: Any
    app: Any
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    jwt_secret: str = JWT_SECRET
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)

    def client(self, role: str = "user", **options: Any):
        """A user client of identity ``role`` ('user' or 'limited')."""
        from alchemiscale_local.client import AlchemiscaleLocalClient

        ident, key = self.credentials[role]
        return AlchemiscaleLocalClient(self.url, ident, key, **{**CLIENT_OPTIONS, **options})

    def compute(self, role: str = "compute", **options: Any):
        """A compute client."""
        from alchemiscale_local.client import ComputeClient

        ident, key = self.credentials[role]
        return ComputeClient(self.url, ident, key, **{**CLIENT_OPTIONS, **options})

    def token(self, role: str = "user", *, fresh: bool = False) -> str:
        """A bearer token of ``role`` from ``POST /token`` (cached unless ``fresh``)."""
        import httpx

        if fresh or role not in self._tokens:
            ident, key = self.credentials[role]
            resp = httpx.post(f"{self.url}/token", json={"identifier": ident, "key": key}, timeout=30)
            resp.raise_for_status()
            self._tokens[role] = resp.json()["access_token"]
        return self._tokens[role]

    def headers(self, role: str = "user") -> dict[str, str]:
        """``Authorization`` header with a token of ``role``."""
        return {"Authorization": f"Bearer {self.token(role)}"}

    def sign(self, claims: dict[str, Any], secret: str | None = None) -> str:
        """A token signed with the app's secret (or another one): forge expired or odd tokens."""
        return jwt.encode(claims, secret or self.jwt_secret, algorithm="HS256")

    def ensure_identities(self) -> None:
        """(Re)create the three identities with their known keys."""
        for role, ((ident, key), kind, scopes) in IDENTITIES.items():
            self.store.add_identity(ident, kind, key=key, scopes=scopes, replace=True)
            self.credentials[role] = (ident, key)

    def reset_graph(self) -> None:
        """Delete every node except identities."""
        with self.store.driver.session(database=self.store.database) as session:
            session.run(
                "MATCH (n) WHERE NOT n:CredentialedIdentity "
                "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
            ).consume()


@contextlib.contextmanager
def running_api(
    neo4j_connection: Any, tmp_dir: Path, *, reset: bool = True, **api: Any
) -> Iterator[ApiServer]:
    """Build the app on the session's Neo4j and serve it; yield an :class:`ApiServer`."""
    from alchemiscale_local.backends.objectstore import ObjectStore
    from alchemiscale_local.backends.statestore import Neo4jStore

    from alchemiscale_local.api import create_app

    settings = make_settings(tmp_dir, **api)
    store = Neo4jStore.connect(
        neo4j_connection.uri, neo4j_connection.user, neo4j_connection.password, neo4j_connection.database
    )
    objects = ObjectStore.from_settings(settings.objectstore)
    try:
        store.initialize()
        server = ApiServer(url="", settings=settings, store=store, objects=objects, app=None)
        if reset:
            server.reset_graph()
        server.ensure_identities()
        server.app = create_app(settings, store=store, objects=objects)
        with serve(server.app) as url:
            server.url = url
            yield server
    finally:
        store.close()


@pytest.fixture(scope="module")
def api_server(neo4j_connection, tmp_path_factory) -> Iterator[ApiServer]:
    """The API on the session's Neo4j (graph cleared, identities kept) for one test module."""
    with running_api(neo4j_connection, tmp_path_factory.mktemp("api")) as server:
        yield server


@pytest.fixture(scope="module")
def user_client(api_server):
    """A user client with scope ``*-*-*``."""
    with api_server.client("user") as client:
        yield client


@pytest.fixture(scope="module")
def chain_client(api_server):
    """A user client that returns keyed chains even where gufe is installed: for tests of the
    documents as stored and sent (byte-equal round trips, made-up protocol classes)."""
    with api_server.client("user", return_gufe=False) as client:
        yield client


@pytest.fixture(scope="module")
def limited_client(api_server):
    """A user client with scope ``org1-*-*`` only."""
    with api_server.client("limited") as client:
        yield client


@pytest.fixture(scope="module")
def compute_client(api_server):
    """A compute client with scope ``*-*-*``."""
    with api_server.compute() as client:
        yield client
