"""`alchemiscale-local up|status|logs|down` as a person runs them: real processes, real Neo4j.

No GPU exists here, so devices are named explicitly (`--gpus 0,1`); what is checked is
the environment each compute service process really sees.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.e2e.cli_helpers import deployment_processes, state_of
from tests.waiting import wait_for

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


FAKE_NVIDIA_SMI = """#!/bin/sh
# FAKE nvidia-smi (no GPU here): four devices, as `nvidia-smi -L` prints them.
for i in 0 1 2 3; do echo "GPU $i: NVIDIA Fake GPU (UUID: GPU-0000000$i-fake)"; done
"""


def registered_services(state: dict) -> list[dict]:
    """The compute services registered in the deployment's Neo4j (connection from its settings file)."""
    from alchemiscale_local.backends.statestore import Neo4jStore

    from alchemiscale_local.settings import settings_from_file

    neo = settings_from_file(Path(state["settings_file"])).neo4j
    store = Neo4jStore.connect(neo.uri, neo.user, neo.password.get_secret_value(), neo.database)
    try:
        return store.list_computeservices()
    finally:
        store.close()


def test_up_detach_pins_gpus_status_logs_down(env, tmp_path):
    """`--gpus 0,1` inside the user's CUDA_VISIBLE_DEVICES=2,3 pins services to devices 2 and 3."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "CUDA_VISIBLE_DEVICES": "2,3"}
    env["COLUMNS"] = "300"  # rich: no wrapped or cut table cells
    try:
        out = run(env, "up", "--detach", "--gpus", "0,1", "--cpu-services", "1").stdout
        assert "is up" in out
        state = state_of(env)
        assert state and state["api_url"].startswith("http://127.0.0.1:")
        expected = {"compute-gpu2-0": "2", "compute-gpu3-0": "3", "compute-cpu-0": ""}
        seen, pid_name = {}, {}
        for svc in state["compute"]:
            environ = psutil.Process(svc["pid"]).environ()
            seen[svc["name"]] = (environ.get("CUDA_VISIBLE_DEVICES"), environ.get("CUDA_DEVICE_ORDER"))
            pid_name[svc["pid"]] = svc["name"]
        assert seen == {name: (gpu, "PCI_BUS_ID") for name, gpu in expected.items()}

        # Each service registers the device it really sees (the API's record of it, in Neo4j).
        def all_registered():
            rows = registered_services(state)
            return rows if {r["pid"] for r in rows} >= set(pid_name) else None

        rows = wait_for(all_registered, 120, "three registered services")
        assert {pid_name[r["pid"]]: r["gpu"] or "" for r in rows if r["pid"] in pid_name} == expected

        status = run(env, "status").stdout
        assert re.search(rf"API\s+{re.escape(state['api_url'])}\s+up\b", status), status
        for r in rows:  # every registered service is listed, with its GPU, and no tasks yet
            assert re.search(
                rf"{re.escape(r['identifier'])}\s*│\s*{r['gpu'] or '-'}\s*│\s*{r['pid']}", status
            ), status
        assert "tasks: none" in status
        # Log content only a working service writes: its registration, with the device it sees.
        gpu3_log = run(env, "logs", "gpu3-0").stdout
        gpu3 = next(r["identifier"] for r in rows if pid_name.get(r["pid"]) == "compute-gpu3-0")
        assert f"registered {gpu3} (CUDA_VISIBLE_DEVICES=3)" in gpu3_log, gpu3_log
        # The API logs nothing at INFO while healthy; an error or traceback in it is a failure.
        api_log = run(env, "logs", "api").stdout
        assert "Traceback" not in api_log and " ERROR " not in api_log, api_log
        assert "no log" in run(env, "logs", "nonsense", check=False).stderr.replace("\n", " ")

        run(env, "down")
        assert state_of(env) is None
        wait_for(lambda: not deployment_processes(env), 30, "no process left after down")
    finally:  # a failed check must not leave the deployment running
        if state_of(env) is not None:
            run(env, "down", check=False)


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
