"""The jar launcher against a real Neo4j: auth, persistence, crash recovery, locks, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from alchemiscale_local.launchers.neo4j.base import Neo4jStartError, password_file
from alchemiscale_local.launchers.neo4j.jar import JarLauncher
from alchemiscale_local.launchers.neo4j.process import launchers_for_home
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("ALCHEMISCALE_LOCAL_TEST_NEO4J_URI")),
    reason="jar launcher tests need the session Neo4j started by the suite",
)


def _java_left(home: Path) -> list[psutil.Process]:
    return launchers_for_home(home)


def test_bolt_answers_with_auth_and_refuses_wrong_password(neo4j_connection, neo4j_launcher):
    assert neo4j_connection.uri.startswith("bolt://127.0.0.1:")
    with neo4j_connection.driver() as driver:
        driver.verify_connectivity()
        records, _, _ = driver.execute_query("RETURN 1 AS one", database_=neo4j_connection.database)
        assert records[0]["one"] == 1
    with GraphDatabase.driver(neo4j_connection.uri, auth=("neo4j", "not-the-password")) as bad:
        with pytest.raises(AuthError):
            bad.verify_connectivity()
    with GraphDatabase.driver(neo4j_connection.uri, auth=None) as anonymous:
        with pytest.raises(AuthError):
            anonymous.verify_connectivity()
    # Bolt listens on loopback only
    port = int(neo4j_connection.uri.rsplit(":", 1)[1])
    listening = [
        c.laddr
        for c in psutil.Process(neo4j_launcher.pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    # (a JVM socket may report IPv4 as IPv4-mapped IPv6)
    addresses = [(a.ip.removeprefix("::ffff:"), a.port) for a in listening]
    assert ("127.0.0.1", port) in addresses
    assert all(ip == "127.0.0.1" for ip, _ in addresses)


def test_password_and_pid_files(neo4j_launcher):
    settings = neo4j_launcher.settings
    pw = password_file(settings)
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600
    assert stat.S_IMODE(pw.parent.stat().st_mode) == 0o700
    assert len(pw.read_text().strip()) >= 24
    record = json.loads(neo4j_launcher.pid_file.read_text())
    assert record["pid"] == neo4j_launcher.pid
    assert record["home"] == str(settings.neo4j_home)
    assert "READY" in neo4j_launcher.log_path.read_text()
    assert str(pw.read_text().strip()) not in neo4j_launcher.log_path.read_text()


def test_clean_graph_fixture(clean_graph, neo4j_connection):
    clean_graph.execute_query("CREATE (:Probe {v: 1})", database_=neo4j_connection.database)
    records, _, _ = clean_graph.execute_query(
        "MATCH (n) RETURN count(n) AS n", database_=neo4j_connection.database
    )
    assert records[0]["n"] == 1


def _count(conn, label: str) -> int:
    with conn.driver() as driver:
        records, _, _ = driver.execute_query(
            f"MATCH (n:{label}) RETURN count(n) AS n", database_=conn.database
        )
    return records[0]["n"]


def _cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALCHEMISCALE_LOCAL_")}
    env.update(
        ALCHEMISCALE_LOCAL_DATA_DIR=str(settings.data_dir),
        ALCHEMISCALE_LOCAL_CONFIG_DIR=str(settings.config_dir),
        ALCHEMISCALE_LOCAL_LOG_DIR=str(settings.log_dir),
        ALCHEMISCALE_LOCAL_RUNTIME_DIR=str(settings.runtime_dir),
        ALCHEMISCALE_LOCAL_CACHE_DIR=str(settings.cache_dir),
    )
    cmd = [sys.executable, "-c", "from alchemiscale_local.cli import main; main()", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(900)
def test_persistence_crash_recovery_lock_and_stop(tmp_path, isolated_settings_factory):
    """Three starts: clean stop/start keeps data; SIGKILL then start recovers; locks are reported."""
    settings = isolated_settings_factory(tmp_path / "a")
    launcher = JarLauncher(settings, watch_parent=True)
    home = settings.neo4j_home
    try:
        # 1st start: write, stop cleanly; no JVM and no pid file left
        t0 = time.monotonic()
        conn = launcher.start()
        first_start = time.monotonic() - t0
        with conn.driver() as driver:
            driver.execute_query("CREATE (:Kept {i: 1})", database_=conn.database)
        t0 = time.monotonic()
        assert launcher.stop() is True
        stop_s = time.monotonic() - t0
        assert _java_left(home) == []
        assert not launcher.pid_file.exists()
        assert launcher.is_running() is False

        # 2nd start: the data is there; write more, then SIGKILL the JVM
        t0 = time.monotonic()
        conn = launcher.start()
        second_start = time.monotonic() - t0
        assert _count(conn, "Kept") == 1
        with conn.driver() as driver:
            driver.execute_query("CREATE (:AfterRestart {i: 2})", database_=conn.database)
        pid = launcher.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while launcher.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not launcher.is_running()

        # 3rd start, from another process (the CLI), after the crash: committed data recovered
        t0 = time.monotonic()
        proc = _cli(settings, "neo4j", "start", "--json")
        cli_start = time.monotonic() - t0
        assert proc.returncode == 0, proc.stdout + proc.stderr
        info = json.loads(proc.stdout)
        assert info["launcher"] == "jar" and info["uri"].startswith("bolt://127.0.0.1:")
        conn = launcher.connection()
        assert conn.uri == info["uri"]
        assert _count(conn, "Kept") == 1
        assert _count(conn, "AfterRestart") == 1

        # A second deployment on the same data dir (own runtime dir, so no shared pid file):
        # refused up front, naming the store lock ...
        other = isolated_settings_factory(tmp_path / "b", data_dir=settings.data_dir)
        assert other.neo4j_home == home
        intruder = JarLauncher(other, watch_parent=True)
        with pytest.raises(Neo4jStartError, match="store lock is held by another process"):
            intruder.start()
        # ... and when the JVM is started anyway, Neo4j's own lock failure is recognised.
        from alchemiscale_local.launchers.neo4j.base import free_port, load_or_create_password

        load_or_create_password(other)
        intruder._spawn(_java(), free_port())
        with pytest.raises(Neo4jStartError) as excinfo:
            intruder.wait_ready(timeout=120)
        message = str(excinfo.value)
        assert "store lock is held by another process" in message
        assert "Lock file has been locked by another process" in message  # the log tail
        assert not intruder.is_running()
        assert _count(conn, "Kept") == 1  # the running one is unharmed

        # the same deployment again: refused because its pid file names a live JVM
        with pytest.raises(Neo4jStartError, match="already running"):
            JarLauncher(settings).start()

        # stop from another process via the CLI; nothing is left behind
        t0 = time.monotonic()
        proc = _cli(settings, "neo4j", "stop")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "stopped" in proc.stdout
        cli_stop = time.monotonic() - t0
        assert _java_left(home) == []
        assert not launcher.pid_file.exists()
        print(
            f"\nneo4j timings: first start {first_start:.1f}s, stop {stop_s:.1f}s, "
            f"restart {second_start:.1f}s, CLI start after SIGKILL {cli_start:.1f}s, "
            f"CLI stop {cli_stop:.1f}s"
        )
    finally:
        launcher.stop(timeout=20)
        for proc in _java_left(home):  # pragma: no cover - only after a failure above
            proc.kill()


def _java():
    from alchemiscale_local.launchers.neo4j.java import find_java

    return find_java()


def test_port_in_use_fails_fast_with_clear_message(tmp_path, isolated_settings_factory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = isolated_settings_factory(tmp_path, neo4j={"port": port})
        with pytest.raises(Neo4jStartError, match=f"port 127.0.0.1:{port} is already in use"):
            JarLauncher(settings).start()
    assert _java_left(settings.neo4j_home) == []


def test_missing_jars_say_run_fetch(tmp_path, isolated_settings_factory):
    settings = isolated_settings_factory(tmp_path, cache_dir=tmp_path / "empty-cache")
    with pytest.raises(Neo4jStartError, match="alchemiscale-local neo4j fetch"):
        JarLauncher(settings).start()


def test_external_launcher_on_the_session_neo4j(isolated_settings, neo4j_connection):
    from alchemiscale_local.launchers.neo4j.auto import get_launcher
    from alchemiscale_local.launchers.neo4j.external import ExternalLauncher
    from pydantic import SecretStr

    settings = isolated_settings.model_copy(deep=True)
    settings.neo4j.launcher = "external"
    settings.neo4j.uri = neo4j_connection.uri
    settings.neo4j.password = SecretStr(neo4j_connection.password)
    launcher = get_launcher(settings)
    assert isinstance(launcher, ExternalLauncher)
    assert launcher.start() == neo4j_connection
    assert launcher.is_running()
    assert launcher.stop() is False  # never stops what it does not own
    settings.neo4j.password = SecretStr("wrong-password")
    with pytest.raises(Neo4jStartError, match="did not answer"):
        ExternalLauncher(settings).start()
