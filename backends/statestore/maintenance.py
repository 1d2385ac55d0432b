"""Whole-database checks and reset (``alchemiscale-local database check|reset``)."""

from __future__ import annotations

from typing import Any

from .schema import ensure_schema

IDENTITY_LABEL = "CredentialedIdentity"


def database_report(store: Any) -> dict[str, Any]:
    """Reachability, node counts by label and the constraints present (raises Unavailable)."""
    store.check()
    counts = store._read("MATCH (n) UNWIND labels(n) AS label RETURN label, count(*) AS n ORDER BY label")
    constraints = store._read("SHOW CONSTRAINTS YIELD name RETURN name ORDER BY name")
    return {
        "reachable": True,
        "counts": {r["label"]: r["n"] for r in counts},
        "constraints": [r["name"] for r in constraints],
    }


def reset_database(store: Any, *, keep_identities: bool = True, batch: int = 10_000) -> int:
    """Delete every node (identities kept unless ``keep_identities`` is false), then recreate
    the schema; the number of nodes deleted."""
    where = f"WHERE NOT n:{IDENTITY_LABEL} " if keep_identities else ""
    deleted = 0
    while True:
        rows = store._write(
            f"MATCH (n) {where}WITH n LIMIT $batch DETACH DELETE n RETURN count(*) AS n", batch=batch
        )
        done = rows[0]["n"] if rows else 0
        deleted += done
        if done < batch:
            break
    ensure_schema(store.driver, store.database)
    return deleted
