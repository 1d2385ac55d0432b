"""What another host needs to reach this deployment: its URL and the certificate to pin.

Used by ``identity add --export`` (a credentials file for ``alchemiscale-local compute`` or a
client elsewhere) and ``identity export-cert`` (a PEM for clients that verify the usual way).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from alchemiscale_local.client.pinning import TLSPin, pem_fingerprint
from alchemiscale_local.launchers.tls import CERT_NAME, is_loopback
from alchemiscale_local.settings import Settings

from ._common import err_console, fail


def deployment_endpoint(settings: Settings, api_url: str | None = None) -> tuple[str, TLSPin | None]:
    """The URL clients elsewhere use and, for HTTPS, the certificate pin.

    From the running deployment's state file; ``api_url`` overrides the URL (e.g. a DNS name or
    a NAT address), and then the pin comes from the deployment's certificate files.
    """
    from alchemiscale_local.deployment import read_state

    state = read_state(settings) or {}
    url = (api_url or state.get("api_url") or "").rstrip("/")
    if not url:
        raise fail(
            f"deployment {settings.name!r} is not running, so its URL is unknown: start it "
            "(`alchemiscale-local up --bind ADDRESS`) or pass --api-url"
        )
    pin = TLSPin.from_dict(state.get("tls")) if state.get("tls") else None
    if pin is None and url.startswith("https://"):
        pem = certificate_pem(settings)
        pin = TLSPin(pem_fingerprint(pem), pem) if pem else None
    host = url.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if is_loopback(host):
        err_console.print(
            f"[yellow]note:[/] {url} is reachable from this host only; for other hosts start the "
            "deployment with `up --bind ADDRESS` (or pass --api-url)",
            soft_wrap=True,
        )
    elif url.startswith("http://"):
        err_console.print(
            f"[bold red]WARNING:[/] {url} is plain HTTP: the key in this file crosses the network in clear",
            soft_wrap=True,
        )
    return url, pin


def certificate_pem(settings: Settings) -> str | None:
    """The PEM the API serves: the running deployment's, else the configured or generated one."""
    from alchemiscale_local.deployment import read_state

    state = read_state(settings) or {}
    tls = state.get("tls") or {}
    if tls.get("cert_pem"):
        return str(tls["cert_pem"])
    for path in (settings.api.tls_cert, settings.secrets_dir / "tls" / CERT_NAME):
        if path is not None and Path(path).exists():
            return Path(path).read_text()
    return None


def check_target(path: Path, force: bool) -> None:
    """Refuse before any change: an existing file (another identity's key) or a missing folder."""
    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise fail(f"folder {path.parent} does not exist")


def write_export(
    path: Path, url: str, kind: str, identifier: str, key: str, pin: TLSPin | None
) -> dict[str, Any]:
    """The 0600 credentials file ``alchemiscale-local compute --credentials`` and clients read."""
    data: dict[str, Any] = {"api_url": url, kind: {"identifier": identifier, "key": key}}
    if pin is not None and url.startswith("https://"):
        data["tls"] = pin.to_dict()
    write_0600(path, json.dumps(data, indent=2) + "\n")
    return data


def write_0600(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomic write with ``mode`` from the start, leaving the folder's own mode alone.

    (secretfiles.write_private_text makes the folder 0700, which is wrong for a user's folder.)
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it (never widened)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
