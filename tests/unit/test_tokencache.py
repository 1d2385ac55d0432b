"""The per-process cache of verified bearer tokens refuses what the plain issuer refuses."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi import HTTPException

from alchemiscale_local.api.tokencache import MAX_CACHED, CachingTokenIssuer
from tests.waiting import wait_for

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def _status(issuer: CachingTokenIssuer, token: str) -> int | str:
    try:
        return issuer.verify(token).identifier
    except HTTPException as exc:
        return exc.status_code


def test_a_cached_token_still_expires():
    issuer = CachingTokenIssuer(SECRET, 1)
    token = issuer.issue("alice", "user", ["*-*-*"], "v1")
    assert issuer.verify(token).identifier == "alice"
    assert issuer.verify(token).identifier == "alice"  # from the cache
    wait_for(lambda: _status(issuer, token) == 401, 30, "the cached token to expire")
    with pytest.raises(HTTPException, match="token expired"):
        issuer.verify(token)


def test_a_token_signed_otherwise_is_refused_next_to_a_cached_one():
    issuer = CachingTokenIssuer(SECRET, 60)
    good = issuer.issue("alice", "user", ["*-*-*"], "v1")
    issuer.verify(good)
    claims = jwt.decode(good, SECRET, algorithms=["HS256"])
    forged = jwt.encode(
        {**claims, "scopes": ["other-*-*"]}, "another-secret-0123456789abcdef0123", algorithm="HS256"
    )
    assert _status(issuer, forged) == 401
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    assert _status(issuer, tampered) == 401


def test_the_cache_stays_bounded():
    issuer = CachingTokenIssuer(SECRET, 60)
    for i in range(MAX_CACHED + 10):
        issuer.verify(jwt.encode({"sub": f"u{i}", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"))
    assert len(issuer._known) <= MAX_CACHED
