"""`up` and the CLI against an external Neo4j and an S3 object store, as a lab would configure them.

The "lab's" Neo4j is a second JVM started here with the jar launcher (its own port, its own
generated password), reached by the deployment only through ``neo4j.launcher = "external"`` +
URI/user/password. The object store is moto's S3 server on loopback (``s3://bucket/prefix``).
Everything else is real and driven as a person would: ``alchemiscale-local`` subprocesses and
the user client with the deployment's credentials file. One deployment per module (CI time).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alchemiscale_local.runtimes.toy.network import build_toy_network
from tests.conftest import make_isolated_settings
from tests.e2e.cli_helpers import deployment_processes, state_of
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.one_env, pytest.mark.timeout(900)]

CLI = [sys.executable, "-m", "alchemiscale_local.cli"]
BUCKET = "lab-results"
PREFIX = "alchemiscale/e2e"
S3_KEYS = {"key": "lab-access-key", "secret": "lab-secret-key", "client_kwargs": {"region_name": "us-east-1"}}
N_TASKS = 4
SCOPE = "lab-external-backends"
BOLT_DEFAULT_PORT = 7687


# -- the lab's servers ------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab_neo4j(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Neo4j that is not the deployment's: its own JVM, port and password (the jar launcher)."""
    from alchemiscale_local.launchers.neo4j.base import port_in_use
    from alchemiscale_local.launchers.neo4j.fetch import fetch_jars
    from alchemiscale_local.launchers.neo4j.jar import JarLauncher

    # Bolt's default port when free, as a lab's server has it: its URI then names no port (as Aura's)
    port = 0 if port_in_use("127.0.0.1", BOLT_DEFAULT_PORT) else BOLT_DEFAULT_PORT
    settings = make_isolated_settings(tmp_path_factory.mktemp("lab-neo4j"), name="lab", neo4j={"port": port})
    fetch_jars(settings)  # no-op when cached
    launcher = JarLauncher(settings, watch_parent=True)  # the JVM ends with this process
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    """moto's S3 server on loopback with the lab's bucket; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["key"],
            aws_secret_access_key=S3_KEYS["secret"],
        ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def bucket_keys(endpoint: str) -> set[str]:
    """Every object under the deployment's prefix, as ``bucket/prefix/...`` paths."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, **S3_KEYS)
    return set(fs.find(f"{BUCKET}/{PREFIX}"))


def lab_uri(lab: Any) -> str:
    """How the lab tells its users to reach its Neo4j: the routing scheme, no port if the default."""
    port = int(lab.connection().uri.rsplit(":", 1)[1])
    return "neo4j://localhost" if port == BOLT_DEFAULT_PORT else f"neo4j://127.0.0.1:{port}"


# -- the deployment's side: a config file, an environment, the CLI ----------------------
def write_config(path: Path, neo4j_uri: str, endpoint: str, *, password: str | None = None) -> Path:
    """The deployment's TOML settings file (the password goes here only when given)."""
    lines = [
        "[neo4j]",
        'launcher = "external"',
        f'uri = "{neo4j_uri}"',
        'user = "neo4j"',
        "start_timeout_s = 20",
        *([f'password = "{password}"'] if password is not None else []),
        "",
        "[objectstore]",
        f'url = "s3://{BUCKET}/{PREFIX}"',
        f'endpoint_url = "{endpoint}"',
        'region = "us-east-1"',
        'access_key_id = "lab-access-key"',
        'secret_access_key = "lab-secret-key"',
        "",
        "[compute]",
        'gpus = "none"',
        "cpu_services = 2",
        "heartbeat_interval_s = 0.5",
        "idle_backoff_s = 0.2",
        "idle_backoff_max_s = 1.0",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def make_env(base: Path, config: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALCHEMISCALE_LOCAL_", "AWS_")) or k.endswith("CACHE_DIR")
    }
    for d in ("DATA", "CONFIG", "LOG", "RUNTIME"):
        env[f"ALCHEMISCALE_LOCAL_{d}_DIR"] = str(base / d.lower())
    env["ALCHEMISCALE_LOCAL_CONFIG_FILE"] = str(config)
    env["COLUMNS"] = "250"  # rich: no wrapped table cells
    return {**env, **extra}


def cli(env: dict[str, str], *args: str, timeout: float = 300, check: bool = True) -> Any:
    import subprocess

    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def user_client(env: dict[str, str]) -> Any:
    """The user client from the credentials file `up` wrote, as a person's script would make it."""
    from alchemiscale_local.client import AlchemiscaleLocalClient

    creds = json.loads(
        (Path(env["ALCHEMISCALE_LOCAL_CONFIG_DIR"]) / "default" / "credentials.json").read_text()
    )
    return AlchemiscaleLocalClient(creds["api_url"], creds["user"]["identifier"], creds["user"]["key"])


def lab_counts(lab: Any) -> dict[str, int]:
    """What the lab's Neo4j holds, read with its own driver (not through the deployment)."""
    conn = lab.connection()
    with conn.driver() as driver:
        records, _, _ = driver.execute_query(
            "MATCH (n:AlchemicalNetwork) WITH count(n) AS networks "
            "MATCH (t:Task {status: 'complete'}) WITH networks, count(t) AS complete "
            "OPTIONAL MATCH (r:ProtocolDAGResultRef) RETURN networks, complete, count(r) AS results",
            database_=conn.database,
        )
    return dict(records[0])


# -- tests ------------------------------------------------------------------------------
def test_up_status_run_down_up_on_external_neo4j_and_s3(lab_neo4j: Any, moto_s3: str, tmp_path: Path) -> None:
    """The whole CLI life cycle on the lab's servers; `down` leaves the lab's Neo4j and its data."""
    conn, uri = lab_neo4j.connection(), lab_uri(lab_neo4j)
    config = write_config(tmp_path / "config.toml", uri, moto_s3)
    # the password only through the environment, as a lab's secret would be passed
    env = make_env(tmp_path, config, ALCHEMISCALE_LOCAL_NEO4J__PASSWORD=conn.password)
    data_dir = Path(env["ALCHEMISCALE_LOCAL_DATA_DIR"])
    try:
        out = cli(env, "up", "--detach").stdout
        assert "is up" in out, out
        state = state_of(env)
        assert state and state["neo4j"]["launcher"] == "external" and state["neo4j"]["uri"] == uri
        assert lab_neo4j.pid not in {p.pid for p in deployment_processes(env)}  # not the deployment's

        status = cli(env, "status").stdout
        assert f"Neo4j {uri}" in status and "up" in status, status
        wait_for(lambda: "compute-cpu-1" in cli(env, "logs").stdout, 120, "both compute services logging")

        client = user_client(env)
        network = build_toy_network(N_TASKS, name="external backends", settings={"duration_s": 0.05})
        net = client.create_network(network, SCOPE, visualize=False)
        transformations = client.get_network_transformations(net)
        tasks = client.create_transformations_tasks(transformations)
        client.action_tasks(tasks, net)
        assert client.wait(net, timeout=300, visualize=False) == {"complete": N_TASKS}

        # Results are objects in the lab's bucket, under the configured prefix; none on local disk.
        refs = [r for tf in transformations for r in client.get_transformation_results(tf, return_as="refs")]
        assert len(refs) == N_TASKS
        keys = bucket_keys(moto_s3)
        assert {f"{BUCKET}/{PREFIX}/{r['location']}" for r in refs} <= keys, sorted(keys)
        assert not list(data_dir.rglob("*.json.zst"))
        estimates = {str(tf): client.get_transformation_results(tf) for tf in transformations}

        status = cli(env, "status").stdout
        assert f"complete {N_TASKS}" in status, status
        logs = cli(env, "logs").stdout
        assert "Traceback" not in logs and " ERROR " not in logs, logs
        before = lab_counts(lab_neo4j)
        assert before == {"networks": 1, "complete": N_TASKS, "results": N_TASKS}

        cli(env, "down")
        assert state_of(env) is None
        wait_for(lambda: not deployment_processes(env), 30, "no deployment process left after down")
        # down never stops or wipes an external Neo4j
        assert lab_neo4j.is_running()
        assert lab_counts(lab_neo4j) == before

        # A second `up` finds the same network, tasks and results on the lab's servers.
        cli(env, "up", "--detach")
        client = user_client(env)
        assert str(net) in {str(n) for n in client.query_networks()}
        assert client.get_network_status(net, visualize=False) == {"complete": N_TASKS}
        again = [r for tf in transformations for r in client.get_transformation_results(tf, return_as="refs")]
        assert sorted(r["location"] for r in again) == sorted(r["location"] for r in refs)
        assert {str(tf): client.get_transformation_results(tf) for tf in transformations} == estimates
        cli(env, "down")
        wait_for(lambda: not deployment_processes(env), 30, "no deployment process left after down")
        assert lab_neo4j.is_running() and lab_counts(lab_neo4j) == before
        assert bucket_keys(moto_s3) >= keys
    finally:  # a failed check must not leave the deployment running
        if state_of(env) is not None:
            cli(env, "down", check=False)


def test_wrong_external_password_is_a_clear_cli_error(lab_neo4j: Any, moto_s3: str, tmp_path: Path) -> None:
    """A wrong password (here from the settings file) stops `up` with one clear message, nothing left."""
    conn = lab_neo4j.connection()
    config = write_config(tmp_path / "config.toml", conn.uri, moto_s3, password="not-the-lab-password")
    env = make_env(tmp_path, config)
    proc = cli(env, "up", "--detach", check=False, timeout=120)
    output = proc.stdout + proc.stderr
    try:
        assert proc.returncode != 0, output
        assert f"The external Neo4j at {conn.uri} did not answer as user 'neo4j'" in output, output
        assert "authentication failure" in output.lower() or "unauthorized" in output.lower(), output
        assert "Traceback" not in output, output
        assert state_of(env) is None
        wait_for(lambda: not deployment_processes(env), 30, "nothing of the refused deployment running")
        assert lab_neo4j.is_running()  # the lab's Neo4j is untouched
    finally:
        if state_of(env) is not None:
            cli(env, "down", check=False)


def test_missing_bucket_stops_up_with_one_message(lab_neo4j: Any, moto_s3: str, tmp_path: Path) -> None:
    """A bucket that does not exist stops `up` before anything starts (it used to start, and every
    result then waited on 503s that only the compute logs explained)."""
    conn = lab_neo4j.connection()
    config = write_config(tmp_path / "config.toml", conn.uri, moto_s3, password=conn.password)
    config.write_text(config.read_text().replace(f"s3://{BUCKET}/", "s3://no-such-bucket/"))
    env = make_env(tmp_path, config)
    proc = cli(env, "up", "--detach", check=False, timeout=120)
    output = proc.stdout + proc.stderr
    try:
        assert proc.returncode != 0, output
        assert "object store s3://no-such-bucket/" in output, output
        assert "Create the bucket" in output, output
        assert "Traceback" not in output, output
        assert state_of(env) is None
        wait_for(lambda: not deployment_processes(env), 30, "nothing of the refused deployment running")
    finally:
        if state_of(env) is not None:
            cli(env, "down", check=False)
