"""The task-file quota, shared by every API process (workers, or hosts on one Neo4j).

- ``(:TaskFileUsage {store, used})``: bytes of task files kept in the object store ``store``
  (its URL), counted once from a listing when the node is absent, then kept up to date.
- ``(:TaskFileReservation {id, store, size, expires})``: room held by an upload in flight. It
  expires (Neo4j's clock, ms), so a worker killed mid-upload does not hold its room forever.

A reservation is admitted in one write transaction that first takes the usage node's write
lock, so concurrent uploads on any worker see each other's reservations.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from neo4j import ManagedTransaction

from .base import StoreBase

DEFAULT_RESERVATION_TTL_S = 3600.0  # longer than any upload; only a dead worker's room waits this long

_INIT = """
MERGE (u:TaskFileUsage {store: $store})
ON CREATE SET u.used = $used
"""

_LOCK = "MATCH (u:TaskFileUsage {store: $store}) SET u._lock = true RETURN u.used AS used"
_UNLOCK = "MATCH (u:TaskFileUsage {store: $store}) REMOVE u._lock"
_PRUNE = "MATCH (r:TaskFileReservation {store: $store}) WHERE r.expires < timestamp() DELETE r"
_RESERVED = "MATCH (r:TaskFileReservation {store: $store}) RETURN coalesce(sum(r.size), 0) AS reserved"
_CREATE = """
CREATE (:TaskFileReservation {id: $id, store: $store, size: $size, expires: timestamp() + $ttl_ms})
"""
_SETTLE = """
MATCH (u:TaskFileUsage {store: $store})
SET u.used = u.used + $stored
WITH u
OPTIONAL MATCH (r:TaskFileReservation {id: $id})
DELETE r
"""
_USAGE = """
MATCH (u:TaskFileUsage {store: $store})
OPTIONAL MATCH (r:TaskFileReservation {store: $store}) WHERE r.expires >= timestamp()
RETURN u.used AS used, coalesce(sum(r.size), 0) AS reserved
"""
_FORGET = """
OPTIONAL MATCH (u:TaskFileUsage {store: $store})
OPTIONAL MATCH (r:TaskFileReservation {store: $store})
DETACH DELETE u, r
"""


@dataclass(frozen=True)
class QuotaReservation:
    """The outcome of :meth:`QuotaMixin.reserve_taskfile_bytes`: ``id`` is None when refused;
    ``in_use`` is the bytes kept plus those held by live reservations (before this one)."""

    id: str | None
    in_use: int


class QuotaMixin(StoreBase):
    """The deployment-wide task-file quota (see the module docstring)."""

    def _ensure_taskfile_usage(self, store: str, count: Callable[[], int]) -> None:
        if self._read("MATCH (u:TaskFileUsage {store: $store}) RETURN 1 AS x", store=store):
            return
        # Counted outside the transaction (a listing may be slow); the unique constraint makes
        # MERGE keep the first count when two workers start at once.
        self._write(_INIT, store=store, used=int(count()))

    def reserve_taskfile_bytes(
        self,
        store: str,
        size: int,
        quota: int,
        count: Callable[[], int],
        ttl_s: float = DEFAULT_RESERVATION_TTL_S,
    ) -> QuotaReservation:
        """Hold ``size`` bytes of object store ``store`` if kept + live reservations + size <= quota.

        ``count()`` gives the bytes already kept, called only when no usage node exists yet."""
        self._gate()
        self._ensure_taskfile_usage(store, count)
        rid = uuid.uuid4().hex

        def work(tx: ManagedTransaction) -> QuotaReservation:
            used = int(tx.run(_LOCK, store=store).single(strict=True)["used"])  # the write lock
            tx.run(_PRUNE, store=store).consume()
            in_use = used + int(tx.run(_RESERVED, store=store).single(strict=True)["reserved"])
            admitted = in_use + size <= quota
            if admitted:
                tx.run(_CREATE, id=rid, store=store, size=size, ttl_ms=int(ttl_s * 1000)).consume()
            tx.run(_UNLOCK, store=store).consume()
            return QuotaReservation(rid if admitted else None, in_use)

        return self._write_tx(work)

    def settle_taskfile_bytes(self, store: str, reservation: str, stored: int) -> None:
        """Drop ``reservation`` (gone already if it expired) and count ``stored`` bytes as kept."""
        self._write(_SETTLE, store=store, id=reservation, stored=int(stored))

    def taskfile_usage(self, store: str) -> dict[str, int] | None:
        """``{used, reserved}`` (live reservations) of object store ``store``; None before the first count."""
        rows = self._read(_USAGE, store=store)
        return {"used": int(rows[0]["used"]), "reserved": int(rows[0]["reserved"])} if rows else None

    def forget_taskfile_usage(self, store: str) -> None:
        """Drop the count and reservations of ``store``: the next reservation counts from a listing."""
        self._write(_FORGET, store=store)
