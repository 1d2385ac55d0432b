"""Where a client's API URL, identifier and key come from.

Per value, first found wins: an explicit argument, then the environment
(``ALCHEMISCALE_LOCAL_URL``, ``ALCHEMISCALE_LOCAL_ID``, ``ALCHEMISCALE_LOCAL_KEY``), then, for the
user client, alchemiscale's own (``ALCHEMISCALE_URL``, ``ALCHEMISCALE_ID``, ``ALCHEMISCALE_KEY``), then the
credentials file a deployment writes (``load_settings().credentials_file``, a 0600 JSON file
``{api_url, user: {identifier, key}, compute: {identifier, key}}``).

A file may also pin the server's certificate: ``"tls": {"sha256": "<hex>", "cert_pem": "..."}``
(written for HTTPS deployments). The pin is taken from a credentials file given explicitly, or
from the default one when the URL in use is the one that file names.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AuthError
from .pinning import TLSPin

ENV_URL = "ALCHEMISCALE_LOCAL_URL"
ENV_ID = "ALCHEMISCALE_LOCAL_ID"
ENV_KEY = "ALCHEMISCALE_LOCAL_KEY"
#: alchemiscale's variables, read after ours by the user client (scripts written for alchemiscale)
ALCHEMISCALE_ENV = {"api_url": "ALCHEMISCALE_URL", "identifier": "ALCHEMISCALE_ID", "key": "ALCHEMISCALE_KEY"}


@dataclass(frozen=True)
class Credentials:
    """A resolved API URL and identity; ``sources`` says where each value came from."""

    api_url: str
    identifier: str
    key: str = field(repr=False)
    sources: dict[str, str] = field(default_factory=dict)
    #: the certificate pin of the credentials file, when it has one for this URL
    tls: TLSPin | None = None


def default_credentials_file() -> Path | None:
    """The deployment's credentials file from the settings, or None if settings cannot load."""
    try:
        from alchemiscale_local.settings import load_settings

        return load_settings().credentials_file
    except Exception:  # a broken config file must not hide explicit or env credentials
        return None


def _read_file(path: Path, section: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AuthError(None, f"cannot read credentials file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise AuthError(None, f"credentials file {path} is not a JSON object")
    found = data.get(section)
    ident: dict[str, Any] = found if isinstance(found, dict) else {}
    try:
        tls = TLSPin.from_dict(data.get("tls"))
    except (OSError, ValueError) as exc:
        raise AuthError(None, f"credentials file {path}: bad 'tls' section: {exc}") from None
    return {
        "api_url": data.get("api_url"),
        "identifier": ident.get("identifier"),
        "key": ident.get("key"),
        "tls": tls,
    }


def resolve_credentials(
    api_url: str | None = None,
    identifier: str | None = None,
    key: str | None = None,
    *,
    section: str = "user",
    credentials_file: str | Path | None = None,
) -> Credentials:
    """Resolve URL, identifier and key (explicit > env > credentials file ``section``).

    Raises :class:`AuthError` naming every place it looked when a value is missing.
    """
    explicit = {"api_url": api_url, "identifier": identifier, "key": key}
    env = {
        "api_url": os.environ.get(ENV_URL),
        "identifier": os.environ.get(ENV_ID),
        "key": os.environ.get(ENV_KEY),
    }
    if section == "user":
        for name, var in ALCHEMISCALE_ENV.items():
            env[name] = env[name] or os.environ.get(var)
    for name, value in explicit.items():
        if value is not None and env[name] and env[name] != value:
            warnings.warn(
                f"{name} given explicitly overrides a different value in the environment", stacklevel=3
            )
    path = Path(credentials_file) if credentials_file is not None else default_credentials_file()
    from_file: dict[str, Any] = {}
    needed = any(explicit[n] is None and not env[n] for n in explicit)
    # An https URL may need the file's pin even when the URL and the identity come from elsewhere.
    url = explicit["api_url"] or env["api_url"] or ""
    if path is not None and (needed or credentials_file is not None):
        from_file = _read_file(path, section)
    elif path is not None and url.startswith("https://"):
        try:  # only the pin is looked for: a broken default file must not stop explicit credentials
            from_file = _read_file(path, section)
        except AuthError:
            from_file = {}
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name in explicit:
        for source, candidates in (("argument", explicit), ("environment", env), (f"file {path}", from_file)):
            value = candidates.get(name)
            if value:
                values[name] = str(value)
                sources[name] = source
                break
    missing = [n for n in explicit if n not in values]
    if missing:
        env_names = {"api_url": ENV_URL, "identifier": ENV_ID, "key": ENV_KEY}
        raise AuthError(
            None,
            f"no {', '.join(missing)} found: pass {', '.join(f'{m}=' for m in missing)}, set "
            f"{', '.join(env_names[m] for m in missing)}, or start a deployment "
            f"(`alchemiscale-local up`) that writes the credentials file "
            f"{path if path is not None else '(settings could not be loaded)'} (section {section!r})",
        )
    resolved_url = values["api_url"].rstrip("/")
    tls = from_file.get("tls")
    if tls is not None and credentials_file is None:
        # The default file's pin belongs to the URL it names, not to any server the caller picked.
        if str(from_file.get("api_url") or "").rstrip("/") != resolved_url:
            tls = None
    return Credentials(resolved_url, values["identifier"], values["key"], sources, tls)
