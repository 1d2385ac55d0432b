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
from tests.e2e.cli_helpers import export_compute_identity
from tests.tls_helpers import make_ca_and_leaf
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.one_env]

CLI = [sys.executable, "-m", "alchemiscale_local.cli", "compute"]


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    """HTTPS on loopback with a certificate from a throwaway CA, as a lab's API elsewhere would be."""
    _ca, cert, key = make_ca_and_leaf(tmp_path_factory.mktemp("tls"), "127.0.0.1")
    deployment = LocalDeployment(
        ephemeral=True,
        neo4j={"launcher": "jar"},
        # No expiry: only a handback (deregistration) can free a claimed task.
        api={"service_ttl_s": 600.0, "reaper_interval_s": 1.0, "tls_cert": cert, "tls_key": key},
        compute={"gpus": "none", "cpu_services": 0},
    )
    deployment.start()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def client(dep):
    return dep.client()


@pytest.fixture(scope="module")
def creds(dep, tmp_path_factory) -> Path:
    """The file `identity add --kind compute --export` writes: URL, identity, certificate pin."""
    path = tmp_path_factory.mktemp("export") / "compute-creds.json"
    data = export_compute_identity(dep.settings, "remote-pool", path)
    assert data["api_url"].startswith("https://127.0.0.1:") and data["tls"]["sha256"], data
    return path


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
    """No registration whose identifier starts with ``prefix`` (the services deregistered)."""
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
    print(out)  # what a person sees (with -s)
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
    # Mid-task: the protocol process runs.
    protocol = wait_for(
        lambda: psutil.Process(victim["pid"]).children(recursive=True), 120, "the protocol process"
    )
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc, 120)
    assert code == 0, (out, err)
    assert "SIGTERM" in out and "Traceback" not in err, (out, err)
    assert statuses(dep, tasks) == ["waiting"]
    assert no_pool_services(dep, "term")
    assert not [p for p in protocol if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert "0 completed, 0 failed" in out, out


def test_a_stop_reaching_the_protocol_process_first_still_hands_back(dep, client, creds, env):
    """As Slurm signals every process of a job: the protocol process gets SIGTERM before its service."""
    net, tasks = submit(client, 1, "remote-order-a", duration_s=300.0)
    proc = start(
        env,
        "--credentials",
        str(creds),
        "--cpu-services",
        "1",
        "--name",
        "order",
        "--scope",
        "remote-order-a",
    )
    victim = wait_for(lambda: holder_of(dep, tasks[0]), 120, "the service to claim the task")
    (protocol,) = wait_for(lambda: psutil.Process(victim["pid"]).children(), 120, "the protocol process")
    protocol.send_signal(signal.SIGTERM)
    psutil.wait_procs([protocol], timeout=60)
    proc.send_signal(signal.SIGTERM)  # then the command, which stops its service
    code, out, err = finish(proc, 120)
    assert code == 0, (out, err)
    assert statuses(dep, tasks) == ["waiting"], "handed back, not recorded as a failure"
    assert "0 completed, 0 failed" in out, out


def test_pool_killed_hard_its_services_still_hand_back(dep, client, creds, env):
    """SIGKILL of the command (Slurm's last resort, the OOM killer): no orphan keeps the task."""
    net, tasks = submit(client, 1, "remote-sigkill-a", duration_s=300.0)
    proc = start(
        env,
        "--credentials",
        str(creds),
        "--cpu-services",
        "1",
        "--name",
        "kill",
        "--scope",
        "remote-sigkill-a",
    )
    victim = wait_for(lambda: holder_of(dep, tasks[0]), 120, "the service to claim the task")
    wait_for(lambda: psutil.Process(victim["pid"]).children(), 120, "the protocol process")
    service = psutil.Process(victim["pid"])
    proc.kill()
    finish(proc, 30)
    wait_for(lambda: statuses(dep, tasks) == ["waiting"], 60, "the task handed back")
    assert no_pool_services(dep, "kill")
    psutil.wait_procs([service], timeout=60)
    assert not service.is_running() or service.status() == psutil.STATUS_ZOMBIE


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


def test_an_identity_revoked_while_running_ends_the_pool_with_one_message(dep, creds, env, tmp_path):
    """Restarting cannot help once the API refuses the identity: the pool ends, exit != 0, says why."""
    key = dep.store.add_identity("revoked-pool", "compute", scopes=["*-*-*"], replace=True)
    path = write_private_json(
        tmp_path / "revoked.json",
        {**json.loads(creds.read_text()), "compute": {"identifier": "revoked-pool", "key": key}},
    )
    proc = start(
        env,
        "--credentials",
        str(path),
        "--cpu-services",
        "1",
        "--name",
        "revoked",
        "--scope",
        "remote-none-a",
    )
    wait_for(lambda: not no_pool_services(dep, "revoked"), 120, "the service registered")
    dep.store.remove_identity("revoked-pool")
    code, out, err = finish(proc, 120)
    assert code == 1, (out, err)
    assert "Traceback" not in err, err
    assert "refused identity revoked-pool while running" in " ".join(err.split()), err
    log = (tmp_path / "data" / "compute" / "logs" / "compute-revoked-cpu-0.log").read_text()
    assert "refuses this service's identity" in log, log


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not-json",
        "no-compute",
        "bad-url",
        "unreachable",
        "wrong-key",
        "user-identity",
        "wrong-pin",
    ],
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
        "wrong-pin": "certificate fingerprint mismatch",
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
    elif case == "wrong-pin":  # another server's certificate: refused before the key is sent
        write_private_json(path, {**data, "tls": {"sha256": "ab" * 32}})
    code, out, err = finish(start(env, "--credentials", str(path), "--cpu-services", "1"), 120)
    assert code != 0
    assert "Traceback" not in err and "Traceback" not in out, err
    assert "Error:" in err and expected in " ".join(err.split()), err
