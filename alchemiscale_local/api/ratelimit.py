"""Failed ``/token`` attempts, counted per identity and per client address (sliding window).

Checked before any bcrypt work, so a flood of wrong keys is answered 429 cheaply instead of
occupying worker threads that every other request needs.

With N API worker processes each keeps its own counts, so the budget is divided among them
(:meth:`FailureLimiter.for_workers`): whichever workers the attempts land on, no more than the
deployment's budget of wrong keys is tried per window. A shared counter in Neo4j would be
exact, but would put a database write on every failed attempt, on the event loop, which is
what a flood must not get; the price of dividing is that attempts landing on one worker are
refused after budget/N.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque

# At most this many identities/addresses are tracked; the least recently failed go first.
MAX_TRACKED = 100_000


class FailureLimiter:
    """Refuse for a while after too many recent failures of one identity or one address.

    ``per_identity`` failures of one identifier, or ``per_address`` failures from one client
    address, within ``window_s`` seconds block further attempts until the oldest of them
    leaves the window. A success clears the identity's count.
    """

    def __init__(self, per_identity: int = 10, per_address: int = 100, window_s: float = 60.0) -> None:
        self.per_identity = per_identity
        self.per_address = per_address
        self.window_s = window_s
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.refused = 0  # 429s answered, for logs and tests

    @classmethod
    def for_workers(
        cls, workers: int, per_identity: int = 10, per_address: int = 100, window_s: float = 60.0
    ) -> FailureLimiter:
        """One worker's share of the budget when ``workers`` processes serve the API."""
        n = max(1, workers)
        return cls(max(1, per_identity // n), max(1, per_address // n), window_s)

    def retry_after(self, identifier: str, address: str) -> int | None:
        """Seconds to wait when blocked, else None."""
        now = time.monotonic()
        with self._lock:
            waits = [
                self._wait(("id", identifier), self.per_identity, now),
                self._wait(("addr", address), self.per_address, now),
            ]
        blocked = [w for w in waits if w is not None]
        if not blocked:
            return None
        self.refused += 1
        return max(1, math.ceil(max(blocked)))

    def failed(self, identifier: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (("id", identifier), ("addr", address)):
                times = self._failures.pop(key, None) or deque()
                times.append(now)
                self._failures[key] = times  # most recent last
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def succeeded(self, identifier: str) -> None:
        with self._lock:
            self._failures.pop(("id", identifier), None)

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> float | None:
        times = self._failures.get(key)
        if not times:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        if len(times) < limit:
            return None
        return times[-limit] + self.window_s - now
