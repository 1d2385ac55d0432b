"""The HTTP base shared by the user and compute clients.

httpx with timeouts on every call; bounded retries with exponential backoff and jitter on
connection errors and 502/503/504 (never on 404); a bearer token from ``POST /token``,
fetched again once when a call answers 401; gzip request bodies above a size threshold;
failures raised as :class:`~.errors.ClientError` subclasses carrying the server's detail.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from alchemiscale_local import __version__
from alchemiscale_local.models import Scope, ScopedKey

from .credentials import Credentials, resolve_credentials
from .errors import AuthError, ClientError, ServerUnavailable, error_for_status
from .pinning import CertificateMismatchError, TLSPin, find_mismatch

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

RETRY_STATUSES = frozenset({502, 503, 504})
Body = bytes | Iterable[bytes] | None


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sk_str(key: ScopedKey | str) -> str:
    """A ScopedKey (or its string) as the string the API speaks."""
    return str(key)


def seg(value: Any) -> str:
    """A value as one URL path segment (quoted; valid keys need no quoting)."""
    return quote(str(value), safe="")


def to_sk(value: str | None) -> ScopedKey | None:
    return ScopedKey.from_str(value) if value is not None else None


class BaseClient:
    """Connection, auth, retries and error mapping; subclasses add the API methods.

    Args:
        api_url, identifier, key: explicit credentials; missing ones come from the
            environment (``ALCHEMISCALE_LOCAL_URL/_ID/_KEY``) or the credentials file.
        credentials_file: read this file instead of the deployment's default one.
        timeout: seconds for reading a response (and for writing a request).
        connect_timeout: seconds for opening a connection.
        max_retries: retries after the first attempt on connection errors and 502/503/504.
        retry_base_seconds, retry_max_seconds: backoff ``base * 2**n`` with jitter, capped.
        compress_threshold: JSON request bodies larger than this many bytes are gzipped.
        verify: TLS verification as httpx takes it (True: system CAs; a CA bundle path; an
            SSLContext); for deployments behind a TLS proxy. Ignored when a pin applies.
        tls_fingerprint: SHA-256 of the server's certificate (hex, colons allowed); any other
            certificate is refused with "certificate fingerprint mismatch".
        ca_cert: the server's certificate (PEM text or file) to trust instead of the system CAs.
            Without either, the ``tls`` pin of the credentials file is used when it has one.
        transport: an httpx transport (tests).
    """

    #: which identity of the credentials file this client uses
    credentials_section = "user"

    def __init__(
        self,
        api_url: str | None = None,
        identifier: str | None = None,
        key: str | None = None,
        *,
        credentials_file: str | Path | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 5,
        retry_base_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        compress_threshold: int = 4096,
        verify: bool | str | ssl.SSLContext = True,
        tls_fingerprint: str | None = None,
        ca_cert: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.credentials: Credentials = resolve_credentials(
            api_url, identifier, key, section=self.credentials_section, credentials_file=credentials_file
        )
        self.api_url = self.credentials.api_url
        self.identifier = self.credentials.identifier
        self.max_retries = max_retries
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.compress_threshold = compress_threshold
        self._token: str | None = None
        self._token_lock = threading.Lock()
        explicit_pin = tls_fingerprint is not None or ca_cert is not None
        self.tls_pin: TLSPin | None = (
            TLSPin.build(tls_fingerprint, ca_cert) if explicit_pin else self.credentials.tls
        )
        if self.tls_pin is not None and self.api_url.startswith("https://"):
            verify = self.tls_pin.ssl_context()
        self._http = httpx.Client(
            base_url=self.api_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=timeout),
            verify=verify,
            transport=transport,
            headers={"Accept-Encoding": "gzip", "User-Agent": f"alchemiscale-local-client/{__version__}"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_url!r}, identifier={self.identifier!r})"

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> BaseClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- auth ---------------------------------------------------------------------------
    def _fetch_token(self) -> str:
        resp = self._request(
            "POST",
            "/token",
            json_body={"identifier": self.identifier, "key": self.credentials.key},
            auth=False,
        )
        token = resp.json().get("access_token")
        if not isinstance(token, str):
            raise AuthError(resp.status_code, "the server's /token answer has no access_token")
        return token

    def _auth_header(self, refresh: bool = False, stale: str | None = None) -> dict[str, str]:
        with self._token_lock:
            # Another thread may already have refreshed the token this one saw fail.
            if self._token is None or (refresh and self._token == stale):
                self._token = self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}

    # -- requests -----------------------------------------------------------------------
    def _backoff(self, attempt: int, retry_after: str | None = None) -> float:
        delay = min(self.retry_max_seconds, self.retry_base_seconds * 2**attempt)
        delay = delay * (0.5 + random.random() / 2)  # jitter: 50-100 % of the step
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), self.retry_max_seconds))
        return delay

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        content: Callable[[], Body] | bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        compress: bool | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one API call with retries, token refresh and error mapping; return the response.

        ``content`` may be a callable returning a fresh body per attempt (streamed uploads).
        ``compress`` gzips a JSON body (default: when larger than ``compress_threshold``).
        A call that is not ``idempotent`` (claims, task creation, uploads) is retried after a
        connection failure only when the request cannot have reached the server.
        """
        hdrs = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body, allow_nan=False).encode()
            hdrs["Content-Type"] = "application/json"
            if compress or (compress is None and len(data) > self.compress_threshold):
                data = gzip.compress(data, compresslevel=5)
                hdrs["Content-Encoding"] = "gzip"
            content = data
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        refreshed = False
        stale: str | None = None
        while True:
            if auth:
                hdrs.update(self._auth_header(refresh=refreshed, stale=stale))
            body = content() if callable(content) else content
            try:
                resp = self._http.request(method, path, params=clean_params, content=body, headers=hdrs)
            except httpx.TransportError as exc:
                mismatch = find_mismatch(exc)
                if mismatch is not None:  # never retried: the server will not become the pinned one
                    raise CertificateMismatchError(None, str(mismatch), method=method, url=path) from exc
                unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                if not unsent and not idempotent:
                    raise ServerUnavailable(
                        None,
                        f"the connection to {self.api_url} failed during the call ({type(exc).__name__}: "
                        f"{exc}); it may or may not have taken effect, so it was not repeated",
                        method=method,
                        url=path,
                    ) from exc
                if attempt >= self.max_retries:
                    raise ServerUnavailable(
                        None,
                        f"cannot reach the API at {self.api_url}: {type(exc).__name__}: {exc} "
                        f"(gave up after {attempt + 1} attempts); is the server running?",
                        method=method,
                        url=path,
                    ) from exc
                delay = self._backoff(attempt)
                log.info("%s %s: %s; retrying in %.1f s", method, path, type(exc).__name__, delay)
                time.sleep(delay)
                attempt += 1
                continue
            if resp.status_code == 401 and auth and not refreshed:
                refreshed = True
                stale = hdrs.get("Authorization", "").removeprefix("Bearer ") or None
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self.max_retries:
                delay = self._backoff(attempt, resp.headers.get("Retry-After"))
                log.info("%s %s: %s; retrying in %.1f s", method, path, resp.status_code, delay)
                time.sleep(delay)
                attempt += 1
                continue
            if resp.status_code >= 400:
                raise self._error(resp, method, path)
            return resp

    @staticmethod
    def _error(resp: httpx.Response, method: str, path: str) -> ClientError:
        try:
            payload = resp.json()
            detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
        except ValueError:
            detail = resp.text[:500] or resp.reason_phrase
        return error_for_status(resp.status_code)(resp.status_code, detail, method=method, url=path)

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=params).json()

    def _keys(self, path: str, **params: Any) -> list[ScopedKey]:
        """GET a list of key strings as ScopedKeys."""
        return [ScopedKey.from_str(k) for k in self._get(path, **params)]

    def _post(
        self,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        compress: bool | None = None,
        idempotent: bool = True,
    ) -> Any:
        resp = self._request(
            "POST",
            path,
            params=params,
            json_body=body if body is not None else {},
            compress=compress,
            idempotent=idempotent,
        )
        return resp.json() if resp.content else None

    def _map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        workers: int = 8,
        progress: Callable[[], Any] | None = None,
    ) -> list[R]:
        """``[fn(x) for x in items]`` on a thread pool, in input order."""
        if len(items) <= 1:
            out = [fn(x) for x in items]
            if progress:
                for _ in out:
                    progress()
            return out
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            futures = [pool.submit(fn, x) for x in items]
            results = []
            for f in futures:
                results.append(f.result())
                if progress:
                    progress()
            return results

    # -- shared routes ------------------------------------------------------------------
    def ping(self) -> dict:
        """``GET /ping`` (no authentication): the API's name and version."""
        return self._request("GET", "/ping", auth=False).json()

    def get_info(self) -> dict:
        """Versions and non-secret settings of the deployment."""
        return self._get("/info")

    def check(self) -> dict:
        """Raise :class:`ServerUnavailable` unless the state store and object store answer."""
        return self._get("/check")

    _api_check = check

    def get_scopes(self) -> list[Scope]:
        """The scopes this identity may access, sorted."""
        return sorted(
            (Scope.from_str(s) for s in self._get(f"/identities/{seg(self.identifier)}/scopes")), key=str
        )

    list_scopes = get_scopes
