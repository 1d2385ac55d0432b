"""Helpers shared by the state-store suites (tests/integration/test_statestore_*.py).

Plain functions, no fixtures (those live in conftest.py): fixture-document loading,
small synthetic keyed chains built with the real key algorithm, network derivation,
graph snapshots for "nothing changed" checks, and result references.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from typing import Any

from alchemiscale_local import keyedchain
from alchemiscale_local.gufekeys import gufe_ref, make_key
from alchemiscale_local.models import ComputeServiceRegistration, ResultRef
from tests.gufe_fixtures import GUFE_FIXTURES, fixture_path  # noqa: F401 (re-exported)

SCOPE = "org-camp-proj"
OTHER_SCOPE = "org-camp-other"

NETWORK_FIXTURES = [
    "gufe-generated_alchemical_network.json",
    "rbfe-tyk2/rbfe-small.json",
    "rbfe-tyk2/rbfe-medium.json",
    "rbfe-tyk2/rbfe-large.json.gz",
]


# -- fixture documents ---------------------------------------------------------------
def fixture_text(name: str) -> str:
    """A document of ../shared/fixtures/gufe as text (gunzipped); skip the test if absent (fail under CI)."""
    path = fixture_path(name)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def entry_set(chain: Any) -> set[tuple[str, str]]:
    """A chain's entries as {(key, json.dumps(dict))}: order of the dict keys matters."""
    if isinstance(chain, (str, bytes)):
        chain = json.loads(chain)
    return {(k, json.dumps(d)) for k, d in chain}


def assert_dependencies_first(chain: list) -> None:
    """Every reference of every entry names an earlier entry; the root is last."""
    seen: set[str] = set()
    for key, d in chain:
        for _path, ref in keyedchain.references(d):
            assert ref in seen, f"{key} references {ref} before it appears"
        seen.add(key)


# -- synthetic chains ----------------------------------------------------------------
def _entry(qualname: str, module: str, fields: dict[str, Any]) -> tuple[str, dict]:
    d = dict(fields)
    d["__qualname__"] = qualname
    d["__module__"] = module
    d[":version:"] = 1
    return make_key(d), d


def toy_chain(
    n_transformations: int,
    *,
    name: str = "toy",
    protocols: tuple[str, ...] = ("ToyProtocolA",),
    salt: str = "",
) -> list[list]:
    """A small AlchemicalNetwork keyed chain with valid content keys.

    gufe's own classes (modules ``gufe.*``), so the store verifies their keys; the
    protocols are made-up classes (``tests.toyprotocols``), whose keys it takes as given.

    Transformation i goes between chemical systems i and i+1 and uses protocol
    ``protocols[i % len(protocols)]``. Two calls with the same ``salt`` and size produce
    the same transformations (so networks built from overlapping ranges share them);
    ``name`` only changes the network entry.
    """
    entries: list[tuple[str, dict]] = []
    # a real SolventComponent (gufe's fields and defaults): the salt lives in the system names
    solvent = _entry(
        "SolventComponent",
        "gufe.components.solventcomponent",
        {
            "smiles": "O",
            "positive_ion": "Na+",
            "negative_ion": "Cl-",
            "ion_concentration": "0.15 molar",
            "neutralize": True,
        },
    )
    entries.append(solvent)
    protos = {}
    for q in protocols:
        protos[q] = _entry(q, "tests.toyprotocols", {"settings": {"n": 1, "protocol": q}})
        entries.append(protos[q])
    systems = []
    for i in range(n_transformations + 1):
        cs = _entry(
            "ChemicalSystem",
            "gufe.chemicalsystem",
            {"components": {"solvent": gufe_ref(solvent[0])}, "name": f"cs{salt}_{i}"},
        )
        systems.append(cs)
        entries.append(cs)
    edges = []
    for i in range(n_transformations):
        q = protocols[i % len(protocols)]
        tf = _entry(
            "Transformation",
            "gufe.transformations.transformation",
            {
                "stateA": gufe_ref(systems[i][0]),
                "stateB": gufe_ref(systems[i + 1][0]),
                "protocol": gufe_ref(protos[q][0]),
                "mapping": None,
                "name": f"tf{salt}_{i}",
                "metadata": {},
            },
        )
        edges.append(tf)
        entries.append(tf)
    network = _entry(
        "AlchemicalNetwork",
        "gufe.network",
        {
            "nodes": [gufe_ref(k) for k, _ in sorted(systems)],
            "edges": [gufe_ref(k) for k, _ in sorted(edges)],
            "name": name,
        },
    )
    entries.append(network)
    return [[k, d] for k, d in entries]


def network_of(chain: list, transformation_keys: list[str], name: str) -> list[list]:
    """A new network chain over some transformations of ``chain`` (shared objects keep their keys)."""
    kc = keyedchain.parse_chain(chain)
    keep: set[str] = set()
    systems: set[str] = set()
    for tk in transformation_keys:
        keep.update(k for k, _ in kc.subchain(tk))
        for path, ref in kc.references(tk):
            if path[0] in ("stateA", "stateB", "system"):
                systems.add(ref)
    entries = [[k, d] for k, d in kc.entries if k in keep]
    root = dict(kc.root)
    root["nodes"] = [gufe_ref(k) for k in sorted(systems)]
    root["edges"] = [gufe_ref(k) for k in sorted(transformation_keys)]
    root["name"] = name
    entries.append([make_key(root), root])
    return entries


def keys_of(chain: list, qualnames: tuple[str, ...]) -> list[str]:
    return [k for k, d in chain if d["__qualname__"] in qualnames]


def generated_network(n_transformations: int) -> tuple[str, int]:
    """A network of ``n_transformations`` transformations from the toy runtime's builder,
    as keyed-chain JSON; returns (chain JSON, number of transformations in it)."""
    from alchemiscale_local.runtimes.toy.network import build_toy_network

    text = json.dumps(build_toy_network(n_transformations, name=f"generated {n_transformations}"))
    kc = keyedchain.parse_chain(text)
    return text, len(kc.keys_of("Transformation")) + len(kc.keys_of("NonTransformation"))


# -- graph snapshots -----------------------------------------------------------------
def graph_counts(driver: Any, database: str = "neo4j") -> tuple[int, int]:
    nodes = driver.execute_query("MATCH (n) RETURN count(n) AS c", database_=database).records[0]["c"]
    rels = driver.execute_query("MATCH ()-[r]->() RETURN count(r) AS c", database_=database).records[0]["c"]
    return nodes, rels


def graph_snapshot(driver: Any, database: str = "neo4j") -> dict[str, Any]:
    """Counts plus a digest of every node's labels and properties and every relation.

    Equal snapshots mean the graph is unchanged (for the small graphs of these tests).
    """
    nodes, rels = graph_counts(driver, database)
    node_rows = driver.execute_query(
        "MATCH (n) RETURN labels(n) AS l, properties(n) AS p", database_=database
    ).records
    rel_rows = driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN type(r) AS t, properties(r) AS p, "
        "coalesce(a._scoped_key, a.identifier, a.key, a.location) AS a, "
        "coalesce(b._scoped_key, b.identifier, b.key, b.location) AS b",
        database_=database,
    ).records
    digest = hashlib.sha256()
    for line in sorted(json.dumps([sorted(r["l"]), r["p"]], sort_keys=True, default=str) for r in node_rows):
        digest.update(line.encode())
    for line in sorted(
        json.dumps([r["t"], r["p"], r["a"], r["b"]], sort_keys=True, default=str) for r in rel_rows
    ):
        digest.update(line.encode())
    return {"nodes": nodes, "relations": rels, "digest": digest.hexdigest()}


def count_label(driver: Any, label: str, database: str = "neo4j", **props: Any) -> int:
    where = " AND ".join(f"n.{k} = ${k}" for k in props) or "true"
    return driver.execute_query(
        f"MATCH (n:{label}) WHERE {where} RETURN count(n) AS c", props, database_=database
    ).records[0]["c"]


# -- compute services and results -------------------------------------------------------
def register(store: Any, name: str = "svc") -> str:
    identifier = f"{name}-{uuid.uuid4().hex}"
    return store.register_computeservice(
        ComputeServiceRegistration(identifier=identifier, hostname="testhost", pid=1234, gpu=None)
    )


def result_ref(task: str, ok: bool = True, creator: str | None = None) -> ResultRef:
    token = uuid.uuid4().hex
    return ResultRef(
        location=f"protocoldagresult/org/camp/proj/{task.split('-')[1]}/{'results' if ok else 'failures'}/{token}/obj.json.zst",
        size=123,
        sha256=hashlib.sha256(token.encode()).hexdigest(),
        ok=ok,
        creator=creator,
        pdr_key=f"ProtocolDAGResult-{token}",
    )
