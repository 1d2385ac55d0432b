"""Issue 12, `up`/`down` as a person runs them: real processes, real Neo4j (jar launcher).

F1: a second `up` refuses at once and leaves the running deployment alone; a dead owner's
state file and leftovers are cleaned by the next `up`; the API keeps its port across
restarts; `down` ends every process of the deployment, orphans included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from alchemiscale_local.client import AlchemiscaleLocalClient
from tests.e2e.cli_helpers import state_of
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

CLI = [sys.executable, "-m", "alchemiscale_local.cli", "--launcher", "jar"]
MARKER_ENV = "ALCHEMISCALE_LOCAL_DEPLOYMENT"


@pytest.fixture
def env(tmp_path):
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALCHEMISCALE_LOCAL_") or k.endswith("CACHE_DIR")
    }
    for d in ("DATA", "CONFIG", "LOG", "RUNTIME"):
        e[f"ALCHEMISCALE_LOCAL_{d}_DIR"] = str(tmp_path / d.lower())
    e["ALCHEMISCALE_LOCAL_CONFIG_FILE"] = str(tmp_path / "absent.toml")
    e["ALCHEMISCALE_LOCAL_COMPUTE__HEARTBEAT_INTERVAL_S"] = "0.5"
    yield e
    subprocess.run([*CLI, "down"], env=e, capture_output=True, timeout=240)


def run(env, *args, timeout=300, check=True):
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def neo4j_pid(env) -> int | None:
    try:
        record = json.loads((Path(env["ALCHEMISCALE_LOCAL_RUNTIME_DIR"]) / "default.neo4j.json").read_text())
    except (OSError, ValueError):
        return None
    return int(record["pid"]) if psutil.pid_exists(int(record["pid"])) else None


def deployment_processes(env) -> list[psutil.Process]:
    """Live processes whose command line points into this test's dirs, or that carry its marker."""
    roots = [env[f"ALCHEMISCALE_LOCAL_{d}_DIR"] for d in ("DATA", "CONFIG", "LOG", "RUNTIME")]
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            marked = proc.environ().get(MARKER_ENV, "").startswith(roots[3])
            if (any(r in cmd for r in roots) or marked) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def api_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ping", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_second_up_refuses_at_once_and_down_ends_orphans(env):
    run(env, "up", "--detach", "--gpus", "none", "--cpu-services", "1")
    first = state_of(env)
    assert first and api_up(first["api_url"])
    jvm = neo4j_pid(env)
    assert jvm

    for extra in ([], ["--detach"]):
        started = time.monotonic()
        second = run(env, "up", "--no-live", "--gpus", "none", *extra, check=False, timeout=120)
        took = time.monotonic() - started
        print(f"second `up {' '.join(extra)}` refused in {took:.2f} s (process start included)")
        assert second.returncode == 1, (second.stdout, second.stderr)
        message = " ".join(second.stderr.split())
        assert "already running" in message and "Traceback" not in second.stderr
        assert str(first["owner_pid"]) in message and first["api_url"] in message
        assert "alchemiscale-local down" in message
        # the running deployment is untouched
        assert state_of(env) == first
        assert neo4j_pid(env) == jvm and api_up(first["api_url"])

    # An orphan of the deployment (e.g. a protocol's own child that left the tree) ...
    marker = f"{env['ALCHEMISCALE_LOCAL_RUNTIME_DIR']}/default"
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={**env, MARKER_ENV: marker},
        start_new_session=True,
    )
    try:
        run(env, "down")
        # ... is ended by `down` with everything else
        assert orphan.wait(timeout=30) is not None
        wait_for(lambda: not deployment_processes(env), 30, "no process left after down")
        assert state_of(env) is None
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_up_after_a_killed_owner_cleans_up_and_keeps_the_api_port(env):
    up = subprocess.Popen(
        [*CLI, "up", "--no-live", "--cpu-services", "1", "--gpus", "none"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        first = wait_for(
            lambda: (s := state_of(env)) and s.get("owner_pid") == up.pid and s.get("compute") and s,
            240,
            "the foreground deployment to be ready",
        )
        creds = json.loads(
            (Path(env["ALCHEMISCALE_LOCAL_CONFIG_DIR"]) / "default" / "credentials.json").read_text()
        )
        client = AlchemiscaleLocalClient(first["api_url"], creds["user"]["identifier"], creds["user"]["key"])
        assert client.get_scopes() is not None
        old_api = psutil.Process(first["api"]["pid"])
        up.send_signal(signal.SIGKILL)  # its API, services and Neo4j live on; the state file is stale
        up.wait(timeout=10)
    finally:
        if up.poll() is None:
            up.kill()
    out = run(env, "up", "--detach", "--gpus", "none", "--cpu-services", "1").stdout
    assert "is up" in out
    second = state_of(env)
    assert second["owner_pid"] != first["owner_pid"]
    assert not old_api.is_running() or old_api.status() == psutil.STATUS_ZOMBIE
    # same port: the client made before the restart keeps working
    assert second["api_url"] == first["api_url"]
    assert client.get_scopes() is not None
    # the data dir (Neo4j store, objects) is private
    data = Path(env["ALCHEMISCALE_LOCAL_DATA_DIR"])
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "default").stat().st_mode & 0o777 == 0o700

    # and once more through a clean down/up
    run(env, "down")
    run(env, "up", "--detach", "--gpus", "none", "--cpu-services", "1")
    assert state_of(env)["api_url"] == first["api_url"]
    assert client.get_scopes() is not None
    run(env, "down")
    wait_for(lambda: not deployment_processes(env), 30, "no process left after down")
