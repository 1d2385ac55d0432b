"""Raw baselines: the same graph work written directly against the neo4j driver.

Nothing here goes through the API or the state-store classes; the Cypher is our own,
the minimum that produces (or reads) the same nodes, properties and relations.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from neo4j import Driver, ManagedTransaction

from alchemiscale_local.keyedchain import references

BATCH_ROWS = 5000
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _batched(rows: Sequence[Any], size: int = BATCH_ROWS) -> Iterator[list[Any]]:
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


def chain_rows(chain: list, scope: str) -> tuple[dict[str, list[dict]], list[dict]]:
    """Node property maps grouped by qualname, and relation rows, for ``chain`` in ``scope``."""
    org, campaign, project = scope.split("-")
    nodes: dict[str, list[dict]] = {}
    rels: list[dict] = []
    for key, doc in chain:
        sk = f"{key}-{scope}"
        props = {
            "_scoped_key": sk,
            "_gufe_key": key,
            "_qualname": doc["__qualname__"],
            "_module": doc["__module__"],
            "_org": org,
            "_campaign": campaign,
            "_project": project,
            "_doc": json.dumps(doc),
        }
        if isinstance(doc.get("name"), str):
            props["name"] = doc["name"]
        nodes.setdefault(doc["__qualname__"], []).append(props)
        for path, ref in references(doc):  # the same walk the store uses; no validation
            rel = {"attribute": str(path[0]), "path": json.dumps(list(path))}
            if len(path) > 1 and isinstance(path[1], int):
                rel["index"] = path[1]
            elif len(path) > 1:
                rel["key"] = str(path[1])
            rels.append({"src": sk, "dst": f"{ref}-{scope}", "props": rel})
    return nodes, rels


def write_network(driver: Driver, database: str, chain: list, scope: str) -> dict[str, int]:
    """CREATE every node (labels GufeTokenizable + qualname), then every DEPENDS_ON, then the hub.

    One transaction, UNWIND batches of ``BATCH_ROWS``; ``scope`` must be unused.
    """
    nodes, rels = chain_rows(chain, scope)
    network_sk = f"{chain[-1][0]}-{scope}"
    hub = f"TaskHub-{hashlib.md5(network_sk.encode()).hexdigest()}-{scope}"

    def work(tx: ManagedTransaction) -> None:
        for qualname, rows in nodes.items():
            if not _LABEL.match(qualname):
                raise ValueError(f"unexpected qualname {qualname!r}")
            for chunk in _batched(rows):
                tx.run(
                    f"UNWIND $rows AS r CREATE (n:GufeTokenizable:`{qualname}`) SET n = r", rows=chunk
                ).consume()
        for chunk in _batched(rels):
            tx.run(
                "UNWIND $rows AS r MATCH (a:GufeTokenizable {_scoped_key: r.src}) "
                "MATCH (b:GufeTokenizable {_scoped_key: r.dst}) "
                "CREATE (a)-[d:DEPENDS_ON]->(b) SET d = r.props",
                rows=chunk,
            ).consume()
        tx.run(
            "MATCH (an:GufeTokenizable {_scoped_key: $n}) SET an._state = 'active' "
            "CREATE (th:TaskHub {_scoped_key: $hub, network: $n, weight: 0.5, _org: an._org, "
            "_campaign: an._campaign, _project: an._project})-[:PERFORMS]->(an)",
            n=network_sk,
            hub=hub,
        ).consume()

    with driver.session(database=database) as session:
        session.execute_write(work)
    return {"nodes": sum(len(v) for v in nodes.values()), "relations": len(rels)}


SUBGRAPH = """
MATCH (root:GufeTokenizable {_scoped_key: $sk})-[:DEPENDS_ON*0..]->(n)
WITH DISTINCT n
RETURN n._gufe_key AS key, n._doc AS doc
"""


def read_subgraph(driver: Driver, database: str, sk: str, *, parse: bool = True) -> list:
    """Every document under ``sk`` in one query: ``[[key, doc], ...]`` (docs parsed when ``parse``)."""
    records, _, _ = driver.execute_query(SUBGRAPH, sk=sk, database_=database, routing_="r")
    if parse:
        return [[r["key"], json.loads(r["doc"])] for r in records]
    return [[r["key"], r["doc"]] for r in records]


_CLAIM = """
MATCH (th:TaskHub {_scoped_key: $hub})-[:ACTIONS]->(t:Task {status: 'waiting'})
WITH t LIMIT 1
MATCH (cs:ComputeServiceRegistration {identifier: $id})
CREATE (cs)-[:CLAIMS {claimed: $now}]->(t)
SET t.status = 'running', t.claimed_by = $id, t.claimed_at = $now
RETURN t._scoped_key AS k
"""

_COMPLETE = """
MATCH (:ComputeServiceRegistration {identifier: $id})-[c:CLAIMS]->(t:Task {_scoped_key: $k})
CREATE (t)-[:RESULTS_IN]->(:ProtocolDAGResultRef {location: $loc, size: 200, sha256: $sha, ok: true,
        creator: $id, created_at: $now, pdr_key: $pdr, transformation: t.transformation, tracebacks: []})
DELETE c
SET t.status = 'complete', t.claimed_by = null
"""


def claim_complete_loop(
    driver: Driver, database: str, hubs: list[str], limit: int, seed: int = 0
) -> tuple[int, list[float]]:
    """Claim one waiting task and complete it, in ONE transaction, until ``limit`` or no task is left.

    ``hubs`` are TaskHub scoped keys; each round picks a hub with work left at random.
    Returns (tasks done, per-transaction latencies in seconds).
    """
    ident = f"raw-claimer-{uuid.uuid4().hex}"
    driver.execute_query(
        "CREATE (:ComputeServiceRegistration {identifier: $id, registered: $now, "
        "heartbeat: $now, failure_times: []})",
        id=ident,
        now=time.time(),
        database_=database,
    )
    rng = random.Random(seed)
    open_hubs = list(hubs)
    latencies: list[float] = []

    def work(tx: ManagedTransaction, hub: str) -> str | None:
        now = time.time()
        row = tx.run(_CLAIM, hub=hub, id=ident, now=now).single()
        if row is None:
            return None
        pdr = f"ProtocolDAGResult-{uuid.uuid4().hex}"
        tx.run(_COMPLETE, id=ident, k=row["k"], loc=f"raw/{pdr}", sha="0" * 64, now=now, pdr=pdr).consume()
        return row["k"]

    done = 0
    with driver.session(database=database) as session:
        while done < limit and open_hubs:
            hub = rng.choice(open_hubs)
            start = time.perf_counter()
            got = session.execute_write(work, hub)
            if got is None:
                open_hubs.remove(hub)
                continue
            latencies.append(time.perf_counter() - start)
            done += 1
    driver.execute_query(
        "MATCH (cs:ComputeServiceRegistration {identifier: $id}) DETACH DELETE cs",
        id=ident,
        database_=database,
    )
    return done, latencies
