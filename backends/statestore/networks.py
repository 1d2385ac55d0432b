"""AlchemicalNetworks and the gufe objects they are made of.

Each object of a submitted keyed chain becomes one node (labels ``GufeTokenizable`` +
its qualname), deduplicated by ScopedKey. The keyed dict is kept verbatim as a JSON
string (``_doc``) so a fetched chain equals the submitted one byte for byte, key order
included; ``DEPENDS_ON`` relations record where each reference sits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from neo4j import ManagedTransaction
from neo4j.exceptions import ClientError

from alchemiscale_local import keyedchain
from alchemiscale_local.gufekeys import check_key
from alchemiscale_local.models import NetworkState, Scope, ScopedKey

from .base import StoreBase, batched, key_of, key_strs, parse_scope, scope_filter, scope_params
from .errors import Conflict, InvalidInput, NotFound

TRANSFORMATION_QUALNAMES = ("Transformation", "NonTransformation")
DEFAULT_HUB_WEIGHT = 0.5

_MERGE_NODES = """
UNWIND $rows AS r
MERGE (n:GufeTokenizable {_scoped_key: r.sk})
ON CREATE SET n += r.props, n._fresh = true
WITH n, r WHERE n._fresh
REMOVE n._fresh
SET n:$(r.qualname)
RETURN n._scoped_key AS sk
"""

# Only the transaction that created a node adds its relations: an existing node is
# content-addressed, so it already has exactly these.
_CREATE_RELS = """
UNWIND $rows AS r
MATCH (a:GufeTokenizable {_scoped_key: r.src})
MATCH (b:GufeTokenizable {_scoped_key: r.dst})
CREATE (a)-[d:DEPENDS_ON]->(b)
SET d = r.props
"""

_ATTACH_HUB = """
MATCH (an:GufeTokenizable {_scoped_key: $network})
SET an._state = $state
MERGE (th:TaskHub {_scoped_key: $hub})
ON CREATE SET th.network = $network, th.weight = $weight,
              th._org = an._org, th._campaign = an._campaign, th._project = an._project
MERGE (th)-[:PERFORMS]->(an)
"""

# Pruning var-length expansion (DISTINCT end nodes) visits each node once, so a shared
# protein under 2,000 chemical systems is not walked 2,000 times.
_SUBGRAPH = """
MATCH (root:GufeTokenizable {_scoped_key: $sk})-[:DEPENDS_ON*0..]->(n)
WITH DISTINCT n
RETURN n._gufe_key AS key, n._doc AS doc,
       [(n)-[:DEPENDS_ON]->(c) | c._gufe_key] AS deps
"""


def hub_key(network_sk: ScopedKey) -> str:
    token = hashlib.md5(str(network_sk).encode(), usedforsecurity=False).hexdigest()
    return f"TaskHub-{token}-{network_sk.org}-{network_sk.campaign}-{network_sk.project}"


def _check_name_regex(name: str | None) -> None:
    if name is None:
        return
    if not isinstance(name, str):
        raise InvalidInput("name must be a regular expression (a string)")
    try:
        re.compile(name)
    except re.error as exc:
        raise InvalidInput(f"name is not a valid regular expression: {exc}") from None


def doc_sha(doc: Any) -> str:
    """Digest of a keyed dict's content (member order does not matter)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


_CHANGED_DOCS = """
UNWIND $rows AS r
MATCH (n:GufeTokenizable {_scoped_key: r.sk})
WHERE n._doc_sha IS NULL OR n._doc_sha <> r.sha
RETURN r.sk AS sk, n._doc AS doc, r.sha AS sha
"""


def _refuse_changed_documents(
    tx: ManagedTransaction, nodes: list[dict[str, Any]], unverified: set[str]
) -> None:
    """Conflict when an existing object's stored document differs from the submitted one.

    Against key squatting: without this, whoever first stored a key with content that does
    not hash to it would decide what every later submission with that key points at. A
    difference is allowed only when both documents verify against the key (gufe would
    treat them as the same object).
    """
    rows = [{"sk": n["sk"], "sha": n["props"]["_doc_sha"], "key": n["key"]} for n in nodes]
    for chunk in batched(rows):
        for row in tx.run(_CHANGED_DOCS, rows=list(chunk)).data():
            stored = json.loads(row["doc"])
            if doc_sha(stored) == row["sha"]:
                continue  # same content, other member order (or stored before digests)
            key = row["sk"].rsplit("-", 3)[0]
            both_verified = key not in unverified and check_key(key, stored).status == "verified"
            if not both_verified:
                raise Conflict(
                    f"{row['sk']} is already stored with a different document; its key cannot be "
                    "verified from its content, so it cannot be given new content (submit the stored "
                    "document, or give the changed object its own key)"
                )


def _relation_props(path: tuple[Any, ...]) -> dict[str, Any]:
    props: dict[str, Any] = {"attribute": str(path[0]), "path": json.dumps(list(path))}
    if len(path) > 1:
        if isinstance(path[1], int):
            props["index"] = path[1]
        else:
            props["key"] = str(path[1])
    return props


def _topological(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kahn order, dependencies first, ties broken by key: deterministic across fetches."""
    import heapq

    by_key = {r["key"]: r for r in rows}
    waiting = {k: {d for d in r["deps"] if d in by_key} for k, r in by_key.items()}
    dependents: dict[str, list[str]] = {k: [] for k in by_key}
    for k, deps in waiting.items():
        for d in deps:
            dependents[d].append(k)
    ready = [k for k, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    out = []
    while ready:
        k = heapq.heappop(ready)
        out.append(by_key[k])
        for parent in dependents[k]:
            waiting[parent].discard(k)
            if not waiting[parent]:
                heapq.heappush(ready, parent)
    if len(out) != len(by_key):
        raise InvalidInput("stored graph has a dependency cycle")
    return out


class NetworksMixin(StoreBase):
    """Submit, fetch and query networks, transformations and chemical systems."""

    # -- submission -------------------------------------------------------------
    def assemble_network(
        self,
        chain: Any,
        scope: str | Scope,
        *,
        state: str = NetworkState.active.value,
        verify_keys: bool = True,
    ) -> tuple[ScopedKey, dict[str, int]]:
        """Store a network keyed chain in ``scope``; return its ScopedKey and counts.

        One transaction. Objects already in the scope are reused (deduplication by
        ScopedKey); re-submitting a network keeps its hub weight and sets its state.
        """
        scope = parse_scope(scope, specific=True)
        try:
            state = NetworkState(state).value
        except ValueError:
            raise InvalidInput(f"network state must be one of {[s.value for s in NetworkState]}") from None
        try:
            kc = keyedchain.parse_chain(chain)
            # Keys that cannot be recomputed from their content (classes outside gufe's table,
            # random keys) are taken as given, so their stored documents must never change.
            unverified = (
                {issue.key for issue in keyedchain.verify_keys(kc).issues}
                if verify_keys
                else {key for key, _ in kc.entries}
            )
        except keyedchain.KeyedChainError as exc:
            raise InvalidInput(str(exc)) from None
        root_qualname = kc.root["__qualname__"]
        if root_qualname != "AlchemicalNetwork":
            raise InvalidInput(
                f"the chain's root (last entry) is a {root_qualname}, not an AlchemicalNetwork"
            )
        nodes, rels = self._chain_rows(kc, scope)
        network_sk = ScopedKey.from_str(f"{kc.root_key}-{scope}")

        def work(tx: ManagedTransaction) -> dict[str, int]:
            created: set[str] = set()
            for chunk in batched(nodes):
                created.update(r["sk"] for r in tx.run(_MERGE_NODES, rows=list(chunk)).data())
            _refuse_changed_documents(tx, [n for n in nodes if n["sk"] not in created], unverified)
            new_rels = [r for r in rels if r["src"] in created]
            for chunk in batched(new_rels):
                tx.run(_CREATE_RELS, rows=list(chunk)).consume()
            tx.run(
                _ATTACH_HUB,
                network=str(network_sk),
                state=state,
                hub=hub_key(network_sk),
                weight=DEFAULT_HUB_WEIGHT,
            ).consume()
            return {"objects": len(nodes), "created": len(created), "relations": len(new_rels)}

        return network_sk, self._write_tx(work)

    @staticmethod
    def _chain_rows(kc: keyedchain.KeyedChain, scope: Scope) -> tuple[list[dict], list[dict]]:
        suffix = f"-{scope}"
        nodes: list[dict[str, Any]] = []
        rels: list[dict[str, Any]] = []
        for key, doc in kc.entries:
            sk = key + suffix
            props: dict[str, Any] = {
                "_scoped_key": sk,
                "_gufe_key": key,
                "_qualname": doc["__qualname__"],
                "_module": doc["__module__"],
                "_org": scope.org,
                "_campaign": scope.campaign,
                "_project": scope.project,
                "_doc": json.dumps(doc),
                "_doc_sha": doc_sha(doc),
            }
            if isinstance(doc.get("name"), str):
                props["name"] = doc["name"]
            nodes.append({"sk": sk, "key": key, "qualname": doc["__qualname__"], "props": props})
            for path, ref in kc.references(key):
                rels.append({"src": sk, "dst": ref + suffix, "props": _relation_props(path)})
        return nodes, rels

    # -- retrieval --------------------------------------------------------------
    def get_keyed_chain_json(self, sk: ScopedKey) -> str:
        """The keyed chain of any stored gufe object, as JSON text (dependencies first)."""
        sk = key_of(sk)
        rows = self._read(_SUBGRAPH, sk=str(sk))
        if not rows:
            raise NotFound(f"no object {sk}")
        ordered = _topological(rows)
        # The stored docs are already JSON text: splice them, never re-encode.
        return "[" + ", ".join(f"[{json.dumps(r['key'])}, {r['doc']}]" for r in ordered) + "]"

    def get_keyed_chain(self, sk: ScopedKey) -> list[list[Any]]:
        return json.loads(self.get_keyed_chain_json(sk))

    # -- state and weights --------------------------------------------------------
    def set_network_state(self, networks: Sequence[ScopedKey], states: list[str]) -> list[str | None]:
        """Set each network's state mark; None for networks not found."""
        if len(networks) != len(states):
            raise InvalidInput("networks and states must have the same length")
        keys = key_strs(networks, "AlchemicalNetwork")
        rows = []
        for n, s in zip(keys, states, strict=False):
            try:
                rows.append({"sk": n, "state": NetworkState(s).value})
            except ValueError:
                raise InvalidInput(
                    f"network state {s!r} must be one of {[x.value for x in NetworkState]}"
                ) from None
        found = {
            r["sk"]
            for r in self._write(
                "UNWIND $rows AS r MATCH (an:AlchemicalNetwork {_scoped_key: r.sk}) "
                "SET an._state = r.state RETURN r.sk AS sk",
                rows=rows,
            )
        }
        return [n if n in found else None for n in keys]

    def get_network_state(self, networks: Sequence[ScopedKey]) -> list[str | None]:
        keys = key_strs(networks, "AlchemicalNetwork")
        got = {
            r["sk"]: r["state"]
            for r in self._read(
                "UNWIND $keys AS k MATCH (an:AlchemicalNetwork {_scoped_key: k}) "
                "RETURN k AS sk, an._state AS state",
                keys=keys,
            )
        }
        return [got.get(n) for n in keys]

    def set_network_weight(self, networks: Sequence[ScopedKey], weights: list[float]) -> None:
        """Set TaskHub weights (0..1); NotFound if any network has no hub."""
        if len(networks) != len(weights):
            raise InvalidInput("networks and weights must have the same length")
        for w in weights:
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w <= 1:
                raise InvalidInput(f"weight {w!r} must be a number between 0 and 1")
        sks = [key_of(n, "AlchemicalNetwork") for n in networks]
        rows = [{"hub": hub_key(sk), "w": float(w)} for sk, w in zip(sks, weights, strict=False)]
        self._require_nodes("TaskHub", [str(r["hub"]) for r in rows], what="network hub")
        self._write(
            "UNWIND $rows AS r MATCH (th:TaskHub {_scoped_key: r.hub}) SET th.weight = r.w", rows=rows
        )

    def get_network_weight(self, networks: Sequence[ScopedKey]) -> list[float | None]:
        sks = [key_of(n, "AlchemicalNetwork") for n in networks]
        hubs = [hub_key(sk) for sk in sks]
        got = {
            r["hub"]: r["w"]
            for r in self._read(
                "UNWIND $hubs AS h MATCH (th:TaskHub {_scoped_key: h}) RETURN h AS hub, th.weight AS w",
                hubs=hubs,
            )
        }
        return [got.get(h) for h in hubs]

    # -- queries ----------------------------------------------------------------
    def query_networks(
        self,
        *,
        name: str | None = None,
        scope: str | Scope = "*-*-*",
        state: str | None = NetworkState.active.value,
    ) -> list[str]:
        """Networks in ``scope`` whose name matches the regex ``name``, in ``state`` (None: any)."""
        scope = parse_scope(scope)
        _check_name_regex(name)
        if state is not None:
            try:
                state = NetworkState(state).value
            except ValueError:
                raise InvalidInput(f"state must be one of {[s.value for s in NetworkState]}") from None
        rows = self._read_by_name(
            "MATCH (an:AlchemicalNetwork) WHERE "
            + scope_filter("an")
            + " AND ($name IS NULL OR an.name =~ $name) AND ($state IS NULL OR an._state = $state)"
            " RETURN an._scoped_key AS sk ORDER BY sk",
            name=name,
            state=state,
            **scope_params(scope),
        )
        return [r["sk"] for r in rows]

    def _read_by_name(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """``_read`` for queries matching ``=~ $name``: Neo4j's (Java) regex syntax differs
        from Python's in places, so a pattern Python accepts can still be refused there."""
        try:
            return self._read(query, **params)
        except ClientError as exc:
            if "Invalid Regex" in (exc.message or ""):
                raise InvalidInput(f"name is not a valid regular expression: {exc.message}") from None
            raise

    def _query_by_qualname(
        self, qualnames: tuple[str, ...], scope: str | Scope, name: str | None
    ) -> list[str]:
        scope = parse_scope(scope)
        _check_name_regex(name)
        rows = self._read_by_name(
            "MATCH (n:GufeTokenizable) WHERE n._qualname IN $qualnames AND "
            + scope_filter("n")
            + " AND ($name IS NULL OR n.name =~ $name) RETURN n._scoped_key AS sk ORDER BY sk",
            qualnames=list(qualnames),
            name=name,
            **scope_params(scope),
        )
        return [r["sk"] for r in rows]

    def query_transformations(self, *, name: str | None = None, scope: str | Scope = "*-*-*") -> list[str]:
        return self._query_by_qualname(TRANSFORMATION_QUALNAMES, scope, name)

    def query_chemicalsystems(self, *, name: str | None = None, scope: str | Scope = "*-*-*") -> list[str]:
        return self._query_by_qualname(("ChemicalSystem",), scope, name)

    def _related(self, sk: ScopedKey, qualname: str | tuple[str, ...], query: str) -> list[str]:
        parsed = key_of(sk, qualname)
        rows = self._read(
            "MATCH (x:GufeTokenizable {_scoped_key: $sk}) "
            "OPTIONAL MATCH " + query + " RETURN x._scoped_key AS x, collect(DISTINCT y._scoped_key) AS ys",
            sk=str(parsed),
        )
        if not rows:
            raise NotFound(f"no {parsed.qualname} {parsed}")
        return sorted(rows[0]["ys"])

    def get_network_transformations(self, network: ScopedKey) -> list[str]:
        return self._related(network, "AlchemicalNetwork", "(x)-[:DEPENDS_ON {attribute: 'edges'}]->(y)")

    def get_network_chemicalsystems(self, network: ScopedKey) -> list[str]:
        return self._related(network, "AlchemicalNetwork", "(x)-[:DEPENDS_ON {attribute: 'nodes'}]->(y)")

    def get_transformation_networks(self, transformation: ScopedKey) -> list[str]:
        return self._related(
            transformation, TRANSFORMATION_QUALNAMES, "(x)<-[:DEPENDS_ON {attribute: 'edges'}]-(y)"
        )

    def get_transformation_chemicalsystems(self, transformation: ScopedKey) -> list[str]:
        return self._related(
            transformation,
            TRANSFORMATION_QUALNAMES,
            "(x)-[d:DEPENDS_ON]->(y:ChemicalSystem) WHERE d.attribute IN ['stateA', 'stateB', 'system']",
        )

    def get_chemicalsystem_transformations(self, chemicalsystem: ScopedKey) -> list[str]:
        return self._related(
            chemicalsystem,
            "ChemicalSystem",
            "(x)<-[d:DEPENDS_ON]-(y) WHERE d.attribute IN ['stateA', 'stateB', 'system'] "
            "AND y._qualname IN ['Transformation', 'NonTransformation']",
        )

    def get_chemicalsystem_networks(self, chemicalsystem: ScopedKey) -> list[str]:
        return self._related(chemicalsystem, "ChemicalSystem", "(x)<-[:DEPENDS_ON {attribute: 'nodes'}]-(y)")

    def object_exists(self, sk: ScopedKey) -> bool:
        parsed = key_of(sk)
        return bool(
            self._read("MATCH (n:GufeTokenizable {_scoped_key: $sk}) RETURN 1 AS one", sk=str(parsed))
        )

    def transformation_protocol(self, transformation: ScopedKey) -> tuple[str, str]:
        """(qualname, module) of a transformation's protocol."""
        parsed = key_of(transformation, TRANSFORMATION_QUALNAMES)
        rows = self._read(
            "MATCH (:GufeTokenizable {_scoped_key: $sk})-[:DEPENDS_ON {attribute: 'protocol'}]->(p) "
            "RETURN p._qualname AS q, p._module AS m",
            sk=str(parsed),
        )
        if not rows:
            raise NotFound(f"no transformation {parsed}")
        return rows[0]["q"], rows[0]["m"]
