"""State that several API processes (workers, or hosts on one Neo4j) must share.

- **Leases**: ``(:Lease {name, holder, expires, since, takeovers})``. One holder at a time runs
  what must run once per deployment (the reaper, the strategist); it renews well within the
  TTL; when it dies, the lease expires and the next worker that asks takes it over.
- **One-time tokens**: ``(:UsedToken {jti, expires})``. A dashboard login link is burnt in
  Neo4j, so no worker (or host) accepts it a second time.

Times are Neo4j's clock (``timestamp()``, ms), not the callers': several hosts may disagree.
"""

from __future__ import annotations

import logging
from typing import Any

from neo4j.exceptions import ClientError

from .base import StoreBase

log = logging.getLogger(__name__)

LEASE_SCHEMA = (
    "CREATE CONSTRAINT lease_name IF NOT EXISTS FOR (n:Lease) REQUIRE n.name IS UNIQUE",
    "CREATE CONSTRAINT used_token_jti IF NOT EXISTS FOR (n:UsedToken) REQUIRE n.jti IS UNIQUE",
)

# SET of a dummy property first: it takes the node's write lock, so the holder/expiry read
# after it is the latest committed one (Neo4j's documented guard against lost updates).
_ACQUIRE = """
MERGE (l:Lease {name: $name})
ON CREATE SET l.holder = $holder, l.expires = 0, l.since = timestamp(), l.takeovers = 0
SET l._lock = true
WITH l, timestamp() AS now, l.holder AS prev
WITH l, now, prev, (prev = $holder OR prev IS NULL OR l.expires < now) AS mine
SET l.since = CASE WHEN mine AND prev <> $holder THEN now ELSE l.since END,
    l.takeovers = CASE WHEN mine AND prev <> $holder THEN l.takeovers + 1 ELSE l.takeovers END,
    l.holder = CASE WHEN mine THEN $holder ELSE prev END,
    l.expires = CASE WHEN mine THEN now + $ttl_ms ELSE l.expires END
REMOVE l._lock
RETURN mine
"""

_RELEASE = """
MATCH (l:Lease {name: $name})
SET l._lock = true
WITH l WHERE l.holder = $holder
SET l.expires = 0
REMOVE l._lock
"""

_LEASE = """
MATCH (l:Lease {name: $name})
RETURN l.holder AS holder, l.expires AS expires, l.since AS since, l.takeovers AS takeovers,
       l.expires >= timestamp() AS live
"""

# The constraint makes MERGE race-free: of two concurrent consumers, one creates, one matches.
_CONSUME = """
MERGE (u:UsedToken {jti: $jti})
ON CREATE SET u.expires = $expires_ms, u._new = true
WITH u, coalesce(u._new, false) AS fresh
REMOVE u._new
RETURN fresh
"""

_PRUNE = "MATCH (u:UsedToken) WHERE u.expires < timestamp() WITH u LIMIT 1000 DELETE u"


class LeasesMixin(StoreBase):
    """Leases and one-time tokens in Neo4j (see the module docstring)."""

    _lease_schema_ready = False

    def initialize(self) -> None:
        super().initialize()
        self._ensure_lease_schema()

    def _ensure_lease_schema(self) -> None:
        if self._lease_schema_ready:
            return
        for statement in LEASE_SCHEMA:
            try:
                self.driver.execute_query(statement, database_=self.database)
            except ClientError as exc:  # another worker created it at the same moment
                log.debug("lease schema: %s", exc)
        self._lease_schema_ready = True

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew lease ``name`` for ``ttl_s`` seconds; whether ``holder`` holds it now."""
        self._gate()
        self._ensure_lease_schema()
        rows = self._write(_ACQUIRE, name=name, holder=holder, ttl_ms=int(ttl_s * 1000))
        return bool(rows and rows[0]["mine"])

    def release_lease(self, name: str, holder: str) -> None:
        """Let go of ``name`` now if ``holder`` holds it (the next asker takes it at once)."""
        self._write(_RELEASE, name=name, holder=holder)

    def lease(self, name: str) -> dict[str, Any] | None:
        """``{holder, expires, since (epoch ms), takeovers, live}`` of lease ``name``, or None."""
        rows = self._read(_LEASE, name=name)
        return rows[0] if rows else None

    def consume_once(self, jti: str, expires_s: float) -> bool:
        """Burn the one-time token ``jti`` (kept until ``expires_s``, epoch seconds); False if it
        was burnt before, by any process on this Neo4j."""
        self._gate()
        self._ensure_lease_schema()
        self._write(_PRUNE)
        rows = self._write(_CONSUME, jti=jti, expires_ms=int(expires_s * 1000))
        return bool(rows and rows[0]["fresh"])
