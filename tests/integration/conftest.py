"""Fixtures of the integration suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


# -- state store (tests/integration/test_statestore_*.py) ------------------------------
@pytest.fixture
def store(clean_graph, neo4j_connection) -> Iterator[Neo4jStore]:  # noqa: F821
    """A Neo4jStore on an empty graph with its schema created (the session's shared driver)."""
    from alchemiscale_local.backends.statestore import Neo4jStore

    s = Neo4jStore(clean_graph, neo4j_connection.database)
    s.initialize()
    yield s
