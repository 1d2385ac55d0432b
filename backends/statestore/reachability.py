"""Fail fast while Neo4j is down: a cached Bolt handshake probe in front of every query.

Without it a query against a dead Neo4j waits for the driver's connection and retry
timeouts (about 16 s) before the API can answer 503. The probe opens a TCP connection and
exchanges Bolt's handshake (4 bytes back), so a killed Neo4j (connection refused) and a
hung one (no answer within ``timeout_s``) are both seen within about a second. Results are
cached for ``ttl_s``, so a busy API probes about once per interval.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

from .errors import Unavailable

BOLT_PORT = 7687
# Bolt magic preamble, then four version proposals (5.4-5.0, 4.4, none, none).
_HANDSHAKE = b"\x60\x60\xb0\x17" + b"\x00\x04\x04\x05" + b"\x00\x00\x04\x04" + b"\x00" * 8


class Reachability:
    """``require()`` raises :class:`Unavailable` while the Bolt endpoint does not answer."""

    def __init__(self, uri: str, *, timeout_s: float = 1.0, ttl_s: float = 0.5) -> None:
        parts = urlsplit(uri)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or BOLT_PORT
        # With TLS (bolt+s, neo4j+ssc, ...) the plaintext handshake is not spoken: TCP only.
        self.handshake = "+" not in parts.scheme
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._problem: str | None = None

    def require(self) -> None:
        now = time.monotonic()
        if now - self._checked_at >= self.ttl_s:
            with self._lock:  # one probe at a time; the others use its answer
                if time.monotonic() - self._checked_at >= self.ttl_s:
                    self._problem = self._probe()
                    self._checked_at = time.monotonic()
        if self._problem is not None:
            raise Unavailable(f"Neo4j at {self.host}:{self.port} is not answering: {self._problem}")

    def _probe(self) -> str | None:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as sock:
                if self.handshake:
                    sock.sendall(_HANDSHAKE)
                    if len(sock.recv(4, socket.MSG_WAITALL)) != 4:
                        return "it closed the connection during the Bolt handshake"
        except TimeoutError:
            return f"no answer within {self.timeout_s} s"
        except OSError as exc:
            return exc.strerror or type(exc).__name__
        return None
