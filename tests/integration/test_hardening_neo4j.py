"""A dead or hung Neo4j gives 503 quickly (issue 12): the API answers within the client's
timeout instead of after the driver's ~16 s of connection retries.

Real API under uvicorn; "dead" is a port nothing listens on, "hung" a socket that accepts
connections and never answers (what a stopped JVM looks like from outside).
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.plugins.api_server import free_port, make_settings, serve

# A 503 must come back well inside this; today's ~16 s answer fails as a timeout.
CLIENT_TIMEOUT_S = 8.0


@pytest.fixture
def hung_port():
    """A loopback port that accepts TCP connections and never says a word."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


def _api_on(port: int, tmp_path):
    from alchemiscale_local.backends.objectstore import ObjectStore
    from alchemiscale_local.backends.statestore import Neo4jStore

    from alchemiscale_local.api import create_app

    settings = make_settings(tmp_path)
    store = Neo4jStore.connect(f"bolt://127.0.0.1:{port}", "neo4j", "password", "neo4j")
    app = create_app(settings, store=store, objects=ObjectStore.from_settings(settings.objectstore))
    return store, app


def _assert_fast_503s(url: str, token: str) -> list[float]:
    timings = []
    auth = {"Authorization": f"Bearer {token}"}
    calls = [
        ("POST", "/token", {"json": {"identifier": "someone", "key": "some-key-0123456789"}}),
        ("GET", "/check", {"headers": auth}),
        ("GET", "/networks", {"headers": auth}),
        ("GET", "/tasks", {"headers": auth}),
    ]
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S) as http:
        assert http.get("/ping").status_code == 200  # the API itself is up
        for method, path, kwargs in calls:
            start = time.monotonic()
            resp = http.request(method, path, **kwargs)
            timings.append(time.monotonic() - start)
            assert resp.status_code == 503, (path, resp.status_code, resp.text)
            assert resp.headers.get("Retry-After")
            detail = resp.json()["detail"]
            text = detail["statestore"] if isinstance(detail, dict) else detail
            assert "Neo4j" in text and "not answering" in text, (path, detail)
    return timings


@pytest.mark.parametrize("kind", ["dead", "hung"])
def test_api_answers_503_quickly_when_neo4j_is_down(tmp_path, request, kind):
    port = free_port() if kind == "dead" else request.getfixturevalue("hung_port")
    store, app = _api_on(port, tmp_path)
    try:
        with serve(app) as url:
            import jwt

            from tests.plugins.api_server import JWT_SECRET

            now = int(time.time())
            token = jwt.encode(
                {"sub": "test-user", "kind": "user", "scopes": ["*-*-*"], "iat": now, "exp": now + 600},
                JWT_SECRET,
                algorithm="HS256",
            )
            timings = _assert_fast_503s(url, token)
            print(f"\nNeo4j {kind}: 503 after " + ", ".join(f"{t:.2f}s" for t in timings))
    finally:
        store.close()
