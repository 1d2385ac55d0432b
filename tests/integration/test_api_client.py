"""Client behaviour against live servers: credentials, retries, unavailable backends."""

from __future__ import annotations

import json
import threading
import time

import pytest

from alchemiscale_local.client import AlchemiscaleLocalClient, ComputeClient, ServerUnavailable
from alchemiscale_local.client.credentials import ENV_ID, ENV_KEY, ENV_URL
from alchemiscale_local.secretfiles import write_private_json
from tests.plugins.api_server import CLIENT_OPTIONS, free_port, make_settings, serve


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (ENV_URL, ENV_ID, ENV_KEY):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_FILE", str(tmp_path / "cfg" / "config.toml"))
    return monkeypatch


def test_credentials_file_and_env(api_server, clean_env, tmp_path):
    from alchemiscale_local.settings import load_settings

    user, compute = api_server.credentials["user"], api_server.credentials["compute"]
    path = write_private_json(
        load_settings().credentials_file,
        {
            "api_url": api_server.url,
            "user": {"identifier": user[0], "key": user[1]},
            "compute": {"identifier": compute[0], "key": compute[1]},
        },
    )
    assert path.stat().st_mode & 0o777 == 0o600
    with AlchemiscaleLocalClient(**CLIENT_OPTIONS) as c:
        assert c.identifier == user[0] and [str(s) for s in c.get_scopes()] == ["*-*-*"]
    with ComputeClient(**CLIENT_OPTIONS) as c:
        assert c.identifier == compute[0] and c.get_scopes()

    # Environment beats the file; an explicit argument beats both.
    limited = api_server.credentials["limited"]
    clean_env.setenv(ENV_ID, limited[0])
    clean_env.setenv(ENV_KEY, limited[1])
    with AlchemiscaleLocalClient(**CLIENT_OPTIONS) as c:
        assert [str(s) for s in c.get_scopes()] == ["org1-*-*"]
    clean_env.setenv(ENV_URL, api_server.url)
    path.unlink()
    with AlchemiscaleLocalClient(**CLIENT_OPTIONS) as c:
        assert c.identifier == limited[0] and c.get_scopes()
    with pytest.warns(UserWarning):
        c = AlchemiscaleLocalClient(identifier=user[0], key=user[1], **CLIENT_OPTIONS)
    assert [str(s) for s in c.get_scopes()] == ["*-*-*"]


def test_closed_port_gives_bounded_retries_then_server_unavailable(monkeypatch):
    port = free_port()
    c = AlchemiscaleLocalClient(
        f"http://127.0.0.1:{port}",
        "u",
        "k" * 20,
        max_retries=3,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        connect_timeout=1,
    )
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr("alchemiscale_local.client.base.time.sleep", sleep)
    with pytest.raises(ServerUnavailable) as info:
        c.get_info()
    assert info.value.status is None
    assert "cannot reach the API" in str(info.value) and "4 attempts" in str(info.value)
    # three bounded waits between four attempts (the retry budget, not wall-clock time)
    assert len(slept) == 3 and all(0 < s <= 0.2 for s in slept), slept


def test_client_started_before_the_server(api_server):
    """The first calls fail to connect; retries carry the client over until the server is up."""
    port = free_port()
    ident, key = api_server.credentials["user"]
    c = AlchemiscaleLocalClient(
        f"http://127.0.0.1:{port}",
        ident,
        key,
        max_retries=20,
        retry_base_seconds=0.1,
        retry_max_seconds=0.3,
        connect_timeout=2,
    )
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["scopes"] = c.get_scopes()
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive()  # still retrying
    with serve(api_server.app, port=port):
        worker.join(30)
    assert "error" not in outcome, outcome
    assert [str(s) for s in outcome["scopes"]] == ["*-*-*"]


def test_state_store_down_is_503_and_retried(tmp_path):
    """A server whose Neo4j is unreachable answers 503 (with a message); the client retries, then says so."""
    from alchemiscale_local.backends.objectstore import ObjectStore
    from alchemiscale_local.backends.statestore import Neo4jStore

    from alchemiscale_local.api import create_app

    settings = make_settings(tmp_path)
    store = Neo4jStore.connect(
        f"bolt://127.0.0.1:{free_port()}",
        "neo4j",
        "x",
        max_transaction_retry_time=0.2,
        connection_timeout=1.0,
    )
    app = create_app(settings, store=store, objects=ObjectStore.from_settings(settings.objectstore))
    try:
        with serve(app) as url:
            c = AlchemiscaleLocalClient(
                url, "test-user", "k" * 20, max_retries=2, retry_base_seconds=0.05, retry_max_seconds=0.1
            )
            with pytest.raises(ServerUnavailable) as info:
                c.get_info()  # the token request hits the state store
            assert info.value.status == 503 and "backing service unavailable" in str(info.value)
            import httpx

            resp = httpx.get(f"{url}/ping")
            assert resp.status_code == 200
    finally:
        store.close()


def test_check_reports_a_missing_object_store(api_server, tmp_path):
    """/check is 503 with the failing part named when the object store root cannot be used."""
    from alchemiscale_local.backends.objectstore import ObjectStore

    from alchemiscale_local.api import create_app

    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    objects = ObjectStore((blocker / "objects").as_uri())
    app = create_app(api_server.settings, store=api_server.store, objects=objects)
    with serve(app) as url:
        c = AlchemiscaleLocalClient(
            url,
            *api_server.credentials["user"],
            max_retries=1,
            retry_base_seconds=0.01,
            retry_max_seconds=0.01,
        )
        # A root under a regular file can never be created: /check must say so, never pass.
        with pytest.raises(ServerUnavailable) as info:
            c.check()
        assert info.value.status == 503
        assert "objectstore" in json.dumps(info.value.detail)
        assert "statestore" not in json.dumps(info.value.detail)  # only the broken part is named
