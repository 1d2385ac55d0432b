"""Issue 12, process side, end to end: real Neo4j (jar), API process, compute services, protocol children.

The ToyProtocol (a toy, not chemistry) gives tasks of a known length. Faults are real:
SIGKILL, a cancelled task, an object store whose root stops being writable.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from alchemiscale_local.deployment import LocalDeployment
from alchemiscale_local.runtimes.toy.network import build_toy_network
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TTL_S = 6.0
HEARTBEAT_S = 0.5
CHILD_MODULE = "alchemiscale_local.compute.child"


@pytest.fixture(scope="module")
def dep():
    deployment = LocalDeployment(
        ephemeral=True,
        neo4j={"launcher": "jar"},
        api={"service_ttl_s": TTL_S, "reaper_interval_s": 0.5},
        compute={
            "gpus": "none",
            "cpu_services": 2,
            "heartbeat_interval_s": HEARTBEAT_S,
            "idle_backoff_s": 0.2,
            "idle_backoff_max_s": 1.0,
        },
    )
    deployment.start()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def client(dep):
    return dep.client()


def submit(client, n: int, scope: str, **toy):
    network = build_toy_network(n, name=f"hardening {scope}", settings=toy)
    net = client.create_network(network, scope)
    tfs = client.get_network_transformations(net)
    tasks = client.create_transformations_tasks(tfs)
    client.action_tasks(tasks, net)
    return net, tfs, [str(t) for t in tasks]


def holder(dep, task: str) -> dict | None:
    return next((s for s in dep.compute_services() if task in s["tasks"]), None)


def protocol_children(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for kid in kids:
        try:
            if CHILD_MODULE in " ".join(kid.cmdline()):
                out.append(kid)
        except psutil.Error:
            continue
    return out


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def runs_of(dep, task: str) -> int:
    """How many times any service of the deployment started the task (its `running <task>` log lines)."""
    count = 0
    for path in (dep.settings.log_dir / dep.settings.name).glob("compute-*.log"):
        count += sum(1 for line in path.read_text(errors="replace").splitlines() if f"running {task}" in line)
    return count


def dump_logs(dep) -> None:
    for path in sorted((dep.settings.log_dir / dep.settings.name).glob("*.log")):
        print(f"==== {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-60:]))


def test_protocol_child_dies_with_its_sigkilled_service(dep, client):
    """F5: no orphan keeps computing after its service is SIGKILLed; the task still completes once."""
    net, tfs, (task,) = submit(client, 1, "hardening-f5-orphan", duration_s=20.0)
    victim = wait_for(lambda: holder(dep, task), 90, "a service to claim the task")
    (child,) = wait_for(lambda: protocol_children(victim["pid"]), 60, "the protocol process")
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(child), 15, f"the protocol process {child.pid} to die with its service")
    client.wait(net, timeout=180, visualize=False)
    assert client.get_network_status(net, visualize=False) == {"complete": 1}
    refs = client.get_task_results(task, return_as="refs", visualize=False)
    assert len(refs) == 1 and refs[0]["creator"] != victim["identifier"]


def test_cancelled_running_task_is_stopped_within_a_heartbeat(dep, client):
    """alchemiscale #301: a cancelled task's protocol process ends; the service moves on, pushes nothing."""
    net, tfs, (task,) = submit(client, 1, "hardening-unwanted-stop", duration_s=120.0)
    svc = wait_for(lambda: holder(dep, task), 90, "a service to claim the task")
    (child,) = wait_for(lambda: protocol_children(svc["pid"]), 60, "the protocol process")
    client.cancel_tasks([task], net)
    # one heartbeat to notice, plus a margin for a loaded machine
    wait_for(lambda: not alive(child), HEARTBEAT_S + 10, "the protocol process of the cancelled task to end")
    assert psutil.pid_exists(svc["pid"])
    wait_for(lambda: holder(dep, task) is None, 30, "the service to let the task go")
    assert client.get_task_results(task, return_as="refs", visualize=False) == []
    # the service is free for new work
    net2, _, (task2,) = submit(client, 1, "hardening-unwanted-next1", duration_s=0.2)
    client.wait(net2, timeout=120, visualize=False)
    assert client.get_network_status(net2, visualize=False) == {"complete": 1}


def test_result_survives_an_unwritable_object_store_without_rerun(dep, client):
    """F4 service side: the result waits on the service's disk and lands once storage is back; 0 reruns."""
    objects = Path(dep.settings.objectstore.url.removeprefix("file://"))
    objects.mkdir(parents=True, exist_ok=True)
    aside = objects.with_name("objects-aside")
    # As root chmod changes nothing: a symlink loop makes every write under the root fail (ELOOP).
    os.rename(objects, aside)
    os.symlink(objects.name, objects)
    try:
        net, tfs, (task,) = submit(client, 1, "hardening-f4-store", duration_s=0.2)
        spool = dep.settings.deployment_dir / "compute" / "spool"
        wait_for(lambda: list(spool.glob("*/*.json")), 120, "the result to be spooled on the service's disk")
        # keep it broken for a few push attempts (backoff 0.5, 1, 2 s)
        logs = dep.settings.log_dir / dep.settings.name
        wait_for(
            lambda: (
                sum(
                    p.read_text(errors="replace").count(f"could not push {task}")
                    for p in logs.glob("compute-*.log")
                )
                >= 3
            ),
            60,
            "three failed pushes",
        )
        assert client.get_tasks_status([task]) == ["running"]
    finally:
        os.unlink(objects)
        os.rename(aside, objects)
    try:
        client.wait(net, timeout=120, visualize=False)
    except TimeoutError:
        dump_logs(dep)
        raise
    assert client.get_network_status(net, visualize=False) == {"complete": 1}
    assert len(client.get_task_results(task, return_as="refs", visualize=False)) == 1
    reruns = runs_of(dep, task) - 1
    print(f"reruns under an unwritable object store: {reruns}")
    assert reruns == 0
    assert not list(spool.glob("*/*.json"))


def test_sigkilled_neo4j_comes_back_by_itself(dep, client):
    """Neo4j self-healing: the supervisor restarts it (same port, same store); no task or result lost."""
    net, tfs, tasks = submit(client, 4, "hardening-neo4j-heal", duration_s=1.0)
    wait_for(lambda: any(s["tasks"] for s in dep.compute_services()), 90, "a running task")
    user = dep.credentials["user"]
    token = httpx.post(
        f"{dep.api_url}/token", json={"identifier": user["identifier"], "key": user["key"]}, timeout=30
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    uri = dep.neo4j.connection().uri
    proc = psutil.Process(dep.neo4j.pid)
    killed = time.monotonic()
    proc.kill()
    proc.wait(timeout=30)

    def healthy() -> bool:
        try:
            return httpx.get(f"{dep.api_url}/check", headers=auth, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 240, "Neo4j to come back without help", poll=0.5)
    print(f"Neo4j recovery (SIGKILL -> /check 200): {time.monotonic() - killed:.1f} s")
    assert dep.neo4j.connection().uri == uri
    wait_for(lambda: dep.neo4j_restarts >= 1, 60, "the supervisor to count its restart")
    try:
        client.wait(net, timeout=240, visualize=False)
    except TimeoutError:
        dump_logs(dep)
        raise
    assert client.get_network_status(net, visualize=False) == {"complete": 4}
    # Nothing lost. A task may have run twice: services that could not heartbeat through the
    # outage are expired by the reaper when Neo4j returns (an outage longer than the TTL).
    counts = [len(client.get_transformation_results(tf, return_as="refs", visualize=False)) for tf in tfs]
    print(f"results per transformation after the Neo4j outage: {counts}")
    assert all(n >= 1 for n in counts)


def test_protocol_children_run_with_a_safe_path(dep, client):
    """Issue 14: every Python process of the deployment runs with -P (the cwd is not on sys.path)."""
    net, tfs, (task,) = submit(client, 1, "hardening-safe-path", duration_s=30.0)
    svc = wait_for(lambda: holder(dep, task), 90, "a service to claim the task")
    (child,) = wait_for(lambda: protocol_children(svc["pid"]), 60, "the protocol process")
    for proc in (psutil.Process(dep.api.pid), psutil.Process(svc["pid"]), child):
        cmd = proc.cmdline()
        assert cmd[1:3] == ["-P", "-m"], cmd
    client.cancel_tasks([task], net)


def test_data_dir_is_private(dep):
    """The Neo4j store and the objects live under a 0700 data dir."""
    for path in (dep.settings.data_dir, dep.settings.deployment_dir):
        assert path.stat().st_mode & 0o777 == 0o700, path
