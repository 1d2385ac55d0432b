"""Tokens, identities and scope checks.

``POST /token`` exchanges identifier + key for a short-lived HS256 JWT that names
the identity's kind (user or compute) and scopes. User routes accept only user
tokens and compute routes only compute tokens (403 otherwise).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.to_thread
import jwt
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alchemiscale_local.backends.statestore import NotFound
from alchemiscale_local.models import IdentityKind, InvalidIdentifier, Scope, ScopedKey

from .ratelimit import FailureLimiter

ALGORITHM = "HS256"

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class TokenData:
    identifier: str
    kind: str
    scopes: tuple[Scope, ...]
    version: str = ""

    def allows(self, scope: Scope) -> bool:
        return any(mine.is_superset(scope) for mine in self.scopes)

    def require(self, scope: Scope) -> None:
        if not self.allows(scope):
            raise HTTPException(403, f"identity {self.identifier} has no access to scope {scope}")

    def require_key(self, key: str) -> ScopedKey:
        try:
            sk = ScopedKey.from_str(key)
        except (InvalidIdentifier, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None
        self.require(sk.scope)
        return sk

    def visible(self, requested: Scope) -> list[Scope]:
        """The parts of ``requested`` this token may see (one scope per query)."""
        out: list[Scope] = []
        for mine in self.scopes:
            if requested.is_superset(mine):
                out.append(mine)
            elif mine.is_superset(requested):
                out.append(requested)
        # Drop scopes contained in others so nothing is counted twice.
        unique = list(dict.fromkeys(out))
        return [s for s in unique if not any(o != s and o.is_superset(s) for o in unique)]


class TokenIssuer:
    """Signs and verifies tokens with one secret."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, identifier: str, kind: str, scopes: list[str], version: str = "") -> str:
        now = int(time.time())
        claims = {
            "sub": identifier,
            "kind": kind,
            "scopes": scopes,
            "ver": version,
            "iat": now,
            "exp": now + self.ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> TokenData:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise HTTPException(401, "token expired", headers={"WWW-Authenticate": "Bearer"}) from None
        except jwt.InvalidTokenError:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"}) from None
        try:
            scopes = tuple(Scope.from_str(s) for s in claims.get("scopes", []))
        except (InvalidIdentifier, ValueError):
            raise HTTPException(401, "invalid token") from None
        version = claims.get("ver")
        return TokenData(
            identifier=claims["sub"],
            kind=claims.get("kind", ""),
            scopes=scopes,
            version=version if isinstance(version, str) else "",
        )


def identity_version(identity: dict[str, Any]) -> str:
    """A digest of what a token stands for: kind, scopes, key and creation.

    It changes when the scopes change, the key is rotated, or the identity is removed and
    created again (even under the same name and kind), so older tokens stop matching.
    """
    parts = [
        identity.get("kind"),
        sorted(identity.get("scopes") or []),
        identity.get("hashed_key"),
        identity.get("created"),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


class IdentityGate:
    """Refuses tokens whose identity was removed, disabled, expired or changed since issue.

    Each identity is looked up at most once per ``recheck_s`` (a token that does not match
    the cached version forces a lookup), so a change takes effect within seconds while a busy
    client costs about one Neo4j read per interval.
    """

    def __init__(self, recheck_s: float = 5.0) -> None:
        self.recheck_s = recheck_s
        self._checked: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def check(self, store: Any, identifier: str, version: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            at, known = self._checked.get(identifier, (float("-inf"), ""))
        if now - at < self.recheck_s and known == version:
            return
        try:
            ident = store.get_identity(identifier)
        except NotFound:
            ident = None
        refused = (
            ident is None
            or ident.get("disabled")
            or (ident.get("expires") is not None and ident["expires"] < time.time())
        )
        if refused:
            with self._lock:
                self._checked.pop(identifier, None)
            raise HTTPException(
                401,
                f"identity {identifier} was removed, disabled or has expired",
                headers={"WWW-Authenticate": "Bearer"},
            )
        current = identity_version(ident)
        with self._lock:
            self._checked[identifier] = (now, current)
        if version != current:
            raise HTTPException(
                401,
                f"the token of {identifier} is outdated: its scopes, key or identity changed; "
                "request a new token",
                headers={"WWW-Authenticate": "Bearer"},
            )


def _verified(request: Request, credentials: HTTPAuthorizationCredentials | None) -> TokenData:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            "not authenticated: send 'Authorization: Bearer <token>' (POST /token first)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    data = request.app.state.tokens.verify(credentials.credentials)
    request.app.state.identity_gate.check(request.app.state.store, data.identifier, data.version)
    return data


def _token_of_kind(kind: str):
    def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> TokenData:
        data = _verified(request, credentials)
        if data.kind != kind:
            raise HTTPException(403, f"a {data.kind} identity cannot use {kind} routes")
        return data

    return dependency


user_token = _token_of_kind(IdentityKind.user.value)
compute_token = _token_of_kind(IdentityKind.compute.value)


def any_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> TokenData:
    return _verified(request, credentials)


router = APIRouter(tags=["auth"])


async def _credentials(request: Request) -> tuple[str, str]:
    """identifier + key from a JSON body or an OAuth2 password form (alchemiscale's clients)."""
    body = await request.body()
    ctype = request.headers.get("content-type", "")
    try:
        if "application/json" in ctype:
            data = json.loads(body or b"{}")
            ident, key = (
                data.get("identifier") or data.get("username"),
                data.get("key") or data.get("password"),
            )
        else:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            ident = form["username"][0] if form.get("username") else None
            key = form["password"][0] if form.get("password") else None
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        raise HTTPException(
            400, "token request must be JSON {identifier, key} or a form with username/password"
        ) from None
    if not isinstance(ident, str) or not isinstance(key, str) or not ident or not key:
        raise HTTPException(400, "token request needs identifier (username) and key (password)")
    return ident, key


# bcrypt checks at once: enough for real logins, few enough that a flood of them cannot take
# every worker thread the other routes run on.
BCRYPT_CONCURRENCY = 4


def _bcrypt_limiter(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter = getattr(state, "bcrypt_limiter", None)
    if limiter is None:
        limiter = state.bcrypt_limiter = anyio.CapacityLimiter(BCRYPT_CONCURRENCY)
    return limiter


def token_limiter(request: Request) -> FailureLimiter:
    """The app's failed-/token counter (created on first use)."""
    state = request.app.state
    limiter = getattr(state, "token_limiter", None)
    if limiter is None:
        limiter = state.token_limiter = FailureLimiter()
    return limiter


@router.post("/token", summary="Exchange identifier + key for a bearer token")
async def token(request: Request) -> dict:
    ident, key = await _credentials(request)
    limiter = token_limiter(request)
    address = request.client.host if request.client else "?"
    wait = limiter.retry_after(ident, address)
    if wait is not None:
        raise HTTPException(
            429,
            f"too many failed token requests for {ident} or from {address}; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    store = request.app.state.store
    # bcrypt off the event loop, in a few threads of its own.
    identity = await anyio.to_thread.run_sync(
        store.authenticate, ident, key, limiter=_bcrypt_limiter(request)
    )
    if identity is None:
        limiter.failed(ident, address)
        raise HTTPException(
            401,
            "wrong identifier or key, or the identity is disabled or expired",
            headers={"WWW-Authenticate": "Bearer"},
        )
    limiter.succeeded(ident)
    issued = request.app.state.tokens.issue(
        identity["identifier"], identity["kind"], list(identity["scopes"]), identity_version(identity)
    )
    return {
        "access_token": issued,
        "token_type": "bearer",
        "expires_in": request.app.state.tokens.ttl_s,
        "kind": identity["kind"],
    }


def parse_scope_param(text: str | None) -> Scope:
    try:
        return Scope.from_str(text) if text else Scope()
    except (InvalidIdentifier, ValueError) as exc:
        raise HTTPException(400, str(exc)) from None
