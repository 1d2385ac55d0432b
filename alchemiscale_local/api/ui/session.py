"""Dashboard login: a one-time signed link -> an HttpOnly session cookie.

The link carries a short-lived JWT (audience ``LOGIN_AUDIENCE``, a random ``jti``) signed with
the API's JWT secret. ``GET /ui/login?token=...`` accepts each ``jti`` once, then sets a cookie
holding a session JWT (audience ``SESSION_AUDIENCE``). Both audiences make the tokens useless as
bearer tokens on the API (PyJWT refuses a token with an audience when none is expected), and a
bearer token is useless as a cookie. The dashboard is read-only (GET only), so there is no CSRF
to defend against; SameSite=Strict keeps the cookie off cross-site requests anyway.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jwt
from fastapi import HTTPException, Request

from alchemiscale_local.backends.statestore import NotFound
from alchemiscale_local.models import InvalidIdentifier, Scope

from ..auth import ALGORITHM, TokenData, identity_version

LOGIN_AUDIENCE = "alchemiscale-local-ui-login"
SESSION_AUDIENCE = "alchemiscale-local-ui-session"
COOKIE = "alchemiscale_ui"
LOGIN_TTL_S = 15 * 60
SESSION_TTL_S = 12 * 3600


class NotLoggedIn(Exception):
    """No valid session: pages redirect to the login help page, JSON gets 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def login_token(secret: str, identifier: str, ttl_s: int = LOGIN_TTL_S) -> str:
    """A one-time login token for ``identifier`` (a user identity)."""
    now = int(time.time())
    claims = {
        "sub": identifier,
        "aud": LOGIN_AUDIENCE,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def dashboard_login_url(api_url: str, secret: str, identifier: str, ttl_s: int = LOGIN_TTL_S) -> str:
    """The URL ``up`` prints: opens the dashboard logged in as ``identifier`` (once, within ``ttl_s``)."""
    return f"{api_url.rstrip('/')}/ui/login?token={quote(login_token(secret, identifier, ttl_s))}"


class UsedLogins:
    """jti of login tokens already used (kept until they would have expired anyway).

    Burnt in the state store when ``store_of()`` gives one: every API worker, and every API
    host on the same Neo4j, then refuses a link used anywhere, also after a restart. Without a
    store (unit use) they are kept in this process's memory.
    """

    def __init__(self, store_of: Callable[[], Any] | None = None) -> None:
        self._store_of = store_of
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def consume(self, jti: str, exp: float) -> bool:
        store = self._store_of() if self._store_of is not None else None
        if store is not None:
            return bool(store.consume_once(f"ui-login:{jti}", exp))
        now = time.time()
        with self._lock:
            for k in [k for k, e in self._used.items() if e < now]:
                del self._used[k]
            if jti in self._used:
                return False
            self._used[jti] = exp
            return True


@dataclass(frozen=True)
class Session:
    """Who is looking: the identity and the scopes the store gave it at login."""

    identifier: str
    scopes: tuple[Scope, ...]

    @property
    def token(self) -> TokenData:
        return TokenData(identifier=self.identifier, kind="user", scopes=self.scopes)

    @property
    def sees_everything(self) -> bool:
        return any(s == Scope() for s in self.scopes)


def _decode(secret: str, token: str, audience: str) -> dict[str, Any]:
    return jwt.decode(
        token, secret, algorithms=[ALGORITHM], audience=audience, options={"require": ["exp", "sub", "aud"]}
    )


def redeem_login(request: Request, secret: str, token: str) -> str:
    """Check a login token and burn it; return a session JWT for the cookie."""
    try:
        claims = _decode(secret, token, LOGIN_AUDIENCE)
    except jwt.ExpiredSignatureError:
        raise HTTPException(
            401, "this login link has expired; ask `alchemiscale-local up` for a new one"
        ) from None
    except jwt.InvalidTokenError:
        raise HTTPException(401, "this login link is not valid") from None
    jti = claims.get("jti")
    if not isinstance(jti, str) or not request.app.state.ui_logins.consume(jti, float(claims["exp"])):
        raise HTTPException(401, "this login link was already used; each link works once")
    identity = _identity(request, claims["sub"])
    now = int(time.time())
    return jwt.encode(
        {
            "sub": identity["identifier"],
            "aud": SESSION_AUDIENCE,
            "scopes": list(identity["scopes"]),
            # the identity's version, as API tokens carry it: a scope change, key rotation or
            # removal ends the session within the gate's recheck window
            "ver": identity_version(identity),
            "iat": now,
            "exp": now + SESSION_TTL_S,
        },
        secret,
        algorithm=ALGORITHM,
    )


def _identity(request: Request, identifier: str) -> dict[str, Any]:
    try:
        ident = request.app.state.store.get_identity(identifier)
    except NotFound:
        ident = None
    if ident is None or ident.get("kind") != "user":
        raise HTTPException(401, f"{identifier} is not a user identity")
    if ident.get("disabled") or (ident.get("expires") is not None and ident["expires"] < time.time()):
        raise HTTPException(401, f"identity {identifier} is disabled or has expired")
    return ident


def current_session(request: Request) -> Session:
    """The request's session from its cookie; NotLoggedIn otherwise."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        raise NotLoggedIn("not logged in")
    try:
        claims = _decode(request.app.state.ui_secret, raw, SESSION_AUDIENCE)
        scopes = tuple(Scope.from_str(s) for s in claims.get("scopes", []))
    except jwt.ExpiredSignatureError:
        raise NotLoggedIn("the session has expired") from None
    except (jwt.InvalidTokenError, InvalidIdentifier, ValueError):
        raise NotLoggedIn("invalid session") from None
    try:
        # a removed or disabled identity loses its dashboard within seconds, like its API tokens
        version = claims.get("ver")
        request.app.state.identity_gate.check(
            request.app.state.store, claims["sub"], version if isinstance(version, str) else ""
        )
    except HTTPException as exc:
        raise NotLoggedIn(str(exc.detail)) from None
    return Session(identifier=claims["sub"], scopes=scopes)
