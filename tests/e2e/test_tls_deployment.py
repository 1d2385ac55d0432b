"""`up --bind ADDRESS` as a lab runs it: HTTPS on a real non-loopback address with a certificate
made once, exported credentials files that a user client and a separately started compute service
(as on another host) use, and `--insecure-http` only when asked, loudly.

The deployment uses the session's Neo4j through `--launcher external` (one JVM for the suite).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from alchemiscale_local.client import AlchemiscaleLocalClient
from alchemiscale_local.client.pinning import colon_fingerprint, pem_fingerprint
from tests.e2e.cli_helpers import state_of
from tests.tls_helpers import non_loopback_address
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.one_env, pytest.mark.timeout(900)]

CLI = [sys.executable, "-m", "alchemiscale_local.cli"]


@pytest.fixture(scope="module")
def address():
    with non_loopback_address() as addr:
        yield addr


@pytest.fixture
def env(tmp_path, neo4j_connection):
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALCHEMISCALE_LOCAL_", "ALCHEMISCALE_", "SSL_CERT_", "REQUESTS_CA_"))
        or k.endswith("CACHE_DIR")
    }
    for d in ("DATA", "CONFIG", "LOG", "RUNTIME"):
        e[f"ALCHEMISCALE_LOCAL_{d}_DIR"] = str(tmp_path / d.lower())
    e["ALCHEMISCALE_LOCAL_CONFIG_FILE"] = str(tmp_path / "absent.toml")
    e["ALCHEMISCALE_LOCAL_NEO4J__URI"] = neo4j_connection.uri
    e["ALCHEMISCALE_LOCAL_NEO4J__USER"] = neo4j_connection.user
    e["ALCHEMISCALE_LOCAL_NEO4J__PASSWORD"] = neo4j_connection.password
    e["ALCHEMISCALE_LOCAL_COMPUTE__HEARTBEAT_INTERVAL_S"] = "0.5"
    e["ALCHEMISCALE_LOCAL_COMPUTE__IDLE_BACKOFF_MAX_S"] = "1.0"
    e["COLUMNS"] = "250"
    return e


def run(env, *args, timeout=240, check=True):
    proc = subprocess.run(
        [*CLI, "--launcher", "external", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def compute_service(env, url: str, creds: Path, log: Path) -> subprocess.Popen:
    """A compute service started by hand, as on another host: URL + exported credentials file."""
    return subprocess.Popen(
        [sys.executable, "-m", "alchemiscale_local.compute", "--api-url", url]
        + ["--credentials-file", str(creds), "--name", "remote-0", "--log-file", str(log)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_up_bind_serves_https_with_one_certificate_and_exported_credentials_work(env, address, tmp_path):
    up = ["up", "--detach", "--bind", address, "--gpus", "none", "--cpu-services", "0"]
    service = None
    try:
        out = run(env, *up).stdout
        state = state_of(env)
        assert state is not None
        url, sha = state["api_url"], state["tls"]["sha256"]
        assert url.startswith(f"https://{address}:"), url
        assert f"API {url}" in out and colon_fingerprint(sha) in out, out
        # The `up` summary (written to up.log in the background) shows both, too.
        up_log = Path(env["ALCHEMISCALE_LOCAL_LOG_DIR"]) / "default" / "up.log"
        summary = wait_for(
            lambda: up_log.exists() and "is up" in (t := up_log.read_text()) and t, 120, "the up summary"
        )
        assert url in summary and f"SHA-256 {colon_fingerprint(sha)} (self-signed)" in summary, summary
        key_file = Path(env["ALCHEMISCALE_LOCAL_CONFIG_DIR"]) / "default" / "tls" / "api-key.pem"
        assert _mode(key_file) == 0o600
        # HTTPS only: plain HTTP on the port gets no answer; the usual CAs do not vouch for it.
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/ping", timeout=10)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/ping", timeout=10)
        assert "up" in run(env, "status").stdout.split(url, 1)[1].splitlines()[0]

        # Exported credentials: 0600, the URL other hosts use, the certificate pinned.
        user_file, compute_file = tmp_path / "user.json", tmp_path / "compute.json"
        out = run(env, "identity", "add", "lab-user", "--kind", "user", "--export", str(user_file)).stdout
        assert "key:" not in out and colon_fingerprint(sha) in out
        run(env, "identity", "add", "gpu-box", "--kind", "compute", "--export", str(compute_file))
        for path, kind in ((user_file, "user"), (compute_file, "compute")):
            data = json.loads(path.read_text())
            assert _mode(path) == 0o600
            assert data["api_url"] == url and data["tls"]["sha256"] == sha
            assert pem_fingerprint(data["tls"]["cert_pem"]) == sha
            assert set(data[kind]) == {"identifier", "key"}
        # The export target is checked before an identity is made: no clobbering.
        again = run(
            env, "identity", "add", "never-made", "--kind", "user", "--export", str(user_file), check=False
        )
        assert again.returncode != 0 and "exists" in again.stderr
        assert "never-made" not in run(env, "identity", "list").stdout

        # A compute service from the exported file alone runs the network a user client submits.
        service = compute_service(env, url, compute_file, tmp_path / "remote.log")
        from alchemiscale_local.runtimes.toy.network import build_toy_network

        with AlchemiscaleLocalClient(credentials_file=user_file, max_retries=2) as client:
            net = client.create_network(
                build_toy_network(3, name="tls e2e", settings={"duration_s": 0.05}),
                "lab-tls-e2e",
                visualize=False,
            )
            tasks = client.create_transformations_tasks(client.get_network_transformations(net))
            client.action_tasks(tasks, net)
            assert client.wait(net, timeout=300, visualize=False) == {"complete": 3}
        assert "registered" in (tmp_path / "remote.log").read_text()

        # alchemiscale's own clients: the exported PEM with default verification.
        pem = tmp_path / "api.pem"
        run(env, "identity", "export-cert", str(pem))
        ctx = ssl.create_default_context(cafile=pem)
        assert httpx.get(f"{url}/ping", verify=ctx, timeout=10).status_code == 200

        # down / up: the same certificate, so the exported files keep working; this time the
        # deployment's own compute service runs the tasks (its credentials file pins it too).
        service.send_signal(signal.SIGTERM)
        service.communicate(timeout=60)
        run(env, "down")
        run(env, *up[:-1], "1")
        state = state_of(env)
        assert state is not None and state["tls"]["sha256"] == sha and state["api_url"] == url
        with AlchemiscaleLocalClient(credentials_file=user_file, max_retries=2) as client:
            assert len(client.get_network_tasks(net)) == 3
            net2 = client.create_network(
                build_toy_network(2, name="tls e2e 2", settings={"duration_s": 0.07}),
                "lab-tls-e2e",
                visualize=False,
            )
            tasks = client.create_transformations_tasks(client.get_network_transformations(net2))
            client.action_tasks(tasks, net2)
            assert client.wait(net2, timeout=300, visualize=False) == {"complete": 2}  # new transformations

        # A file that pins another certificate: the compute service refuses, and says why.
        bad = json.loads(compute_file.read_text())
        bad["tls"] = {"sha256": "ab" * 32}
        bad_file = tmp_path / "bad.json"
        bad_file.write_text(json.dumps(bad))
        bad_file.chmod(0o600)
        refused = compute_service(env, url, bad_file, tmp_path / "bad.log")
        _out, err = refused.communicate(timeout=120)
        assert refused.returncode != 0, err  # 3 here; the message is what counts
        assert f"certificate fingerprint mismatch: expected {colon_fingerprint('ab' * 32)}" in err
        assert colon_fingerprint(sha) in err
    finally:
        if service is not None:
            service.send_signal(signal.SIGTERM)
            try:
                service.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                service.kill()
        run(env, "down", check=False)
    assert state_of(env) is None


def test_insecure_http_off_loopback_only_when_asked_and_loudly(env, address):
    try:
        up = run(
            env,
            "up",
            "--detach",
            "--bind",
            address,
            "--insecure-http",
            "--gpus",
            "none",
            "--cpu-services",
            "0",
        )
        flat = " ".join(up.stderr.split())
        assert f"WARNING: plain HTTP on {address} (--insecure-http)" in flat, up.stderr
        state = state_of(env)
        assert state is not None and state["api_url"].startswith(f"http://{address}:")
        assert state["tls"] is None
        assert httpx.get(f"{state['api_url']}/ping", timeout=10).status_code == 200
        api_log = run(env, "logs", "api").stdout
        assert "WARNING" in api_log and f"serving PLAIN HTTP on {address}" in " ".join(api_log.split())
        # Nothing was generated: the deployment has no certificate to export.
        refused = run(
            env,
            "identity",
            "export-cert",
            str(Path(env["ALCHEMISCALE_LOCAL_DATA_DIR"]) / "x.pem"),
            check=False,
        )
        assert refused.returncode == 1 and "has no certificate" in refused.stderr
    finally:
        run(env, "down", check=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bind", "203.0.113.77"], "203.0.113.77 is not an address of this host"),
        (["--tls-cert", "/nonexistent/cert.pem"], "give both a certificate and its key"),
    ],
)
def test_up_refuses_what_it_cannot_serve_before_starting_anything(env, args, message):
    refused = run(env, "up", *args, "--gpus", "none", "--cpu-services", "0", check=False)
    assert refused.returncode == 1 and message in " ".join(refused.stderr.split()), refused.stderr
    assert "Traceback" not in refused.stderr and state_of(env) is None


def test_local_deployment_on_an_address_gives_pinned_clients(
    address, neo4j_connection, tmp_path, monkeypatch
):
    """From Python: dep.client() and a bare client on this host (the credentials file `up`
    writes) both verify the deployment's certificate."""
    from alchemiscale_local.deployment import LocalDeployment
    from tests.conftest import make_isolated_settings

    settings = make_isolated_settings(
        tmp_path,
        api={"host": address},
        compute={"gpus": "none", "cpu_services": 0},
        neo4j={
            "launcher": "external",
            "uri": neo4j_connection.uri,
            "user": neo4j_connection.user,
            "password": neo4j_connection.password,
        },
    )
    with LocalDeployment(settings) as dep:
        assert dep.api_url is not None and dep.api_url.startswith(f"https://{address}:") and dep.tls
        with dep.client(max_retries=1) as client:
            assert client.tls_pin is not None and client.tls_pin.sha256 == dep.tls.sha256
            assert client.get_scopes()
        creds = json.loads(settings.credentials_file.read_text())
        assert creds["tls"]["sha256"] == dep.tls.sha256 and creds["api_url"] == dep.api_url
        for name in ("ALCHEMISCALE_LOCAL_URL", "ALCHEMISCALE_LOCAL_ID", "ALCHEMISCALE_LOCAL_KEY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_DIR", str(settings.config_dir))
        monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
        with AlchemiscaleLocalClient(max_retries=1) as bare:
            assert bare.api_url == dep.api_url and bare.get_scopes()


def test_up_and_exports_print_the_fingerprint_exactly(env, address, tmp_path):
    """rich turns ':AB:' into an emoji; a fingerprint that holds it must still print as it is
    (it is what people compare with openssl's)."""
    from tests.tls_helpers import emoji_prone_certificate

    sha = emoji_prone_certificate(Path(env["ALCHEMISCALE_LOCAL_CONFIG_DIR"]) / "default" / "tls", address)
    shown = colon_fingerprint(sha)
    try:
        out = run(env, "up", "--detach", "--bind", address, "--gpus", "none", "--cpu-services", "0").stdout
        assert state_of(env)["tls"]["sha256"] == sha  # the certificate found there is reused
        assert shown in out, out
        up_log = Path(env["ALCHEMISCALE_LOCAL_LOG_DIR"]) / "default" / "up.log"
        summary = wait_for(
            lambda: up_log.exists() and "is up" in (t := up_log.read_text()) and t, 120, "summary"
        )
        assert shown in summary, summary
        out = run(
            env, "identity", "add", "box", "--kind", "compute", "--export", str(tmp_path / "c.json")
        ).stdout
        assert shown in out, out
        assert shown in run(env, "identity", "export-cert", str(tmp_path / "api.pem")).stdout
    finally:
        run(env, "down", check=False)
