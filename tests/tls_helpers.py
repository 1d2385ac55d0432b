"""Shared by the TLS tests: a real non-loopback address of this host, and a small CA for certificates.

``non_loopback_address()`` yields an IPv4 address of this machine that is not loopback: an
existing one (``hostname -I``), else one on a dummy interface made for the test (root only) and
removed after; the test is skipped, with the reason, when neither is possible.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

DUMMY_IF = "alsltls0"
DUMMY_ADDR = "10.213.7.1"


def _existing_address() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family != socket.AF_INET:
                continue
            ip = ipaddress.ip_address(a.address)
            if not ip.is_loopback and not ip.is_link_local:
                return a.address
    return None


@contextlib.contextmanager
def non_loopback_address() -> Iterator[str]:
    found = _existing_address()
    if found:
        yield found
        return
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this host and no `ip` command to add one")
    steps = [
        [ip, "link", "add", DUMMY_IF, "type", "dummy"],
        [ip, "addr", "add", f"{DUMMY_ADDR}/32", "dev", DUMMY_IF],
        [ip, "link", "set", DUMMY_IF, "up"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run([ip, "link", "del", DUMMY_IF], capture_output=True)
            pytest.skip(f"no non-loopback IPv4 address, and adding one failed: {done.stderr.strip()}")
    try:
        yield DUMMY_ADDR
    finally:
        subprocess.run([ip, "link", "del", DUMMY_IF], capture_output=True)


def make_ca_and_leaf(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for ``host``: (ca.pem, leaf.pem, leaf.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test lab CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "leaf.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "leaf.key").chmod(0o600)
    return directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
