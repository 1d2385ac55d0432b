"""Two hosts, for real: the deployment in one network namespace, compute and the user in another.

Host "lab" (namespace a) runs ``alchemiscale-local up`` with no compute services of its own; its
Neo4j stays on the lab's loopback. Host "gpu box" (namespace b) reaches the lab only through the
veth link: it runs the compute service and a user script that submits a toy network and waits
for it. Nothing but the API crosses the link.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import netns
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PY = sys.executable
CLI = [PY, "-m", "alchemiscale_local.cli"]
N_TASKS = 4
SCOPE = "lab-twohosts-e2e"

USER_SCRIPT = """
import json, sys
from alchemiscale_local.client import AlchemiscaleLocalClient
from alchemiscale_local.runtimes.toy.network import build_toy_network

creds, n = json.load(open(sys.argv[1])), int(sys.argv[2])
client = AlchemiscaleLocalClient(creds["api_url"], creds["user"]["identifier"], creds["user"]["key"])
network = build_toy_network(n, name="two hosts", settings={"duration_s": 0.05})
net = client.create_network(network, sys.argv[3], visualize=False)
tfs = client.get_network_transformations(net)
client.action_tasks(client.create_transformations_tasks(tfs), net)
counts = client.wait(net, timeout=300, visualize=False)
refs = [r for tf in tfs for r in client.get_transformation_results(tf, return_as="refs")]
print(json.dumps({"network": str(net), "counts": counts, "results": len(refs)}))
"""


@pytest.fixture
def hosts() -> Iterator[tuple[netns.Host, netns.Host]]:
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"two hosts need network namespaces: {reason}")
    with netns.two_hosts() as pair:
        yield pair


def host_env(base: Path, **extra: str) -> dict[str, str]:
    """An environment whose alchemiscale-local directories are this host's own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALCHEMISCALE_LOCAL_") or k.endswith("CACHE_DIR")
    }
    for d in ("DATA", "CONFIG", "LOG", "RUNTIME"):
        env[f"ALCHEMISCALE_LOCAL_{d}_DIR"] = str(base / d.lower())
    env["ALCHEMISCALE_LOCAL_CONFIG_FILE"] = str(base / "absent.toml")
    return {**env, **extra}


def lab_cli(
    lab: netns.Host, env: dict[str, str], *args: str, check: bool = True, timeout: float = 300
) -> Any:
    proc = lab.run([*CLI, *args], env=env, timeout=timeout)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def state_of(env: dict[str, str]) -> dict | None:
    try:
        return json.loads((Path(env["ALCHEMISCALE_LOCAL_RUNTIME_DIR"]) / "default.state.json").read_text())
    except (OSError, ValueError):
        return None


def reachable(host: netns.Host, address: str, port: int) -> bool:
    """Whether a TCP connection from ``host`` to ``address:port`` succeeds."""
    code = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)"
    return host.run([PY, "-c", code, address, str(port)], timeout=30).returncode == 0


def test_compute_and_user_on_another_host_complete_a_network(
    hosts: tuple[netns.Host, netns.Host], tmp_path: Path
) -> None:
    lab, box = hosts
    lab_env = host_env(
        tmp_path / "lab",
        ALCHEMISCALE_LOCAL_API__HOST=lab.address,
        ALCHEMISCALE_LOCAL_COMPUTE__HEARTBEAT_INTERVAL_S="0.5",
    )
    box_env = host_env(tmp_path / "box", ALCHEMISCALE_LOCAL_COMPUTE__MAX_TASKS=str(N_TASKS))
    compute = None
    try:
        out = lab_cli(lab, lab_env, "up", "--detach", "--gpus", "none", "--cpu-services", "0").stdout
        assert "is up" in out, out
        state = state_of(lab_env)
        assert state and state["api_url"].startswith(f"http://{lab.address}:")
        neo4j_port = int(state["neo4j"]["uri"].rsplit(":", 1)[1])
        assert state["neo4j"]["uri"].startswith("bolt://127.0.0.1:")
        # the lab's Neo4j answers on the lab's loopback only: the box cannot reach it
        assert reachable(lab, "127.0.0.1", neo4j_port)
        assert not reachable(box, lab.address, neo4j_port)

        creds = json.loads((tmp_path / "lab" / "config" / "default" / "credentials.json").read_text())
        box_creds = tmp_path / "box-credentials.json"
        box_creds.write_text(json.dumps(creds))  # what the lab would hand over (scp)
        compute = box.popen(
            [PY, "-m", "alchemiscale_local.compute", "--api-url", creds["api_url"]]
            + ["--credentials-file", str(box_creds), "--log-file", str(tmp_path / "box" / "compute.log")],
            env=box_env,
        )
        script = tmp_path / "submit.py"
        script.write_text(USER_SCRIPT)
        user = box.run([PY, str(script), str(box_creds), str(N_TASKS), SCOPE], env=box_env, timeout=400)
        assert user.returncode == 0, (user.stdout, user.stderr)
        report = json.loads(user.stdout.strip().splitlines()[-1])
        assert report["counts"] == {"complete": N_TASKS} and report["results"] == N_TASKS
        # the box's service did the work (the lab has none) and stops by itself after N tasks
        assert compute.wait(timeout=120) == 0
        log = (tmp_path / "box" / "compute.log").read_text()
        assert f"stopped: {N_TASKS} completed, 0 failed" in log, log

        lab_cli(lab, lab_env, "down")
        wait_for(lambda: not lab.pids(), 60, "no process left in the lab's namespace")
    finally:
        if compute is not None and compute.poll() is None:
            compute.kill()
            compute.wait(timeout=10)
        if state_of(lab_env) is not None:
            lab_cli(lab, lab_env, "down", check=False)
