"""Driver handling shared by every part of the state store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from neo4j import Driver, GraphDatabase, ManagedTransaction, NotificationMinimumSeverity
from neo4j.exceptions import ServiceUnavailable, SessionExpired

from alchemiscale_local.models import InvalidIdentifier, Scope, ScopedKey

from .errors import InvalidInput, NotFound, Unavailable
from .reachability import Reachability
from .schema import ensure_schema

log = logging.getLogger(__name__)

T = TypeVar("T")

# Rows per UNWIND statement: large enough that a 2,000-transformation network is a
# handful of round trips, small enough that no single parameter map gets huge.
BATCH_ROWS = 5000


def batched(rows: Sequence[T], size: int = BATCH_ROWS) -> Iterator[Sequence[T]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


Qualnames = str | tuple[str, ...] | None


def _check_qualname(sk: ScopedKey, qualname: Qualnames) -> ScopedKey:
    if qualname is not None:
        allowed = (qualname,) if isinstance(qualname, str) else qualname
        if sk.qualname not in allowed:
            raise InvalidInput(f"{sk} is not a {' or '.join(allowed)}")
    return sk


def parse_scope(scope: str | Scope, *, specific: bool = False) -> Scope:
    """A Scope from a string or Scope; InvalidInput on a bad one."""
    try:
        parsed = scope if isinstance(scope, Scope) else Scope.from_str(scope)
    except (InvalidIdentifier, ValueError) as exc:
        raise InvalidInput(str(exc)) from None
    if specific and not parsed.specific:
        raise InvalidInput(f"scope {parsed} must be specific (no '*') here")
    return parsed


def parse_sk(key: str, *, qualname: Qualnames = None) -> ScopedKey:
    """A ScopedKey from a string (one read from the graph or a stored document); InvalidInput
    if malformed or of the wrong class."""
    try:
        sk = ScopedKey.from_str(key)
    except (InvalidIdentifier, ValueError) as exc:
        raise InvalidInput(str(exc)) from None
    return _check_qualname(sk, qualname)


def key_of(key: ScopedKey, qualname: Qualnames = None) -> ScopedKey:
    """A key given to a public method: its class checked (InvalidInput otherwise), not parsed again.

    The package passes ScopedKeys, parsed once at its edge (API, CLI) and checked by mypy; a
    string from an untyped caller (tests, ad-hoc scripts) is still parsed here rather than
    written to the graph unchecked.
    """
    if isinstance(key, ScopedKey):
        return _check_qualname(key, qualname)
    if isinstance(key, str):
        return parse_sk(key, qualname=qualname)
    raise InvalidInput(f"{key!r} is not a scoped key")


def key_strs(keys: Iterable[ScopedKey], qualname: Qualnames = None) -> list[str]:
    """The strings of ``keys`` (each checked as by :func:`key_of`), for Cypher parameters."""
    return [str(key_of(k, qualname)) for k in keys]


def scope_params(scope: Scope) -> dict[str, str | None]:
    """Parameters for the ``($org IS NULL OR n._org = $org) AND ...`` scope filter."""
    return {"org": scope.org, "campaign": scope.campaign, "project": scope.project}


SCOPE_FILTER = (
    "($org IS NULL OR {v}._org = $org) AND ($campaign IS NULL OR {v}._campaign = $campaign) "
    "AND ($project IS NULL OR {v}._project = $project)"
)


def scope_filter(var: str) -> str:
    return SCOPE_FILTER.format(v=var)


_LOOKUP_LABELS = frozenset({"GufeTokenizable", "Task", "TaskHub"})


class StoreBase:
    """Owns the driver; gives the feature mixins read/write helpers."""

    def __init__(
        self, driver: Driver, database: str = "neo4j", reachability: Reachability | None = None
    ) -> None:
        self.driver = driver
        self.database = database
        # Set by connect(): queries fail fast (Unavailable) while Neo4j does not answer.
        self.reachability = reachability

    def _gate(self) -> None:
        if self.reachability is not None:
            self.reachability.require()

    @classmethod
    def connect(
        cls, uri: str, user: str, password: str, database: str = "neo4j", **driver_options: Any
    ) -> StoreBase:
        options: dict[str, Any] = {
            "max_connection_pool_size": 64,
            "connection_acquisition_timeout": 30.0,
            "connection_timeout": 2.0,
            "max_transaction_retry_time": 15.0,
            "notifications_min_severity": NotificationMinimumSeverity.OFF,
        }
        options.update(driver_options)
        driver = GraphDatabase.driver(uri, auth=(user, password), **options)
        return cls(driver, database, Reachability(uri))

    def close(self) -> None:
        self.driver.close()

    def initialize(self) -> None:
        """Create the schema (idempotent)."""
        self._gate()
        ensure_schema(self.driver, self.database)

    def check(self) -> None:
        """Raise Unavailable unless Neo4j answers a query."""
        try:
            self._gate()
            self.driver.execute_query("RETURN 1", database_=self.database)
        except (ServiceUnavailable, SessionExpired, OSError) as exc:
            raise Unavailable(f"Neo4j is not reachable: {exc}") from None

    # -- helpers --------------------------------------------------------------
    def _read(self, query: str, **params: Any) -> list[dict[str, Any]]:
        self._gate()
        records, _, _ = self.driver.execute_query(query, params, database_=self.database, routing_="r")
        return [r.data() for r in records]

    def _write(self, query: str, **params: Any) -> list[dict[str, Any]]:
        self._gate()
        records, _, _ = self.driver.execute_query(query, params, database_=self.database)
        return [r.data() for r in records]

    def _write_tx(self, work: Callable[[ManagedTransaction], T]) -> T:
        """Run ``work`` in one managed write transaction (retried on transient errors)."""
        self._gate()
        with self.driver.session(database=self.database) as session:
            return session.execute_write(work)

    def _read_tx(self, work: Callable[[ManagedTransaction], T]) -> T:
        self._gate()
        with self.driver.session(database=self.database) as session:
            return session.execute_read(work)

    @staticmethod
    def _now() -> float:
        return time.time()

    def _require_nodes(self, label: str, keys: Iterable[str], *, what: str | None = None) -> None:
        """NotFound naming the first key that has no ``label`` node."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return
        if label not in _LOOKUP_LABELS:
            raise ValueError(f"unsupported label {label!r}")
        # The label is one of the constants above, never user data; it is in the query
        # text so that the label's uniqueness index serves the lookup.
        found = {
            r["k"]
            for r in self._read(
                f"UNWIND $keys AS k MATCH (n:{label} {{_scoped_key: k}}) RETURN k", keys=wanted
            )
        }
        missing = [k for k in wanted if k not in found]
        if missing:
            raise NotFound(
                f"no {what or label} {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
