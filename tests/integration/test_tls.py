"""HTTPS off loopback: the API process (uvicorn with TLS) on a real non-loopback address, and
clients that pin its certificate. Real processes, the session's Neo4j, no fakes.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alchemiscale_local.launchers.tls import TLSError, apply_tls, ensure_self_signed, resolve_tls

from alchemiscale_local.client import AlchemiscaleLocalClient, CertificateMismatchError, ComputeClient
from alchemiscale_local.client.credentials import ENV_ID, ENV_KEY, ENV_URL, resolve_credentials
from alchemiscale_local.client.pinning import TLSPin, colon_fingerprint, pem_fingerprint
from alchemiscale_local.secretfiles import write_private_json
from alchemiscale_local.settings import masked_dump
from tests.plugins.api_server import CLIENT_OPTIONS, make_settings
from tests.tls_helpers import make_ca_and_leaf, non_loopback_address

USER = ("tls-user", "tls-user-key-0123456789abcdef")
COMPUTE = ("tls-compute", "tls-compute-key-0123456789abcdef")


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with non_loopback_address() as addr:
        yield addr


@pytest.fixture(autouse=True)
def no_client_env(monkeypatch, tmp_path):
    """Clients here see only what each test gives them (no user credentials or config)."""
    for name in (ENV_URL, ENV_ID, ENV_KEY, "ALCHEMISCALE_URL", "ALCHEMISCALE_ID", "ALCHEMISCALE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_DIR", str(tmp_path / "client-cfg"))
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_FILE", str(tmp_path / "client-cfg" / "absent.toml"))


@contextlib.contextmanager
def api_process(settings: Any, neo4j_connection: Any) -> Iterator[str]:
    """The API as `up` starts it (launchers/api_server.py, its own process); yields its URL."""
    from alchemiscale_local.backends.statestore import Neo4jStore
    from alchemiscale_local.launchers.api_server import start_api
    from alchemiscale_local.launchers.processes import stop

    store = Neo4jStore.connect(
        neo4j_connection.uri, neo4j_connection.user, neo4j_connection.password, neo4j_connection.database
    )
    try:
        store.initialize()
        store.add_identity(USER[0], "user", key=USER[1], scopes=["*-*-*"], replace=True)
        store.add_identity(COMPUTE[0], "compute", key=COMPUTE[1], scopes=["*-*-*"], replace=True)
    finally:
        store.close()
    child = masked_dump(settings, reveal=True)
    child["neo4j"].update(
        uri=neo4j_connection.uri,
        user=neo4j_connection.user,
        password=neo4j_connection.password,
        database=neo4j_connection.database,
    )
    path = write_private_json(settings.secrets_dir / "deployment-settings.json", child)
    record, url = start_api(settings, path, timeout=120)
    try:
        yield url
    finally:
        stop([record])


def _api_log(settings: Any) -> str:
    return (settings.log_dir / settings.name / "api.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def generated(address, neo4j_connection, tmp_path_factory) -> Iterator[tuple[Any, Any, str]]:
    """(settings, certificate, url): the API on ``address`` with its self-signed certificate."""
    settings = make_settings(tmp_path_factory.mktemp("tls-gen"), host=address)
    material = apply_tls(settings)
    assert material is not None and material.generated
    with api_process(settings, neo4j_connection) as url:
        yield settings, material, url


def test_generated_certificate_is_made_once_and_served_https_only(generated, address):
    settings, material, url = generated
    assert url.startswith(f"https://{address}:")
    assert material.key_path.stat().st_mode & 0o777 == 0o600
    assert material.key_path.parent == settings.secrets_dir / "tls"
    # Made once: a later `up` (same settings, certificate not yet applied) reuses it.
    again = resolve_tls(make_settings(settings.data_dir.parent, host=address))
    assert again is not None and again.sha256 == material.sha256 and again.cert_pem == material.cert_pem

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(material.cert_pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert address in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]

    # The served certificate is that one, and the pinned client works through it.
    with AlchemiscaleLocalClient(
        url, *USER, tls_fingerprint=material.sha256, ca_cert=material.cert_pem, **CLIENT_OPTIONS
    ) as client:
        assert [str(s) for s in client.get_scopes()] == ["*-*-*"]
    served = ssl.get_server_certificate((address, int(url.rsplit(":", 1)[1])))
    assert pem_fingerprint(served) == material.sha256

    # Plain HTTP on that port gets no answer; nor does a client that trusts only the usual CAs.
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://") + "/ping", timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{url}/ping", timeout=10)
    assert "PLAIN HTTP" not in _api_log(settings)


def test_credentials_file_pin_serves_user_and_compute_clients(generated, tmp_path):
    """The exported file's shape: URL + identity + tls pin is all either client needs."""
    _settings, material, url = generated
    path = write_private_json(
        tmp_path / "creds.json",
        {
            "api_url": url,
            "user": {"identifier": USER[0], "key": USER[1]},
            "compute": {"identifier": COMPUTE[0], "key": COMPUTE[1]},
            "tls": material.pin(),
        },
    )
    with AlchemiscaleLocalClient(credentials_file=path, **CLIENT_OPTIONS) as client:
        assert client.tls_pin is not None and client.tls_pin.sha256 == material.sha256
        assert client.get_scopes()
    with ComputeClient(credentials_file=path, **CLIENT_OPTIONS) as compute:
        service = compute.register("tls-test-service")
        try:
            compute.heartbeat(service)
        finally:
            compute.deregister(service)
    # As the compute service builds it: URL and identity given, the pin from the file.
    with ComputeClient(url, *COMPUTE, credentials_file=path, **CLIENT_OPTIONS) as compute:
        assert compute.tls_pin == TLSPin.from_dict(material.pin()) and compute.get_scopes()


def test_wrong_pin_is_refused_with_the_fingerprints(generated, tmp_path):
    settings, material, url = generated
    wrong = "ab" * 32
    with AlchemiscaleLocalClient(url, *USER, tls_fingerprint=wrong, **CLIENT_OPTIONS) as client:
        with pytest.raises(CertificateMismatchError) as err:
            client.get_scopes()
    message = str(err.value)
    assert f"certificate fingerprint mismatch: expected {colon_fingerprint(wrong)}, got " in message
    assert colon_fingerprint(material.sha256) in message

    # A credentials file from another deployment (another self-signed certificate, pinned
    # with cert_pem too): the handshake fails verification, and the message still says why.
    other = ensure_self_signed(tmp_path / "other", settings.api)
    assert other.sha256 != material.sha256
    path = write_private_json(
        tmp_path / "other.json",
        {"api_url": url, "compute": {"identifier": COMPUTE[0], "key": COMPUTE[1]}, "tls": other.pin()},
    )
    with ComputeClient(credentials_file=path, **CLIENT_OPTIONS) as compute:
        with pytest.raises(CertificateMismatchError) as err:
            compute.register("never-registered")
    assert f"expected {colon_fingerprint(other.sha256)}, got {colon_fingerprint(material.sha256)}" in str(
        err.value
    )


class _RecordingTLSServer:
    """A TLS server with its own certificate that records every byte a client sends it."""

    def __init__(self, host: str, material: Any) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(material.cert_path), str(material.key_path))
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(30)
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                try:
                    with self.ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.settimeout(5)
                        while chunk := tls.recv(65536):
                            self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=10)


def test_a_server_with_another_certificate_never_sees_the_key(generated, address, tmp_path):
    """The pin is checked in the handshake, before the request (and the key in it) is written."""
    settings, material, _url = generated
    impostor = ensure_self_signed(tmp_path / "impostor", settings.api)
    server = _RecordingTLSServer(address, impostor)
    try:
        for pin in (
            {"tls_fingerprint": material.sha256},
            {"tls_fingerprint": material.sha256, "ca_cert": material.cert_pem},
        ):
            with AlchemiscaleLocalClient(
                f"https://{address}:{server.port}", *USER, **pin, **CLIENT_OPTIONS
            ) as client:
                with pytest.raises(CertificateMismatchError, match="certificate fingerprint mismatch"):
                    client.get_scopes()
    finally:
        server.close()
    assert server.connections >= 2
    assert USER[1].encode() not in server.received and b"/token" not in server.received


def test_fingerprint_only_ca_only_and_plain_httpx_trust(generated, tmp_path, monkeypatch):
    _settings, material, url = generated
    with AlchemiscaleLocalClient(url, *USER, tls_fingerprint=material.sha256, **CLIENT_OPTIONS) as c:
        assert c.get_scopes()
    # ca_cert alone: the usual verification (host name included) against that certificate.
    with AlchemiscaleLocalClient(url, *USER, ca_cert=material.cert_path, **CLIENT_OPTIONS) as c:
        assert c.get_scopes()
    # What alchemiscale's own clients do with the exported PEM (requests/httpx, default checks).
    assert (
        httpx.get(
            f"{url}/ping", verify=ssl.create_default_context(cafile=material.cert_path), timeout=10
        ).status_code
        == 200
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(material.cert_path))
    with httpx.Client(timeout=10) as plain:
        assert plain.get(f"{url}/ping").status_code == 200


def test_default_credentials_file_pins_only_its_own_url(generated, tmp_path, monkeypatch):
    from alchemiscale_local.settings import load_settings

    _settings, material, url = generated
    default_file = load_settings().credentials_file
    write_private_json(
        default_file,
        {"api_url": url, "user": {"identifier": USER[0], "key": USER[1]}, "tls": material.pin()},
    )
    assert resolve_credentials(url, *USER).tls == TLSPin.from_dict(material.pin())
    # Another server named explicitly does not inherit this deployment's pin.
    assert resolve_credentials("https://elsewhere.invalid:1", *USER).tls is None
    monkeypatch.setenv(ENV_URL, url)
    with AlchemiscaleLocalClient(**CLIENT_OPTIONS) as c:
        assert c.tls_pin is not None and c.get_scopes()


def test_user_supplied_certificate_is_served(address, neo4j_connection, tmp_path):
    ca, leaf, key = make_ca_and_leaf(tmp_path / "pki", address)
    settings = make_settings(tmp_path / "dep", host=address, tls_cert=leaf, tls_key=key)
    material = apply_tls(settings)
    assert material is not None and not material.generated and material.cert_path == leaf
    assert not (settings.secrets_dir / "tls").exists()  # nothing generated
    with api_process(settings, neo4j_connection) as url:
        assert url.startswith("https://")
        assert (
            httpx.get(f"{url}/ping", verify=ssl.create_default_context(cafile=ca), timeout=10).status_code
            == 200
        )
        with AlchemiscaleLocalClient(url, *USER, **{**CLIENT_OPTIONS}, **_pin(material)) as c:
            assert c.get_scopes()  # the leaf pinned alone (partial chain), as exported files do
        with AlchemiscaleLocalClient(url, *USER, ca_cert=ca, **CLIENT_OPTIONS) as c:
            assert c.get_scopes()


def _pin(material: Any) -> dict[str, Any]:
    return {"tls_fingerprint": material.sha256, "ca_cert": material.cert_pem}


def test_insecure_http_serves_plain_http_and_warns_in_the_api_log(address, neo4j_connection, tmp_path):
    settings = make_settings(tmp_path, host=address, insecure_http=True)
    assert apply_tls(settings) is None
    with api_process(settings, neo4j_connection) as url:
        assert url == f"http://{address}:{url.rsplit(':', 1)[1]}"
        assert httpx.get(f"{url}/ping", timeout=10).status_code == 200
    log = _api_log(settings)
    assert "WARNING" in log and f"serving PLAIN HTTP on {address}" in log, log


def test_loopback_stays_plain_http_without_a_certificate(tmp_path):
    settings = make_settings(tmp_path)
    assert settings.api.host == "127.0.0.1" and resolve_tls(settings) is None
    assert not (settings.secrets_dir / "tls").exists()


@pytest.mark.parametrize(
    "api, message",
    [
        ({"tls_cert": "CERT"}, "give both a certificate and its key"),
        ({"tls_cert": "CERT", "tls_key": "OTHER_KEY"}, "does not belong to the certificate"),
        ({"tls_cert": "CERT", "tls_key": "KEY", "insecure_http": True}, "exclude each other"),
        ({"tls_cert": "MISSING", "tls_key": "KEY"}, "cannot read the certificate"),
    ],
)
def test_bad_certificate_settings_fail_before_anything_starts(tmp_path, api, message):
    _ca, leaf, key = make_ca_and_leaf(tmp_path / "a", "10.0.0.1")
    _ca2, _leaf2, other_key = make_ca_and_leaf(tmp_path / "b", "10.0.0.1")
    files = {"CERT": leaf, "KEY": key, "OTHER_KEY": other_key, "MISSING": tmp_path / "missing.pem"}
    resolved = {k: files.get(v, v) if isinstance(v, str) else v for k, v in api.items()}
    settings = make_settings(tmp_path / "dep", host="10.0.0.1", **resolved)
    with pytest.raises(TLSError, match=message):
        resolve_tls(settings)


def test_a_credentials_file_whose_pin_contradicts_itself_is_refused(generated, tmp_path):
    _settings, material, url = generated
    bad = {"sha256": "cd" * 32, "cert_pem": material.cert_pem}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"api_url": url, "user": {"identifier": USER[0], "key": USER[1]}, "tls": bad}))
    from alchemiscale_local.client import AuthError

    with pytest.raises(AuthError, match="bad 'tls' section: the pinned fingerprint"):
        AlchemiscaleLocalClient(credentials_file=Path(path), **CLIENT_OPTIONS)
