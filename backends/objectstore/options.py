"""Storage options for fsspec/s3fs, derived from settings, and error classes meaning "unreachable"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import fsspec
from fsspec import AbstractFileSystem

if TYPE_CHECKING:
    from alchemiscale_local.settings import ObjectStoreSettings


def _unavailable_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import NoCredentialsError, ReadTimeoutError

        types += [BotoConnectionError, ReadTimeoutError, NoCredentialsError]
    except ImportError:  # pragma: no cover - s3fs is a dependency
        pass
    return tuple(types)


UNAVAILABLE_ERRORS = _unavailable_types()


def storage_options_from_settings(settings: ObjectStoreSettings) -> dict[str, Any]:
    """s3fs options from settings; unset values fall back to the AWS environment / profile chain."""
    if urlsplit(settings.url or "").scheme not in ("s3", "s3a"):
        return {}
    opts: dict[str, Any] = {}
    if settings.endpoint_url:
        opts["endpoint_url"] = settings.endpoint_url
    if settings.region:
        opts["client_kwargs"] = {"region_name": settings.region}
    if settings.access_key_id is not None:
        opts["key"] = settings.access_key_id.get_secret_value()
    if settings.secret_access_key is not None:
        opts["secret"] = settings.secret_access_key.get_secret_value()
    if settings.profile:
        opts["profile"] = settings.profile
    return opts


def s3_check_filesystem(storage_options: dict[str, Any]) -> AbstractFileSystem:
    """A twin of the store's S3 filesystem with short timeouts and no retries, for ``check()``."""
    cfg = {
        **storage_options.get("config_kwargs", {}),
        "connect_timeout": 3,
        "read_timeout": 10,
        "retries": {"max_attempts": 1, "mode": "standard"},
    }
    fs = fsspec.filesystem("s3", **{**storage_options, "config_kwargs": cfg, "skip_instance_cache": True})
    fs.retries = 1  # s3fs's own retry loop
    return fs
