"""Use a Neo4j someone else runs: URI, user and password come from settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import Neo4jConnection, Neo4jLauncher, Neo4jLauncherError, Neo4jStartError, wait_for_bolt

if TYPE_CHECKING:  # pragma: no cover
    from alchemiscale_local.settings import Settings


class ExternalLauncher(Neo4jLauncher):
    """Starts and stops nothing; only checks that the configured Neo4j answers."""

    kind = "external"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if not settings.neo4j.uri:
            raise Neo4jLauncherError(
                "The external launcher needs a Bolt URI: set neo4j.uri "
                "(ALCHEMISCALE_LOCAL_NEO4J__URI=bolt://host:7687) and neo4j.password "
                "(ALCHEMISCALE_LOCAL_NEO4J__PASSWORD)."
            )

    @property
    def log_path(self) -> Path | None:
        return None

    def connection(self) -> Neo4jConnection:
        n4j = self.settings.neo4j
        password = n4j.password.get_secret_value() if n4j.password is not None else ""
        return Neo4jConnection(uri=str(n4j.uri), user=n4j.user, password=password, database=n4j.database)

    def start(self) -> Neo4jConnection:
        return self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> Neo4jConnection:
        timeout = self.settings.neo4j.start_timeout_s if timeout is None else timeout
        conn = self.connection()
        err = wait_for_bolt(conn, timeout)
        if err is not None:
            raise Neo4jStartError(
                f"The external Neo4j at {conn.uri} did not answer as user {conn.user!r}: {err}"
            )
        return conn

    def is_running(self) -> bool:
        return wait_for_bolt(self.connection(), 2.0) is None

    def stop(self) -> bool:
        """Nothing to stop: an external Neo4j is not ours."""
        return False
