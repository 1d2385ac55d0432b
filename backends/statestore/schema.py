"""Constraints and indexes, created idempotently at start (Community features only)."""

from __future__ import annotations

from neo4j import Driver

# Each statement runs in its own auto-commit transaction: Neo4j refuses schema and
# data changes in one transaction, and IF NOT EXISTS makes every run idempotent.
SCHEMA_STATEMENTS: tuple[str, ...] = (
    "CREATE CONSTRAINT gufe_scoped_key IF NOT EXISTS FOR (n:GufeTokenizable) REQUIRE n._scoped_key IS UNIQUE",
    "CREATE CONSTRAINT task_scoped_key IF NOT EXISTS FOR (n:Task) REQUIRE n._scoped_key IS UNIQUE",
    "CREATE CONSTRAINT taskhub_scoped_key IF NOT EXISTS FOR (n:TaskHub) REQUIRE n._scoped_key IS UNIQUE",
    "CREATE CONSTRAINT pdrref_location IF NOT EXISTS FOR (n:ProtocolDAGResultRef) REQUIRE n.location IS UNIQUE",
    "CREATE CONSTRAINT compute_service_id IF NOT EXISTS FOR (n:ComputeServiceRegistration) REQUIRE n.identifier IS UNIQUE",
    "CREATE CONSTRAINT compute_service_owner IF NOT EXISTS FOR (n:ComputeServiceOwner) REQUIRE n.identifier IS UNIQUE",
    "CREATE CONSTRAINT compute_manager_name IF NOT EXISTS FOR (n:ComputeManagerRegistration) REQUIRE n.name IS UNIQUE",
    "CREATE INDEX compute_service_manager IF NOT EXISTS FOR (n:ComputeServiceRegistration) ON (n.manager_name)",
    "CREATE CONSTRAINT identity_id IF NOT EXISTS FOR (n:CredentialedIdentity) REQUIRE n.identifier IS UNIQUE",
    "CREATE INDEX task_status IF NOT EXISTS FOR (n:Task) ON (n.status)",
    "CREATE INDEX task_transformation IF NOT EXISTS FOR (n:Task) ON (n.transformation)",
    "CREATE INDEX task_scope IF NOT EXISTS FOR (n:Task) ON (n._org, n._campaign, n._project)",
    "CREATE INDEX gufe_scope IF NOT EXISTS FOR (n:GufeTokenizable) ON (n._org, n._campaign, n._project)",
    "CREATE INDEX gufe_qualname IF NOT EXISTS FOR (n:GufeTokenizable) ON (n._qualname)",
    "CREATE INDEX taskhub_network IF NOT EXISTS FOR (n:TaskHub) ON (n.network)",
    "CREATE INDEX compute_heartbeat IF NOT EXISTS FOR (n:ComputeServiceRegistration) ON (n.heartbeat)",
    "CREATE INDEX restart_pattern_key IF NOT EXISTS FOR (n:TaskRestartPattern) ON (n.key)",
    "CREATE CONSTRAINT taskfile_usage_store IF NOT EXISTS FOR (n:TaskFileUsage) REQUIRE n.store IS UNIQUE",
    "CREATE INDEX taskfile_reservation IF NOT EXISTS FOR (n:TaskFileReservation) ON (n.id)",
)


def ensure_schema(driver: Driver, database: str) -> None:
    """Create every constraint and index if missing, then wait for them to come online."""
    for statement in SCHEMA_STATEMENTS:
        driver.execute_query(statement, database_=database)
    driver.execute_query("CALL db.awaitIndexes(300)", database_=database)
