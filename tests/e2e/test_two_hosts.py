"""Two hosts, for real: the deployment in one network namespace, compute and the user in another.

Host "lab" (namespace a) runs ``alchemiscale-local up --bind <its address>`` (HTTPS, a self-signed
certificate) with no compute services of its own; its Neo4j stays on the lab's loopback. It
exports a compute and a user credentials file (``identity add --export``), which pin the
certificate. Host "box" (namespace b) reaches the lab only through the veth link: it runs
``alchemiscale-local compute`` and a user script that submits a toy network and waits for it.
Nothing but the API crosses the link; files pinning another certificate are refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import netns
from tests.e2e.cli_helpers import state_of
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.one_env, pytest.mark.timeout(600)]

PY = sys.executable
CLI = [PY, "-m", "alchemiscale_local.cli"]
N_TASKS = 4
SCOPE = "lab-twohosts-e2e"

# What a user runs on the box: the client made from nothing but the exported credentials file.
USER_SCRIPT = """
import json, sys
from alchemiscale_local.client import AlchemiscaleLocalClient
from alchemiscale_local.runtimes.toy.network import build_toy_network

client = AlchemiscaleLocalClient(credentials_file=sys.argv[1])
network = build_toy_network(int(sys.argv[2]), name="two hosts", settings={"duration_s": 0.05})
net = client.create_network(network, sys.argv[3], visualize=False)
tfs = client.get_network_transformations(net)
client.action_tasks(client.create_transformations_tasks(tfs), net)
counts = client.wait(net, timeout=300, visualize=False)
refs = [r for tf in tfs for r in client.get_transformation_results(tf, return_as="refs")]
print(json.dumps({"api_url": client.api_url, "counts": counts, "results": len(refs)}))
"""

# The same user with a credentials file whose pin is another server's certificate.
REFUSED_SCRIPT = """
import sys
from alchemiscale_local.client import AlchemiscaleLocalClient
from alchemiscale_local.client.pinning import CertificateMismatchError

try:
    AlchemiscaleLocalClient(credentials_file=sys.argv[1]).query_networks()
except CertificateMismatchError as exc:
    print("REFUSED", exc)
    sys.exit(3)
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
    env["COLUMNS"] = "250"  # rich: no wrapped lines
    return {**env, **extra}


def lab_cli(
    lab: netns.Host, env: dict[str, str], *args: str, check: bool = True, timeout: float = 300
) -> Any:
    proc = lab.run([*CLI, *args], env=env, timeout=timeout)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def reachable(host: netns.Host, address: str, port: int) -> bool:
    """Whether a TCP connection from ``host`` to ``address:port`` succeeds."""
    code = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)"
    return host.run([PY, "-c", code, address, str(port)], timeout=30).returncode == 0


def export(lab: netns.Host, env: dict[str, str], name: str, kind: str, path: Path) -> dict[str, Any]:
    """`identity add NAME --kind KIND --export PATH` on the lab: the file another host gets."""
    out = lab_cli(lab, env, "identity", "add", name, "--kind", kind, "--export", str(path)).stdout
    assert f"written to {path}" in out, out
    assert path.stat().st_mode & 0o777 == 0o600
    return json.loads(path.read_text())


def with_foreign_pin(path: Path, target: Path, address: str) -> Path:
    """A copy of a credentials file pinning another server's certificate (same address, new key)."""
    from alchemiscale_local.launchers.tls import ensure_self_signed

    from alchemiscale_local.settings import APISettings

    other = ensure_self_signed(target.parent / "other-server", APISettings(host=address))
    data = json.loads(path.read_text())
    assert data["tls"]["sha256"] != other.sha256
    target.write_text(json.dumps({**data, "tls": other.pin()}))
    target.chmod(0o600)
    return target


def compute_argv(creds: Path, work: Path, *extra: str) -> list[str]:
    """`alchemiscale-local compute` on the box, from the exported credentials file only."""
    return [*CLI, "compute", "--credentials", str(creds), "--work-dir", str(work), *extra]


def test_compute_and_user_on_another_host_complete_a_network_over_pinned_https(
    hosts: tuple[netns.Host, netns.Host], tmp_path: Path
) -> None:
    lab, box = hosts
    lab_env = host_env(tmp_path / "lab", ALCHEMISCALE_LOCAL_COMPUTE__HEARTBEAT_INTERVAL_S="0.5")
    box_env = host_env(tmp_path / "box", ALCHEMISCALE_LOCAL_COMPUTE__HEARTBEAT_INTERVAL_S="0.5")
    handover = tmp_path / "handover"  # what the lab hands to the box (scp, a USB stick)
    handover.mkdir(mode=0o700)
    compute = None
    try:
        out = lab_cli(
            lab, lab_env, "up", "--detach", "--bind", lab.address, "--gpus", "none", "--cpu-services", "0"
        )
        assert "is up" in out.stdout, out.stdout
        state = state_of(lab_env)
        assert state and state["api_url"].startswith(f"https://{lab.address}:"), state
        neo4j_port = int(state["neo4j"]["uri"].rsplit(":", 1)[1])
        assert state["neo4j"]["uri"].startswith("bolt://127.0.0.1:")
        # the lab's Neo4j answers on the lab's loopback only: the box cannot reach it
        assert reachable(lab, "127.0.0.1", neo4j_port)
        assert not reachable(box, lab.address, neo4j_port)

        compute_creds = handover / "box-compute.json"
        user_creds = handover / "box-user.json"
        exported = export(lab, lab_env, "box-compute", "compute", compute_creds)
        assert exported["api_url"] == state["api_url"] and exported["tls"]["sha256"]
        export(lab, lab_env, "box-user", "user", user_creds)

        # One CPU service that ends after N tasks; then the command ends by itself.
        compute_out = tmp_path / "box" / "compute.out"
        compute_out.parent.mkdir(parents=True, exist_ok=True)
        with open(compute_out, "w") as out_file:
            compute = box.popen(
                compute_argv(compute_creds, tmp_path / "box" / "work", "--cpu-services", "1")
                + ["--gpus", "none", "--max-tasks", str(N_TASKS)],
                env=box_env,
                stdout=out_file,
                stderr=subprocess.STDOUT,
            )
        script = tmp_path / "submit.py"
        script.write_text(USER_SCRIPT)
        user = box.run([PY, str(script), str(user_creds), str(N_TASKS), SCOPE], env=box_env, timeout=400)
        assert user.returncode == 0, (user.stdout, user.stderr)
        report = json.loads(user.stdout.strip().splitlines()[-1])
        assert report["api_url"] == state["api_url"]
        assert report["counts"] == {"complete": N_TASKS} and report["results"] == N_TASKS
        # the box's service did the work (the lab has none) and stops by itself after N tasks
        assert compute.wait(timeout=120) == 0, compute_out.read_text()
        out = compute_out.read_text()
        assert f"-> {state['api_url']} (TLS, pinned certificate)" in out, out
        assert "every service ended by itself" in out, out
        assert re.search(rf"│\s*{N_TASKS}\s*│\s*0\s*│", out), out  # completed N, failed 0

        # A compute credentials file pinning another certificate: one clear message, exit != 0.
        foreign_compute = with_foreign_pin(compute_creds, handover / "foreign-compute.json", lab.address)
        refused = box.run(
            compute_argv(
                foreign_compute, tmp_path / "box" / "work2", "--cpu-services", "1", "--gpus", "none"
            ),
            env=box_env,
            timeout=120,
        )
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "certificate fingerprint mismatch" in said, said
        assert "Traceback" not in said, said

        # A credentials file pinning another certificate is refused before anything is sent.
        foreign = with_foreign_pin(user_creds, handover / "foreign-user.json", lab.address)
        refused_script = tmp_path / "refused.py"
        refused_script.write_text(REFUSED_SCRIPT)
        refused = box.run([PY, str(refused_script), str(foreign)], env=box_env, timeout=120)
        assert refused.returncode == 3, (refused.stdout, refused.stderr)
        assert "certificate fingerprint mismatch" in refused.stdout, refused.stdout
        assert "Traceback" not in refused.stdout + refused.stderr

        lab_cli(lab, lab_env, "down")
        wait_for(lambda: not lab.pids(), 60, "no process left in the lab's namespace")
    finally:
        if compute is not None and compute.poll() is None:
            compute.kill()
            compute.wait(timeout=10)
        if state_of(lab_env) is not None:
            lab_cli(lab, lab_env, "down", check=False)
