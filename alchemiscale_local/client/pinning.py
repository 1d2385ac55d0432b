"""Certificate pinning for the clients: trust exactly one certificate, by its SHA-256 fingerprint.

A deployment that serves HTTPS with a self-signed certificate exports
``"tls": {"sha256": "<hex>", "cert_pem": "..."}`` in its credentials files. A client built from
such a pin trusts only that certificate (``cadata``, no system CAs) and, during the TLS handshake,
before any request is written, compares the peer certificate's SHA-256 with the pinned one. A
mismatch raises :class:`FingerprintMismatch`, which the client turns into a clear ``ClientError``.

Stdlib only: no cryptography package on client hosts.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ClientError

_HEX = re.compile(r"^[0-9a-f]{64}$")


def normalize_fingerprint(value: str) -> str:
    """A SHA-256 fingerprint as 64 lowercase hex digits (accepts ``AB:CD:..`` and ``sha256:`` forms)."""
    text = value.strip().lower().removeprefix("sha256:").removeprefix("sha256=").replace(":", "")
    if not _HEX.match(text):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits, colons allowed): {value!r}")
    return text


def colon_fingerprint(hex_digest: str) -> str:
    """``AB:CD:...``, as ``openssl x509 -fingerprint -sha256`` prints it."""
    h = normalize_fingerprint(hex_digest).upper()
    return ":".join(h[i : i + 2] for i in range(0, len(h), 2))


def der_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def pem_fingerprint(cert_pem: str) -> str:
    """SHA-256 of the first certificate in ``cert_pem`` (its DER bytes)."""
    return der_fingerprint(ssl.PEM_cert_to_DER_cert(_first_pem(cert_pem)))


def _first_pem(text: str) -> str:
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate found")
    return text[start : stop + len(end)] + "\n"


class FingerprintMismatch(ssl.SSLError):
    """The server presented a certificate other than the pinned one."""

    def __init__(self, expected: str, got: str | None, reason: str = "") -> None:
        self.expected = expected
        self.got = got
        self.reason = reason
        shown = colon_fingerprint(got) if got else "no certificate"
        extra = f" ({reason})" if reason else ""
        super().__init__(
            f"certificate fingerprint mismatch: expected {colon_fingerprint(expected)}, got {shown}{extra}; "
            "the server is not the deployment this credentials file was exported from, or its "
            "certificate changed (export the credentials again)"
        )

    def __str__(self) -> str:  # ssl.SSLError's str() shows the args tuple
        return str(self.args[0])


class CertificateMismatchError(ClientError):
    """A client refused the server: its certificate is not the pinned one (never retried)."""


@dataclass(frozen=True)
class TLSPin:
    """What a credentials file's ``tls`` section pins: a fingerprint, and the certificate itself."""

    sha256: str | None = None
    cert_pem: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> TLSPin | None:
        if not isinstance(data, dict) or not (data.get("sha256") or data.get("cert_pem")):
            return None
        return cls.build(data.get("sha256"), data.get("cert_pem"))

    @classmethod
    def build(cls, sha256: str | None = None, ca_cert: str | Path | None = None) -> TLSPin:
        """From a fingerprint and/or a certificate (PEM text or a PEM file's path).

        A fingerprint that does not match the given certificate is refused here: a file that
        contradicts itself must not be half-trusted.
        """
        pem: str | None = None
        if ca_cert is not None:
            text = str(ca_cert)
            pem = text if "-----BEGIN" in text else Path(text).read_text()
            pem = _first_pem(pem)
        fp = normalize_fingerprint(sha256) if sha256 else None
        if fp and pem and pem_fingerprint(pem) != fp:
            raise ValueError(
                f"the pinned fingerprint {colon_fingerprint(fp)} is not that of the pinned certificate "
                f"({colon_fingerprint(pem_fingerprint(pem))})"
            )
        return cls(fp, pem)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("sha256", self.sha256), ("cert_pem", self.cert_pem)) if v}

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this certificate and checks its fingerprint."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_pem:
            ctx.load_verify_locations(cadata=self.cert_pem)
            # The pinned certificate is trusted by itself, also when a CA signed it.
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        if self.sha256:
            # The fingerprint names the exact certificate, which is stronger than a host name
            # check; without it a deployment reached by another name or through NAT still works.
            ctx.check_hostname = False
            if not self.cert_pem:
                ctx.verify_mode = ssl.CERT_NONE  # only the fingerprint is known: it alone decides
            ctx.sslsocket_class = _pinned_socket_class(self.sha256)  # type: ignore[assignment]
        return ctx


def _pinned_socket_class(expected: str) -> type[ssl.SSLSocket]:
    class PinnedSSLSocket(ssl.SSLSocket):
        """Checks the peer's fingerprint right after the handshake, before anything is sent."""

        def do_handshake(self, block: bool = False) -> None:
            try:
                super().do_handshake(block)
            except ssl.SSLCertVerificationError as exc:
                # The peer's certificate is not the pinned one (or is no longer valid): say which.
                got = _probe_fingerprint(self)
                if got == expected:
                    raise
                raise FingerprintMismatch(expected, got) from exc
            der = self.getpeercert(binary_form=True)
            got = der_fingerprint(der) if der else None
            if got != expected:
                raise FingerprintMismatch(expected, got)

    return PinnedSSLSocket


def _probe_fingerprint(sock: ssl.SSLSocket) -> str | None:
    """The fingerprint of the certificate the peer presents, fetched without verifying it."""
    try:
        host, port = sock.getpeername()[:2]
        pem = ssl.get_server_certificate((host, port), timeout=10)
        return pem_fingerprint(pem)
    except (OSError, ValueError):
        return None


def find_mismatch(exc: BaseException | None) -> FingerprintMismatch | None:
    """The :class:`FingerprintMismatch` behind a transport error (httpx wraps it twice), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, FingerprintMismatch):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
