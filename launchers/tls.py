"""HTTPS for an API bound off loopback: which certificate, generated once when none is given.

Rules (``settings.api``):

- ``tls_cert`` + ``tls_key`` given: HTTPS with them, on any address.
- else a loopback bind address: plain HTTP, as always.
- else ``insecure_http``: plain HTTP, with a warning in the CLI and in the API log.
- else a self-signed certificate of this deployment, made once under
  ``<secrets dir>/tls/`` (key 0600) and reused by every later ``up``, so the fingerprint that
  exported credentials files pin stays the same. Its SANs name the bind address, or for
  ``0.0.0.0`` this host's addresses and host name.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alchemiscale_local.client.pinning import TLSPin, colon_fingerprint, pem_fingerprint
from alchemiscale_local.secretfiles import private_dir, write_private_text
from alchemiscale_local.settings import APISettings, Settings

from .ownership import DeploymentError

log = logging.getLogger(__name__)

CERT_NAME = "api-cert.pem"
KEY_NAME = "api-key.pem"
VALID_DAYS = 3650
#: a generated certificate this close to its end is made anew
RENEW_BEFORE = dt.timedelta(days=30)
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class TLSError(DeploymentError):
    """The API's certificate cannot be used (unreadable, key does not match, expired, ...)."""


@dataclass(frozen=True)
class TLSMaterial:
    """The certificate the API serves: files for uvicorn, PEM + fingerprint for the clients."""

    cert_path: Path
    key_path: Path
    cert_pem: str
    sha256: str
    generated: bool

    @property
    def fingerprint(self) -> str:
        """``AB:CD:...``, as openssl prints it."""
        return colon_fingerprint(self.sha256)

    def pin(self) -> dict[str, str]:
        """The ``tls`` section of an exported credentials file."""
        return TLSPin(self.sha256, self.cert_pem).to_dict()


# -- addresses ------------------------------------------------------------------------------
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) reaches this machine only over loopback."""
    ip = _ip(host)
    if ip is not None:
        return ip.is_loopback
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    ips = [_ip(str(a)) for a in found]
    return bool(ips) and all(i is not None and i.is_loopback for i in ips)


def is_wildcard(host: str) -> bool:
    return host in WILDCARDS


def host_addresses() -> list[str]:
    """This host's IP addresses (loopback included, link-local left out: they need a zone)."""
    import psutil

    out: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = _ip(a.address)
            if ip is not None and not ip.is_link_local and str(ip) not in out:
                out.append(str(ip))
    return out


def primary_address() -> str:
    """The address other hosts most likely reach this one at (first non-loopback IPv4)."""
    for addr in host_addresses():
        ip = _ip(addr)
        if ip is not None and ip.version == 4 and not ip.is_loopback:
            return addr
    return "127.0.0.1"


def client_host(api: APISettings) -> str:
    """Where clients connect: ``public_host``, else the bind address (for 0.0.0.0 the primary one)."""
    if api.public_host:
        return api.public_host
    return primary_address() if is_wildcard(api.host) else api.host


def url_for(host: str, port: int, scheme: str = "http") -> str:
    ip = _ip(host)
    shown = f"[{host}]" if ip is not None and ip.version == 6 else host
    return f"{scheme}://{shown}:{port}"


def api_url_for(api: APISettings, port: int) -> str:
    """The URL of an API started with these settings (https when it has a certificate)."""
    return url_for(client_host(api), port, "https" if api.tls_cert else "http")


def subject_names(api: APISettings) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) a generated certificate must name for this bind address."""
    dns: list[str] = []
    ips: list[str] = []
    targets = [api.host] + ([api.public_host] if api.public_host else [])
    for host in targets:
        if is_wildcard(host):
            ips += host_addresses()
            dns += [socket.gethostname(), socket.getfqdn(), "localhost"]
        elif _ip(host) is not None:
            ips.append(str(_ip(host)))
        else:
            dns.append(host)
    return _unique(dns), _unique(ips)


def _unique(items: list[str]) -> list[str]:
    return [x for i, x in enumerate(items) if x and x not in items[:i]]


# -- certificates ---------------------------------------------------------------------------
def resolve_tls(settings: Settings) -> TLSMaterial | None:
    """The certificate the API must serve with these settings, or None for plain HTTP."""
    api = settings.api
    if (api.tls_cert is None) != (api.tls_key is None):
        raise TLSError("give both a certificate and its key (--tls-cert and --tls-key), or neither")
    if api.tls_cert is not None and api.tls_key is not None:
        if api.insecure_http:
            raise TLSError("--insecure-http and --tls-cert exclude each other")
        return load_certificate(api.tls_cert, api.tls_key)
    if is_loopback(api.host) or api.insecure_http:
        return None
    return ensure_self_signed(settings.secrets_dir / "tls", api)


def apply_tls(settings: Settings) -> TLSMaterial | None:
    """:func:`resolve_tls`, and point ``settings.api.tls_cert/tls_key`` at the files to serve."""
    material = resolve_tls(settings)
    if material is not None:
        settings.api.tls_cert = material.cert_path
        settings.api.tls_key = material.key_path
    return material


def load_certificate(cert_path: Path, key_path: Path, *, generated: bool = False) -> TLSMaterial:
    """A PEM certificate (chain, leaf first) and its key, checked to belong together and be valid."""
    from cryptography import x509

    cert_path, key_path = Path(cert_path).expanduser(), Path(key_path).expanduser()
    try:
        pem = cert_path.read_text()
        cert = x509.load_pem_x509_certificate(pem.encode())
    except (OSError, ValueError) as exc:
        raise TLSError(f"cannot read the certificate {cert_path}: {exc}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(
            f"the key {key_path} cannot be read or does not belong to the certificate {cert_path}: {exc}"
        ) from None
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise TLSError(f"the certificate {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    return TLSMaterial(cert_path, key_path, pem, pem_fingerprint(pem), generated)


def ensure_self_signed(directory: Path, api: APISettings) -> TLSMaterial:
    """This deployment's self-signed certificate, made on first use and reused afterwards.

    It is made anew only when it is close to expiry or does not name a (non-wildcard) bind
    address it is now asked to serve; then previously exported credentials must be exported again.
    """
    dns, ips = subject_names(api)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if cert_path.exists() and key_path.exists():
        try:
            material = load_certificate(cert_path, key_path, generated=True)
        except TLSError as exc:
            log.warning("the generated certificate cannot be used (%s); making a new one", exc)
        else:
            key_path.chmod(0o600)
            have_dns, have_ips, not_after = _names_of(material.cert_pem)
            missing = [n for n in dns if n not in have_dns] + [i for i in ips if i not in have_ips]
            fresh = not_after - dt.datetime.now(dt.UTC) > RENEW_BEFORE
            if fresh and (not missing or is_wildcard(api.host)):
                if missing:  # e.g. a new DHCP address; a new fingerprint would break every client
                    log.warning("the certificate does not name %s; keeping it", ", ".join(missing))
                return material
            log.warning(
                "making a new certificate (%s); export credentials files again",
                f"it does not name {', '.join(missing)}" if fresh else "the old one is about to expire",
            )
            dns, ips = _unique(have_dns + dns), _unique(have_ips + ips)
    _generate(cert_path, key_path, dns, ips, api)
    return load_certificate(cert_path, key_path, generated=True)


def _names_of(cert_pem: str) -> tuple[list[str], list[str], dt.datetime]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], cert.not_valid_after_utc
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    return dns, ips, cert.not_valid_after_utc


def _generate(cert_path: Path, key_path: Path, dns: list[str], ips: list[str], api: APISettings) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"alchemiscale-local API {api.host}")])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # small clock skew between hosts
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    private_dir(key_path.parent)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_text(key_path, key_pem.decode())  # 0600 from the start
    write_private_text(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())
    cert_path.chmod(0o644)  # public; the directory (0700) still keeps others out
    log.info("made a self-signed certificate for %s", ", ".join(dns + ips))


# -- the API process and its callers --------------------------------------------------------
def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS arguments for the API process; warns when it serves plain HTTP off loopback."""
    api = settings.api
    if api.tls_cert and api.tls_key:
        return {"ssl_certfile": str(api.tls_cert), "ssl_keyfile": str(api.tls_key)}
    if not is_loopback(api.host):
        log.warning(
            "serving PLAIN HTTP on %s (--insecure-http): identity keys and tokens cross the network "
            "unencrypted; anyone on the path can read and reuse them",
            api.host,
        )
    return {}


def client_verify(api: APISettings) -> bool | ssl.SSLContext:
    """What a local caller (health check, ``status``) verifies the API's certificate with."""
    if not api.tls_cert:
        return True
    pem = Path(api.tls_cert).read_text()
    return TLSPin(pem_fingerprint(pem), pem).ssl_context()
