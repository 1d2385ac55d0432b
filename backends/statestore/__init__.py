"""The Neo4j state store: the single source of truth of a deployment.

Nothing here imports gufe; documents are handled as keyed-chain JSON.
"""

from __future__ import annotations

from .compute import ComputeMixin
from .errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotFound,
    StateStoreError,
    Unavailable,
)
from .identities import IdentitiesMixin
from .leases import LeasesMixin
from .managers import ManagersMixin
from .networks import NetworksMixin, hub_key
from .quota import QuotaMixin
from .results import ResultsMixin
from .services import ServicesMixin
from .tasks import TasksMixin


class Neo4jStore(
    ManagersMixin,  # with TaskHubsMixin; both build on ComputeMixin, so they come first
    NetworksMixin,
    TasksMixin,
    ServicesMixin,
    ComputeMixin,
    ResultsMixin,
    IdentitiesMixin,
    QuotaMixin,
    LeasesMixin,  # last: it is the StoreBase
):
    """All state-store operations on one driver (see each mixin for its part)."""

    def reset(self) -> None:
        """Delete every node and relation (tests and ephemeral deployments only)."""
        with self.driver.session(database=self.database) as session:
            session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()


__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "InvalidTransition",
    "Neo4jStore",
    "NotFound",
    "StateStoreError",
    "Unavailable",
    "hub_key",
]
