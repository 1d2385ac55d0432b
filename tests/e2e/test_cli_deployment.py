"""`alchemiscale-local up|status|logs|down` as a person runs them: real processes, real Neo4j.

No GPU exists here, so devices are named explicitly (`--gpus 0,1`); what is checked is
the environment each compute service process really sees.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "alchemiscale_local.cli"]


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
    return e


def run(env, *args, timeout=240, check=True):
    proc = subprocess.run(
        [*CLI, "--launcher", "jar", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def state_of(env) -> dict | None:
    path = Path(env["ALCHEMISCALE_LOCAL_RUNTIME_DIR"]) / "default.state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def deployment_processes(env) -> list[psutil.Process]:
    """Every live process whose command line points into this test's directories."""
    roots = [env[f"ALCHEMISCALE_LOCAL_{d}_DIR"] for d in ("DATA", "CONFIG", "LOG", "RUNTIME")]
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if proc.pid != os.getpid() and any(r in cmd for r in roots):
            found.append(proc)
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_detach_pins_gpus_status_logs_down(env):
    out = run(env, "up", "--detach", "--gpus", "0,1", "--cpu-services", "1").stdout
    assert "is up" in out
    state = state_of(env)
    assert state and state["api_url"].startswith("http://127.0.0.1:")
    seen = {}
    for svc in state["compute"]:
        proc = psutil.Process(svc["pid"])
        environ = proc.environ()
        seen[svc["name"]] = (environ.get("CUDA_VISIBLE_DEVICES"), environ.get("CUDA_DEVICE_ORDER"))
    assert seen == {
        "compute-gpu0-0": ("0", "PCI_BUS_ID"),
        "compute-gpu1-0": ("1", "PCI_BUS_ID"),
        "compute-cpu-0": ("", "PCI_BUS_ID"),
    }

    def registered():
        text = run(env, "status").stdout
        return text if text.count("gpu0") + text.count("gpu1") >= 2 and "cpu_0" in text else None

    status = wait_for(registered, 60, "three registered services in `status`")
    assert "up" in status and "tasks:" in status
    logs = run(env, "logs", "api").stdout
    assert "api" in logs
    assert "no log" in run(env, "logs", "nonsense", check=False).stderr.replace("\n", " ")

    run(env, "down")
    assert state_of(env) is None
    wait_for(lambda: not deployment_processes(env), 30, "no process left after down")


def test_down_after_foreground_up_was_sigkilled(env):
    up = subprocess.Popen(
        [*CLI, "--launcher", "jar", "up", "--no-live", "--cpu-services", "1", "--gpus", "none"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: (s := state_of(env)) and s.get("owner_pid") == up.pid and s.get("compute"),
            240,
            "the foreground deployment to be ready",
        )
        assert len(deployment_processes(env)) >= 3  # neo4j, api, compute service
        up.send_signal(signal.SIGKILL)
        up.wait(timeout=10)
        assert deployment_processes(env), "children outlive a SIGKILLed `up`"
        run(env, "down")
        wait_for(lambda: not deployment_processes(env), 30, "no process left after down")
    finally:
        if up.poll() is None:
            up.kill()


def test_status_and_down_without_a_deployment_are_clear(env):
    proc = run(env, "status", check=False)
    assert proc.returncode == 1 and "not running" in proc.stderr and "Traceback" not in proc.stderr
    assert "was not running" in run(env, "down").stdout
