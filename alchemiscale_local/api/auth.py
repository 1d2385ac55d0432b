"""Tokens, identities and scope checks.

``POST /token`` exchanges identifier + key for a short-lived HS256 JWT that names
the identity's kind (user or compute) and scopes. User routes accept only user
tokens and compute routes only compute tokens (403 otherwise).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from alchemiscale_local.backends.statestore import NotFound
from alchemiscale_local.models import IdentityKind, InvalidIdentifier, Scope, ScopedKey

ALGORITHM = "HS256"

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class TokenData:
    identifier: str
    kind: str
    scopes: tuple[Scope, ...]

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

    def issue(self, identifier: str, kind: str, scopes: list[str]) -> str:
        now = int(time.time())
        claims = {"sub": identifier, "kind": kind, "scopes": scopes, "iat": now, "exp": now + self.ttl_s}
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
        return TokenData(identifier=claims["sub"], kind=claims.get("kind", ""), scopes=scopes)


class IdentityGate:
    """Refuses tokens of identities removed, disabled or expired after the token was issued.

    Each identity is looked up at most once per ``recheck_s``, so a revoked identity stops
    working within seconds while a busy client costs about one Neo4j read per interval.
    """

    def __init__(self, recheck_s: float = 5.0) -> None:
        self.recheck_s = recheck_s
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, store: Any, identifier: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._checked.get(identifier, float("-inf")) < self.recheck_s:
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
        with self._lock:
            self._checked[identifier] = now


def _verified(request: Request, credentials: HTTPAuthorizationCredentials | None) -> TokenData:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            "not authenticated: send 'Authorization: Bearer <token>' (POST /token first)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    data = request.app.state.tokens.verify(credentials.credentials)
    request.app.state.identity_gate.check(request.app.state.store, data.identifier)
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
            ident, key = (form.get("username") or [None])[0], (form.get("password") or [None])[0]
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        raise HTTPException(
            400, "token request must be JSON {identifier, key} or a form with username/password"
        ) from None
    if not isinstance(ident, str) or not isinstance(key, str) or not ident or not key:
        raise HTTPException(400, "token request needs identifier (username) and key (password)")
    return ident, key


@router.post("/token", summary="Exchange identifier + key for a bearer token")
async def token(request: Request) -> dict:
    ident, key = await _credentials(request)
    identity = await run_in_threadpool(request.app.state.store.authenticate, ident, key)
    if identity is None:
        raise HTTPException(
            401,
            "wrong identifier or key, or the identity is disabled or expired",
            headers={"WWW-Authenticate": "Bearer"},
        )
    issued = request.app.state.tokens.issue(
        identity["identifier"], identity["kind"], list(identity["scopes"])
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
