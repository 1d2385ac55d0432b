"""``identity add-scope|list-scope|remove-scope`` and ``database check|reset`` on the real Neo4j.

The CLI reaches the session's Neo4j through the external launcher (settings from the
environment), as a user with their own Neo4j would.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from alchemiscale_local.cli import app
from tests.plugins.api_server import running_api

runner = CliRunner()


@pytest.fixture
def cli(isolated_settings, neo4j_connection):
    """Run the CLI against the session's Neo4j (external launcher)."""
    s = isolated_settings
    env = {
        "ALCHEMISCALE_LOCAL_RUNTIME_DIR": str(s.runtime_dir),
        "ALCHEMISCALE_LOCAL_LOG_DIR": str(s.log_dir),
        "ALCHEMISCALE_LOCAL_NEO4J__LAUNCHER": "external",
        "ALCHEMISCALE_LOCAL_NEO4J__URI": neo4j_connection.uri,
        "ALCHEMISCALE_LOCAL_NEO4J__USER": neo4j_connection.user,
        "ALCHEMISCALE_LOCAL_NEO4J__PASSWORD": neo4j_connection.password,
        "ALCHEMISCALE_LOCAL_NEO4J__DATABASE": neo4j_connection.database,
    }

    def invoke(*args: str, input: str | None = None):
        base = ["--data-dir", str(s.data_dir), "--config-dir", str(s.config_dir)]
        return runner.invoke(app, [*base, *args], env=env, input=input)

    invoke.settings = s
    return invoke


def test_add_list_remove_scope(cli) -> None:
    ident = f"scoper-{uuid.uuid4().hex[:8]}"
    assert cli("identity", "add", ident, "--scope", "org1-*-*", "--key", "k" * 32).exit_code == 0
    r = cli("identity", "add-scope", ident, "--scope", "org2-c-*", "--scope", "org1-*-*")
    assert r.exit_code == 0, r.output
    r = cli("identity", "list-scope", ident)
    assert r.exit_code == 0 and r.stdout.split() == ["org1-*-*", "org2-c-*"]
    r = cli("identity", "remove-scope", ident, "--scope", "org1-*-*", "--scope", "org9-*-*")
    assert r.exit_code == 0 and "not held" in r.output and "org9-*-*" in r.output
    assert cli("identity", "list-scope", ident).stdout.split() == ["org2-c-*"]
    cli("identity", "remove", ident)


def test_scope_errors_are_messages(cli) -> None:
    r = cli("identity", "add-scope", f"nobody-{uuid.uuid4().hex[:6]}", "--scope", "org1-*-*")
    assert r.exit_code == 1 and "no identity" in r.output and "Traceback" not in r.output
    ident = f"scoper-{uuid.uuid4().hex[:8]}"
    cli("identity", "add", ident, "--key", "k" * 32)
    r = cli("identity", "add-scope", ident, "--scope", "not a scope")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert cli("identity", "list-scope", ident).stdout.split() == ["*-*-*"]
    cli("identity", "remove", ident)


def test_scope_change_invalidates_tokens(cli, neo4j_connection, tmp_path) -> None:
    """A token issued before add-scope is refused afterwards (the identity version changed)."""
    with running_api(neo4j_connection, tmp_path, reset=False) as server:
        ident, key = f"tok-{uuid.uuid4().hex[:8]}", "t" * 32
        assert cli("identity", "add", ident, "--scope", "org1-*-*", "--key", key).exit_code == 0
        token = httpx.post(f"{server.url}/token", json={"identifier": ident, "key": key}).json()[
            "access_token"
        ]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.url}/identities/{ident}/scopes", headers=headers).json() == ["org1-*-*"]
        assert cli("identity", "add-scope", ident, "--scope", "org2-*-*").exit_code == 0
        deadline = time.monotonic() + 60  # the identity gate re-reads an identity every few seconds
        while (
            status := httpx.get(f"{server.url}/identities/{ident}/scopes", headers=headers).status_code
        ) == 200:
            assert time.monotonic() < deadline, "old token still accepted after a scope change"
            time.sleep(0.5)
        assert status == 401
        fresh = httpx.post(f"{server.url}/token", json={"identifier": ident, "key": key}).json()[
            "access_token"
        ]
        scopes = httpx.get(
            f"{server.url}/identities/{ident}/scopes", headers={"Authorization": f"Bearer {fresh}"}
        ).json()
        assert scopes == ["org1-*-*", "org2-*-*"]
        cli("identity", "remove", ident)


def test_database_check_and_reset(cli, neo4j_connection) -> None:
    from alchemiscale_local.backends.statestore import Neo4jStore

    ident = f"keeper-{uuid.uuid4().hex[:8]}"
    assert cli("identity", "add", ident, "--key", "k" * 32).exit_code == 0
    store = Neo4jStore.connect(
        neo4j_connection.uri, neo4j_connection.user, neo4j_connection.password, neo4j_connection.database
    )
    try:
        store._write("CREATE (:ResetProbe {x: 1})")
        r = cli("database", "check")
        assert r.exit_code == 0, r.output
        assert "ResetProbe" in r.stdout and "CredentialedIdentity" in r.stdout
        # Without --yes it asks; answering no changes nothing.
        r = cli("database", "reset", input="n\n")
        assert r.exit_code == 1 and "not reset" in r.output
        assert store._read("MATCH (n:ResetProbe) RETURN count(n) AS n")[0]["n"] == 1
        r = cli("database", "reset", "--yes")
        assert r.exit_code == 0, r.output
        assert store._read("MATCH (n:ResetProbe) RETURN count(n) AS n")[0]["n"] == 0
        assert store.get_identity(ident)["identifier"] == ident  # identities kept
        # The schema is back after a reset.
        assert store._read("SHOW CONSTRAINTS YIELD name RETURN count(*) AS n")[0]["n"] > 0
    finally:
        cli("identity", "remove", ident)
        store.close()


def test_reset_refuses_while_deployment_runs(cli, neo4j_connection) -> None:
    s = cli.settings
    me = psutil.Process(os.getpid())
    s.state_file.parent.mkdir(parents=True, exist_ok=True)
    # A state file naming a live owner (this test process) is what a running `up` leaves.
    s.state_file.write_text(json.dumps({"owner_pid": me.pid, "owner_create_time": me.create_time()}))
    r = cli("database", "reset", "--yes")
    assert r.exit_code == 1 and "is running" in r.output and "--force" in r.output
