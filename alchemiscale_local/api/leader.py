"""Which API process runs the once-per-deployment background work (reaper, strategist).

Every worker runs a :class:`LeaseKeeper`; the Neo4j lease (``backends/statestore/leases.py``)
lets one of them hold it at a time. That is right for N workers behind one address and for
several API hosts on one Neo4j alike. The holder renews every ``renew_s``; when it dies, its
lease runs out after ``ttl_s`` and the next worker that asks takes it over.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

#: the lease that the reaper and the strategist run under
BACKGROUND_LEASE = "api-background"
LEASE_TTL_S = 10.0
RENEW_S = 2.5


def process_id() -> str:
    """A name for this process that no other process (here or on another host) shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseKeeper:
    """Holds lease ``name`` for this process whenever it can, in a thread of its own.

    :meth:`held` is true only while the last successful renewal is recent enough that the lease
    cannot have run out in Neo4j yet (it was taken before the request went out, and one renewal
    interval is kept as a margin), so two holders never act at once while clocks run alike.
    """

    def __init__(
        self,
        store: Any,
        holder: str,
        name: str = BACKGROUND_LEASE,
        ttl_s: float = LEASE_TTL_S,
        renew_s: float = RENEW_S,
    ) -> None:
        if renew_s >= ttl_s:
            raise ValueError("renew_s must be shorter than ttl_s")
        self.store = store
        self.holder = holder
        self.name = name
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{name}", daemon=True)
        self._problem: str | None = None

    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing and hand the lease back at once (a restart need not wait out the TTL)."""
        self._stop.set()
        self._thread.join(timeout=self.ttl_s)
        if self.held():
            self._valid_until = 0.0
            try:
                self.store.release_lease(self.name, self.holder)
            except Exception as exc:  # Neo4j away: the lease runs out by itself
                log.warning("could not release lease %s: %s", self.name, exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._renew()
            self._stop.wait(self.renew_s)

    def _renew(self) -> None:
        asked = time.monotonic()
        was = self.held()
        try:
            mine = self.store.acquire_lease(self.name, self.holder, self.ttl_s)
        except Exception as exc:  # Neo4j down: not held once the margin is used up; retry
            if self._problem != str(exc):
                log.warning("lease %s: could not renew: %s", self.name, exc)
                self._problem = str(exc)
            return
        self._problem = None
        self._valid_until = asked + self.ttl_s - self.renew_s if mine else 0.0
        if mine and not was:
            log.info(
                "this worker (%s) holds lease %s: it runs the reaper and strategist", self.holder, self.name
            )
        elif was and not mine:
            log.warning("this worker (%s) lost lease %s", self.holder, self.name)
