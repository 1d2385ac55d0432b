"""`alchemiscale-local compute` against a deployment that runs no compute services of its own.

The deployment (real Neo4j, API process) stands in for the remote host; the command runs
as a person or a batch job runs it, as a subprocess with only a compute credentials file.
No GPU exists here: device numbers are given with a fake CUDA_VISIBLE_DEVICES, and what is
checked is the environment each service process really has.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from alchemiscale_local.deployment import LocalDeployment
from alchemiscale_local.runtimes.toy.network import build_toy_network
from alchemiscale_local.secretfiles import write_private_json
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "alchemiscale_local.cli", "compute"]


@pytest.fixture(scope="module")
def dep():
    deployment = LocalDeployment(
        ephemeral=True,
        neo4j={"launcher": "jar"},
        api={"service_ttl_s": 600.0, "reaper_interval_s": 1.0},  # no expiry: only handback frees a task
        compute={"gpus": "none", "cpu_services": 0},
    )
    deployment.start()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def client(dep):
    return dep.client()


@pytest.fixture
def creds(dep, tmp_path) -> Path:
    """A compute credentials file as `identity add --kind compute --export` writes it."""
    assert dep.credentials is not None
    return write_private_json(
        tmp_path / "compute-creds.json", {"api_url": dep.api_url, "compute": dep.credentials["compute"]}
    )


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("ALCHEMISCALE_LOCAL_", "SLURM_"))}
    e["ALCHEMISCALE_LOCAL_CONFIG_FILE"] = str(tmp_path / "absent.toml")
    e["ALCHEMISCALE_LOCAL_DATA_DIR"] = str(tmp_path / "data")
    e["ALCHEMISCALE_LOCAL_COMPUTE__HEARTBEAT_INTERVAL_S"] = "0.5"
    e["ALCHEMISCALE_LOCAL_COMPUTE__IDLE_BACKOFF_S"] = "0.2"
    e["ALCHEMISCALE_LOCAL_COMPUTE__IDLE_BACKOFF_MAX_S"] = "1.0"
    e["COLUMNS"] = "200"
    e.pop("CUDA_VISIBLE_DEVICES", None)
    return e


def start(env, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the compute command did not end in {timeout} s:\n{out}\n{err}") from None
    return proc.returncode, out, err


def submit(client, n: int, scope: str, **toy):
    network = build_toy_network(n, name=f"compute command {scope}", settings=toy)
    net = client.create_network(network, scope)
    tasks = client.create_transformations_tasks(client.get_network_transformations(net))
    client.action_tasks(tasks, net)
    return net, [str(t) for t in tasks]


def statuses(dep, tasks: list[str]) -> list[str | None]:
    return dep.store.get_task_status(tasks)


def holder_of(dep, task: str) -> dict | None:
    return next((s for s in dep.compute_services() if task in s["tasks"]), None)


def no_pool_services(dep, prefix: str) -> bool:
    return not [s for s in dep.compute_services() if s["identifier"].startswith(prefix)]


def test_pool_completes_network_then_ends_at_max_tasks(dep, client, creds, env, tmp_path):
    net, tasks = submit(client, 4, "remote-happy-a", duration_s=0.2)
    t0 = time.monotonic()
    proc = start(
        env, "--credentials", str(creds), "--cpu-services", "2", "--max-tasks", "2", "--name", "happy",
        "--scope", "remote-happy-a",
    )  # fmt: skip
    first_claim = wait_for(
        lambda: time.monotonic() if any(s != "waiting" for s in statuses(dep, tasks)) else None,
        180,
        "a first task claimed",
    )
    wait_for(lambda: statuses(dep, tasks) == ["complete"] * 4, 240, "the network complete")
    complete = time.monotonic()
    code, out, err = finish(proc, 120)
    assert code == 0, (out, err)
    assert "Traceback" not in err, err
    # Each service did its two tasks and ended by itself; the summary says so per service.
    assert "every service ended by itself" in out, out
    assert re.search(r"happy-cpu-0\s*│\s*-\s*│\s*2\s*│\s*0\s*│\s*0\s*│\s*0", out), out
    assert re.search(r"happy-cpu-1\s*│\s*-\s*│\s*2\s*│\s*0\s*│\s*0\s*│\s*0", out), out
    assert "4 completed, 0 failed" in out, out
    assert no_pool_services(dep, "happy"), "the services deregistered"
    print(f"\nFIGURES first claim {first_claim - t0:.1f} s, network complete {complete - t0:.1f} s")


def test_max_time_hands_the_running_task_back(dep, client, creds, env):
    net, tasks = submit(client, 1, "remote-maxtime-a", duration_s=300.0)
    proc = start(
        env, "--credentials", str(creds), "--cpu-services", "1", "--max-time", "40", "--name", "mt",
        "--scope", "remote-maxtime-a",
    )  # fmt: skip
    wait_for(lambda: holder_of(dep, tasks[0]), 40, "the service to claim the task before max-time")
    code, out, err = finish(proc, 120)
    assert code == 0, (out, err)
    assert "max-time reached" in out, out
    assert "Traceback" not in err, err
    # Handed back on deregistration (no expiry in this deployment): waiting, held by nobody.
    assert statuses(dep, tasks) == ["waiting"]
    assert no_pool_services(dep, "mt")


def test_sigterm_mid_task_hands_the_task_back(dep, client, creds, env):
    net, tasks = submit(client, 1, "remote-sigterm-a", duration_s=300.0)
    proc = start(
        env,
        "--credentials",
        str(creds),
        "--cpu-services",
        "1",
        "--name",
        "term",
        "--scope",
        "remote-sigterm-a",
    )
    victim = wait_for(lambda: holder_of(dep, tasks[0]), 120, "the service to claim the task")
    assert statuses(dep, tasks) == ["running"]
    protocol = [p for p in psutil.Process(victim["pid"]).children(recursive=True)]
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc, 120)
    assert code == 0, (out, err)
    assert "SIGTERM" in out and "Traceback" not in err, (out, err)
    assert statuses(dep, tasks) == ["waiting"]
    assert no_pool_services(dep, "term")
    assert protocol and not [p for p in protocol if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert "0 completed, 0 failed" in out, out


def test_gpus_are_pinned_inside_a_fake_visible_list(dep, creds, env, tmp_path):
    """FAKE devices: CUDA_VISIBLE_DEVICES=5,7 names GPUs that do not exist here; --gpus 0,1 means 5 and 7."""
    env = {**env, "CUDA_VISIBLE_DEVICES": "5,7", "SLURM_JOB_ID": "123", "SLURM_ARRAY_TASK_ID": "4"}
    work = tmp_path / "work"
    proc = start(
        env, "--credentials", str(creds), "--gpus", "0,1", "--cpu-services", "1",
        "--name", "pin", "--work-dir", str(work), "--scope", "remote-nothing-here",
    )  # fmt: skip
    try:
        state_file = work / "pin-j123-a4.pool.json"
        state = wait_for(
            lambda: state_file.exists() and json.loads(state_file.read_text()), 120, "the pool's state file"
        )
        seen = {}
        for svc in state["services"]:
            raw = Path(f"/proc/{svc['pid']}/environ").read_bytes().split(b"\0")
            environ = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
            seen[svc["name"]] = (environ.get("CUDA_VISIBLE_DEVICES"), environ.get("CUDA_DEVICE_ORDER"))
        assert seen == {
            "pin-j123-a4-gpu5-0": ("5", "PCI_BUS_ID"),
            "pin-j123-a4-gpu7-0": ("7", "PCI_BUS_ID"),
            "pin-j123-a4-cpu-0": ("", "PCI_BUS_ID"),
        }
        rows = wait_for(
            lambda: (
                (r := [s for s in dep.compute_services() if s["identifier"].startswith("pin_j123_a4")])
                and len(r) == 3
                and r
            ),
            120,
            "three registered services",
        )
        assert sorted(r["gpu"] or "" for r in rows) == ["", "5", "7"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code, out, err = finish(proc, 120)
    assert code == 0, (out, err)
    assert "CUDA_VISIBLE_DEVICES=5" in out and "CUDA_VISIBLE_DEVICES=7" in out, out
    assert no_pool_services(dep, "pin_j123_a4")


@pytest.mark.parametrize(
    "case",
    ["missing", "not-json", "no-compute", "bad-url", "unreachable", "wrong-key", "user-identity"],
)
def test_bad_credentials_give_one_clear_message(dep, creds, env, tmp_path, case):
    data = json.loads(creds.read_text())
    path = tmp_path / "bad.json"
    expected = {
        "missing": "does not exist",
        "not-json": "is not valid JSON",
        "no-compute": "holds no compute identity",
        "bad-url": "is not an http(s) URL",
        "unreachable": "cannot reach the API",
        "wrong-key": "refused compute identity",
        "user-identity": "is a user identity, not a compute one",
    }[case]
    if case == "not-json":
        path.write_text("{not json")
    elif case == "no-compute":
        write_private_json(path, {"api_url": data["api_url"], "user": dep.credentials["user"]})
    elif case == "bad-url":
        write_private_json(path, {**data, "api_url": "ftp://example.org"})
    elif case == "unreachable":
        from alchemiscale_local.launchers.processes import free_port

        write_private_json(path, {**data, "api_url": f"http://127.0.0.1:{free_port()}"})
    elif case == "wrong-key":
        write_private_json(path, {**data, "compute": {**data["compute"], "key": "not-the-key"}})
    elif case == "user-identity":
        write_private_json(path, {**data, "compute": dep.credentials["user"]})
    code, out, err = finish(start(env, "--credentials", str(path), "--cpu-services", "1"), 120)
    assert code != 0
    assert "Traceback" not in err and "Traceback" not in out, err
    assert "Error:" in err and expected in " ".join(err.split()), err
