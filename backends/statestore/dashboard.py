"""Read-only queries for the web dashboard (``/ui``): summaries shaped for pages, never writes.

Kept apart from the feature mixins so the dashboard can grow without touching them. Every
function takes the store (for its driver) and returns plain dicts; scope checks are the
caller's job (the dashboard only asks about networks and tasks the user may see).
"""

from __future__ import annotations

import json
from typing import Any

from alchemiscale_local.models import Scope

from .base import StoreBase, scope_filter, scope_params

STATUSES = ("waiting", "running", "complete", "error", "invalid", "deleted")

#: columns the transformation table may be sorted by -> the Cypher expression (a constant)
SORT_COLUMNS = {
    "name": "name",
    "tasks": "tasks",
    "waiting": "waiting",
    "running": "running",
    "complete": "complete",
    "error": "error",
    "results": "results",
    "failures": "failures",
    "last_failure": "last_failure_at",
}

_STATUS_SUMS = ", ".join(
    f"count(CASE WHEN t.status = '{s}' THEN 1 END) AS {s}" for s in STATUSES
)  # constants only

_NETWORKS = (
    """
MATCH (an:AlchemicalNetwork) WHERE {filter} AND ($sk IS NULL OR an._scoped_key = $sk)
OPTIONAL MATCH (th:TaskHub)-[:PERFORMS]->(an)
CALL (an) {{
  OPTIONAL MATCH (an)-[:DEPENDS_ON {{attribute: 'edges'}}]->(tf)
  RETURN count(tf) AS transformations
}}
CALL (an) {{
  OPTIONAL MATCH (an)-[:DEPENDS_ON {{attribute: 'edges'}}]->()<-[:PERFORMS]-(t:Task)
  WITH DISTINCT t
  RETURN {sums}
}}
CALL (an) {{
  OPTIONAL MATCH (an)-[:DEPENDS_ON {{attribute: 'edges'}}]->()<-[:PERFORMS]-(:Task)-[:RESULTS_IN]->(r)
  WHERE r.created_at >= $since
  RETURN count(r) AS recent_done, min(r.created_at) AS recent_first
}}
RETURN an._scoped_key AS sk, an.name AS name, an._state AS state, th.weight AS weight,
       transformations, {cols}, recent_done, recent_first
ORDER BY name, sk
"""
).format(
    filter=scope_filter("an"),
    sums=_STATUS_SUMS,
    cols=", ".join(STATUSES),
)

_TRANSFORMATIONS = """
MATCH (:AlchemicalNetwork {{_scoped_key: $n}})-[:DEPENDS_ON {{attribute: 'edges'}}]->(tf)
CALL (tf) {{
  OPTIONAL MATCH (tf)<-[:PERFORMS]-(t:Task)
  RETURN count(t) AS tasks, {sums}
}}
CALL (tf) {{
  OPTIONAL MATCH (tf)<-[:PERFORMS]-(:Task)-[:RESULTS_IN]->(r)
  RETURN count(CASE WHEN r.ok THEN 1 END) AS results,
         count(CASE WHEN r.ok = false THEN 1 END) AS failures,
         max(CASE WHEN r.ok = false THEN r.created_at END) AS last_failure_at
}}
WITH tf, coalesce(tf.name, tf._scoped_key) AS name, tasks, {cols}, results, failures, last_failure_at
ORDER BY {order} {direction}, tf._scoped_key
WITH collect({{sk: tf._scoped_key, name: name, tasks: tasks, {map}, results: results,
              failures: failures, last_failure_at: last_failure_at}}) AS rows
RETURN size(rows) AS total, rows[$skip..$skip + $limit] AS page
"""

_LAST_FAILURES = """
UNWIND $keys AS k
MATCH (t:Task {transformation: k})-[:RESULTS_IN]->(r:ProtocolDAGResultRef {ok: false})
WITH k, t, r ORDER BY r.created_at DESC
WITH k, head(collect({task: t._scoped_key, at: r.created_at, tracebacks: r.tracebacks})) AS last
RETURN k, last
"""

_GRAPH = """
MATCH (:AlchemicalNetwork {_scoped_key: $n})-[:DEPENDS_ON {attribute: 'edges'}]->(tf)
OPTIONAL MATCH (tf)-[:DEPENDS_ON {attribute: 'stateA'}]->(a)
OPTIONAL MATCH (tf)-[:DEPENDS_ON {attribute: 'stateB'}]->(b)
OPTIONAL MATCH (a)-[:DEPENDS_ON {attribute: 'components', key: 'ligand'}]->(la)
OPTIONAL MATCH (b)-[:DEPENDS_ON {attribute: 'components', key: 'ligand'}]->(lb)
RETURN tf._scoped_key AS tf, tf.name AS name,
       coalesce(la._scoped_key, a._scoped_key) AS a, coalesce(lb._scoped_key, b._scoped_key) AS b,
       a.name AS a_system, b.name AS b_system, la IS NOT NULL AND lb IS NOT NULL AS by_ligand
ORDER BY tf
"""

_EDGE_STATUS = """
MATCH (:AlchemicalNetwork {_scoped_key: $n})-[:DEPENDS_ON {attribute: 'edges'}]->(tf)
OPTIONAL MATCH (tf)<-[:PERFORMS]-(t:Task)
RETURN tf._scoped_key AS tf, collect(t.status) AS statuses
"""


def _counts(row: dict[str, Any]) -> dict[str, int]:
    return {s: int(row.get(s) or 0) for s in STATUSES}


def networks_overview(
    store: StoreBase, scopes: list[Scope], since: float, *, only: str | None = None
) -> list[dict[str, Any]]:
    """Every network in ``scopes``: name, state, hub weight, task counts by status, and the
    number of results recorded since ``since`` (for a rate), deduplicated across scopes."""
    seen: dict[str, dict[str, Any]] = {}
    for scope in scopes:
        for row in store._read(_NETWORKS, since=since, sk=only, **scope_params(scope)):
            row["counts"] = _counts(row)
            seen.setdefault(row["sk"], row)
    return sorted(seen.values(), key=lambda r: (r["name"] or "", r["sk"]))


def network_overview(store: StoreBase, network: str, since: float) -> dict[str, Any] | None:
    """One network's overview row (None if it does not exist)."""
    rows = networks_overview(store, [Scope()], since, only=network)
    return rows[0] if rows else None


def network_transformations(
    store: StoreBase, network: str, *, sort: str = "name", desc: bool = False, skip: int = 0, limit: int = 50
) -> tuple[int, list[dict[str, Any]]]:
    """(total, one page of rows) of a network's transformations with task and result counts."""
    if sort not in SORT_COLUMNS:
        raise ValueError(f"cannot sort by {sort!r}")
    query = _TRANSFORMATIONS.format(
        sums=_STATUS_SUMS,
        cols=", ".join(STATUSES),
        map=", ".join(f"{s}: {s}" for s in STATUSES),
        order=SORT_COLUMNS[sort],
        direction="DESC" if desc else "ASC",
    )
    rows = store._read(query, n=network, skip=skip, limit=limit)
    if not rows:
        return 0, []
    page = rows[0]["page"] or []
    failed = [r["sk"] for r in page if r["failures"]]
    last = {r["k"]: r["last"] for r in store._read(_LAST_FAILURES, keys=failed)} if failed else {}
    for r in page:
        r["counts"] = _counts(r)
        r["last_failure"] = last.get(r["sk"])
    return int(rows[0]["total"]), page


def network_graph(store: StoreBase, network: str) -> dict[str, Any]:
    """Nodes (ligands where the chemical systems name one, else chemical systems) and edges."""
    edges = store._read(_GRAPH, n=network)
    node_keys = sorted({k for e in edges for k in (e["a"], e["b"]) if k})
    names: dict[str, str] = {}
    if node_keys:
        for r in store._read(
            "UNWIND $keys AS k MATCH (n:GufeTokenizable {_scoped_key: k}) "
            "RETURN k, n.name AS name, n._qualname AS q, "
            "CASE WHEN n.name IS NULL AND n._qualname = 'SmallMoleculeComponent' THEN n._doc END AS doc",
            keys=node_keys,
        ):
            names[r["k"]] = r["name"] or _molecule_name(r["doc"]) or r["k"].split("-")[1][:8]
    return {"nodes": [{"key": k, "name": names.get(k, k)} for k in node_keys], "edges": edges}


def _molecule_name(doc: str | None) -> str | None:
    """A SmallMoleculeComponent's name: gufe keeps it in the RDKit ``ofe-name`` property."""
    if not doc:
        return None
    try:
        return json.loads(doc).get("molprops", {}).get("ofe-name")
    except (ValueError, AttributeError):
        return None


def edge_statuses(store: StoreBase, network: str) -> dict[str, list[str]]:
    """``{transformation: [task status, ...]}`` for every transformation of the network."""
    return {r["tf"]: r["statuses"] for r in store._read(_EDGE_STATUS, n=network)}


def services(store: StoreBase) -> list[dict[str, Any]]:
    """Compute services with their running tasks (key, transformation name, since) and counts of
    results they pushed (ok and failed)."""
    rows = store._read(
        "MATCH (cs:ComputeServiceRegistration) "
        "OPTIONAL MATCH (cs)-[c:CLAIMS]->(t:Task {status: 'running'}) "
        "OPTIONAL MATCH (t)-[:PERFORMS]->(tf) "
        "WITH cs, collect(CASE WHEN t IS NULL THEN null ELSE {task: t._scoped_key, since: c.claimed, "
        "  transformation: tf._scoped_key, name: tf.name} END) AS running "
        "RETURN cs.identifier AS identifier, cs.hostname AS hostname, cs.pid AS pid, cs.gpu AS gpu, "
        "cs.registered AS registered, cs.heartbeat AS heartbeat, cs.runtimes AS runtimes, "
        "size(coalesce(cs.failure_times, [])) AS recent_failures, running ORDER BY identifier"
    )
    ids = [r["identifier"] for r in rows]
    done = {
        r["id"]: r
        for r in store._read(
            "UNWIND $ids AS id MATCH (r:ProtocolDAGResultRef {creator: id}) "
            "RETURN id, count(CASE WHEN r.ok THEN 1 END) AS ok, count(CASE WHEN NOT r.ok THEN 1 END) AS failed",
            ids=ids,
        )
    }
    for r in rows:
        r["done"] = int(done.get(r["identifier"], {}).get("ok", 0))
        r["failed"] = int(done.get(r["identifier"], {}).get("failed", 0))
    return rows


def task_detail(store: StoreBase, task: str) -> dict[str, Any] | None:
    """A task with its transformation, claim, and every result reference (oldest first)."""
    rows = store._read(
        "MATCH (t:Task {_scoped_key: $k}) OPTIONAL MATCH (t)-[:PERFORMS]->(tf) "
        "OPTIONAL MATCH (cs:ComputeServiceRegistration)-[c:CLAIMS]->(t) "
        "RETURN t._scoped_key AS key, t.status AS status, t.priority AS priority, t.created_at AS created_at, "
        "t.creator AS creator, t.extends AS extends, t.claimed_by AS claimed_by, t.claimed_at AS claimed_at, "
        "t.protocol AS protocol, tf._scoped_key AS transformation, tf.name AS transformation_name, "
        "c.claimed AS claim_since",
        k=task,
    )
    if not rows:
        return None
    detail = rows[0]
    detail["results"] = store._read(
        "MATCH (:Task {_scoped_key: $k})-[:RESULTS_IN]->(r:ProtocolDAGResultRef) "
        "RETURN r.location AS location, r.size AS size, r.sha256 AS sha256, r.ok AS ok, "
        "r.creator AS creator, r.created_at AS created_at, r.pdr_key AS pdr_key, "
        "coalesce(r.tracebacks, []) AS tracebacks ORDER BY r.created_at",
        k=task,
    )
    detail["networks"] = [
        r["n"]
        for r in store._read(
            "MATCH (:Task {_scoped_key: $k})-[:PERFORMS]->()<-[:DEPENDS_ON {attribute: 'edges'}]-(an) "
            "RETURN DISTINCT an._scoped_key AS n ORDER BY n",
            k=task,
        )
    ]
    return detail


def transformation_tasks(store: StoreBase, transformation: str) -> list[dict[str, Any]]:
    """Tasks of a transformation (oldest first) with status and result counts."""
    return store._read(
        "MATCH (t:Task {transformation: $tf}) OPTIONAL MATCH (t)-[:RESULTS_IN]->(r) "
        "RETURN t._scoped_key AS key, t.status AS status, t.created_at AS created_at, "
        "t.claimed_by AS claimed_by, count(r) AS attempts ORDER BY created_at, key",
        tf=transformation,
    )


def transformation_protocol(store: StoreBase, transformations: list[str]) -> dict[str, list]:
    """``{transformation: small keyed chain [protocol entry, transformation entry]}``: enough for
    a runtime's ``gather`` (it reads the root's key and its protocol), without the systems."""
    out: dict[str, list] = {}
    for r in store._read(
        "UNWIND $keys AS k MATCH (tf:GufeTokenizable {_scoped_key: k})"
        "-[:DEPENDS_ON {attribute: 'protocol'}]->(p) "
        "RETURN k, tf._gufe_key AS tk, tf._doc AS td, p._gufe_key AS pk, p._doc AS pd",
        keys=transformations,
    ):
        out[r["k"]] = [[r["pk"], json.loads(r["pd"])], [r["tk"], json.loads(r["td"])]]
    return out


def ok_results(store: StoreBase, transformations: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``{transformation: [{location, sha256}, ...]}`` of successful results, oldest first."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in transformations}
    for r in store._read(
        "UNWIND $keys AS k MATCH (:Task {transformation: k})-[:RESULTS_IN]->(r:ProtocolDAGResultRef {ok: true}) "
        "RETURN k, r.location AS location, r.sha256 AS sha256 ORDER BY r.created_at",
        keys=transformations,
    ):
        out[r["k"]].append({"location": r["location"], "sha256": r["sha256"]})
    return out
