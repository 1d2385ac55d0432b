"""Result references, tracebacks of failures, and task restart patterns."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from neo4j import ManagedTransaction

from alchemiscale_local.models import ResultRef, ScopedKey

from .base import StoreBase, key_of, key_strs
from .errors import Conflict, InvalidInput, NotFound
from .networks import TRANSFORMATION_QUALNAMES, hub_key

MAX_PATTERN_LENGTH = 1000

_RECORD_RESULT = """
MATCH (t:Task {_scoped_key: $task})
CREATE (t)-[:RESULTS_IN]->(r:ProtocolDAGResultRef {location: $loc, size: $size, sha256: $sha,
        ok: $ok, creator: $creator, created_at: $now, pdr_key: $pdr_key,
        transformation: t.transformation, tracebacks: $tracebacks})
WITH t
OPTIONAL MATCH (t)<-[c:CLAIMS]-()
DELETE c
WITH DISTINCT t
SET t.status = CASE WHEN $ok THEN 'complete' ELSE 'error' END, t.claimed_by = null
WITH t WHERE $ok
OPTIONAL MATCH (t)<-[rel:APPLIES]-()
DELETE rel
"""
# ACTIONS of a completed task are kept and filtered out by status where it matters:
# deleting them would write-lock the network's hub node on every completion, making
# completions on one network serialize (and deadlock against each other).


def pattern_key(pattern: str, hub: str) -> str:
    return hashlib.md5(f"{pattern}\x00{hub}".encode(), usedforsecurity=False).hexdigest()


class ResultsMixin(StoreBase):
    """Result references and restart patterns."""

    def set_task_result(
        self,
        task: ScopedKey,
        ref: ResultRef,
        *,
        identifier: str | None = None,
        tracebacks: list[str] | None = None,
        allow_late: bool = False,
    ) -> str:
        """Record a result on a running task and move it to complete or error.

        With ``identifier``, the task must be claimed by that service (Conflict
        otherwise), so a service whose claim expired cannot add a second result.
        With ``allow_late`` too, a result from a service that once claimed the task but lost
        the claim is kept as a result of the task's transformation without changing the
        task (alchemiscale #513), unless the task is complete. Returns the task's status.
        """
        key = str(key_of(task, "Task"))

        def work(tx: ManagedTransaction) -> str:
            row = tx.run(
                "MATCH (t:Task {_scoped_key: $k}) SET t._lock = true WITH t REMOVE t._lock "
                "WITH t OPTIONAL MATCH (cs:ComputeServiceRegistration)-[:CLAIMS]->(t) "
                "RETURN t.status AS s, cs.identifier AS holder, coalesce(t.claimants, []) AS claimants",
                k=key,
            ).single()
            if row is None:
                raise NotFound(f"no task {key}")
            held = row["s"] == "running" and row["holder"] == identifier
            if allow_late and identifier is not None and not held:
                return self._record_late(tx, key, ref, identifier, row, tracebacks)
            if row["s"] != "running":
                raise Conflict(f"task {key} is {row['s']}, not running; result refused")
            if identifier is not None and row["holder"] != identifier:
                raise Conflict(f"task {key} is not claimed by {identifier}; result refused")
            tx.run(
                _RECORD_RESULT,
                task=key,
                loc=ref.location,
                size=ref.size,
                sha=ref.sha256,
                ok=ref.ok,
                creator=ref.creator or identifier,
                now=self._now(),
                pdr_key=ref.pdr_key,
                tracebacks=list(tracebacks or []),
            ).consume()
            return "complete" if ref.ok else "error"

        status = self._write_tx(work)
        if status.startswith("late:"):
            return status[5:]
        if status == "error":
            if identifier is not None:
                self.log_failure_computeservice(identifier)  # type: ignore[attr-defined]
            status = self.resolve_task_restarts([key]).get(key, status)
        return status

    def _record_late(
        self,
        tx: ManagedTransaction,
        key: str,
        ref: ResultRef,
        identifier: str,
        row: Any,
        tracebacks: list[str] | None,
    ) -> str:
        """Keep a result whose claim was lost; the task is left as it is. ``late:<status>``."""
        if row["s"] == "complete":
            raise Conflict(f"task {key} was already completed; the late result of {identifier} is refused")
        if identifier not in row["claimants"]:
            raise Conflict(f"task {key} was never claimed by {identifier}; result refused")
        tx.run(
            # MERGE: the same late result sent again (a retried push) is stored once.
            "MATCH (t:Task {_scoped_key: $task}) "
            "MERGE (r:ProtocolDAGResultRef {location: $loc}) "
            "ON CREATE SET r.size = $size, r.sha256 = $sha, r.ok = $ok, r.creator = $creator, "
            "r.created_at = $now, r.pdr_key = $pdr_key, r.transformation = t.transformation, "
            "r.tracebacks = $tracebacks, r.late = true "
            "MERGE (t)-[:RESULTS_IN]->(r)",
            task=key,
            loc=ref.location,
            size=ref.size,
            sha=ref.sha256,
            ok=ref.ok,
            creator=ref.creator or identifier,
            now=self._now(),
            pdr_key=ref.pdr_key,
            tracebacks=list(tracebacks or []),
        ).consume()
        return f"late:{row['s']}"

    def _refs(self, match: str, key: str, ok: bool | None) -> list[dict[str, Any]]:
        return self._read(
            match + " WHERE $ok IS NULL OR r.ok = $ok "
            "RETURN r.location AS location, r.size AS size, r.sha256 AS sha256, r.ok AS ok, "
            "r.creator AS creator, r.created_at AS created_at, r.pdr_key AS pdr_key, "
            "r.tracebacks AS tracebacks, t._scoped_key AS task ORDER BY r.created_at",
            k=key,
            ok=ok,
        )

    def get_transformation_results(
        self, transformation: ScopedKey, *, ok: bool | None = True
    ) -> list[dict[str, Any]]:
        tf = str(key_of(transformation, TRANSFORMATION_QUALNAMES))
        self._require_nodes("GufeTokenizable", [tf], what="transformation")
        return self._refs("MATCH (t:Task {transformation: $k})-[:RESULTS_IN]->(r)", tf, ok)

    def get_task_results(self, task: ScopedKey, *, ok: bool | None = True) -> list[dict[str, Any]]:
        key = str(key_of(task, "Task"))
        self._require_nodes("Task", [key])
        return self._refs("MATCH (t:Task {_scoped_key: $k})-[:RESULTS_IN]->(r)", key, ok)

    def get_results_refs(
        self, transformations: Sequence[ScopedKey], *, ok: bool | None = True
    ) -> dict[str, list[dict[str, Any]]]:
        """Result references of many transformations in one query: ``{transformation: [ref, ...]}``."""
        keys = key_strs(transformations, TRANSFORMATION_QUALNAMES)
        rows = self._read(
            "UNWIND $keys AS k MATCH (t:Task {transformation: k})-[:RESULTS_IN]->(r) "
            "WHERE $ok IS NULL OR r.ok = $ok "
            "RETURN k, r.location AS location, r.size AS size, r.sha256 AS sha256, r.ok AS ok, "
            "r.creator AS creator, r.created_at AS created_at, r.pdr_key AS pdr_key, "
            "r.tracebacks AS tracebacks, t._scoped_key AS task ORDER BY r.created_at",
            keys=keys,
            ok=ok,
        )
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        for r in rows:
            out[r.pop("k")].append(r)
        return out

    def get_result_refs_at(self, locations: list[str]) -> dict[str, dict[str, Any]]:
        """``{location: {size, sha256}}`` for the locations the store has a reference for."""
        rows = self._read(
            "UNWIND $locs AS l MATCH (r:ProtocolDAGResultRef {location: l}) "
            "RETURN l, r.size AS size, r.sha256 AS sha256",
            locs=list(dict.fromkeys(locations)),
        )
        return {r["l"]: {"size": r["size"], "sha256": r["sha256"]} for r in rows}

    def get_result_ref(self, location: str) -> dict[str, Any]:
        rows = self._read(
            "MATCH (t:Task)-[:RESULTS_IN]->(r:ProtocolDAGResultRef {location: $loc}) "
            "RETURN r.location AS location, r.size AS size, r.sha256 AS sha256, r.ok AS ok, "
            "r.transformation AS transformation, t._scoped_key AS task, t._org AS org, "
            "t._campaign AS campaign, t._project AS project",
            loc=location,
        )
        if not rows:
            raise NotFound(f"no result at {location}")
        return rows[0]

    # -- restart patterns -----------------------------------------------------------------
    def add_task_restart_patterns(self, network: ScopedKey, patterns: list[str], max_retries: int) -> None:
        """Attach patterns to a network's hub and apply them to its actioned tasks."""
        hub = self._hub_for(network)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 1:
            raise InvalidInput("max_retries must be an integer >= 1")
        if isinstance(patterns, str):
            raise InvalidInput("patterns must be a list of strings, not one string")
        for p in patterns:
            self._check_pattern(p)
        rows = [{"key": pattern_key(p, hub), "pattern": p} for p in patterns]
        self._write(
            "MATCH (th:TaskHub {_scoped_key: $hub}) UNWIND $rows AS r "
            "MERGE (p:TaskRestartPattern {key: r.key}) "
            "ON CREATE SET p.pattern = r.pattern, p.taskhub = $hub "
            "SET p.max_retries = $max MERGE (p)-[:ENFORCES]->(th) "
            "WITH p, th MATCH (th)-[:ACTIONS]->(t:Task) "
            "MERGE (p)-[a:APPLIES]->(t) ON CREATE SET a.num_retries = 0",
            hub=hub,
            rows=rows,
            max=max_retries,
        )
        errored = [
            r["k"]
            for r in self._read(
                "MATCH (:TaskHub {_scoped_key: $hub})-[:ACTIONS]->(t:Task {status: 'error'}) RETURN t._scoped_key AS k",
                hub=hub,
            )
        ]
        if errored:
            self.resolve_task_restarts(errored)

    def remove_task_restart_patterns(self, network: ScopedKey, patterns: list[str]) -> None:
        hub = self._hub_for(network)
        self._write(
            "UNWIND $keys AS k MATCH (p:TaskRestartPattern {key: k}) DETACH DELETE p",
            keys=[pattern_key(p, hub) for p in patterns],
        )

    def clear_task_restart_patterns(self, network: ScopedKey) -> None:
        hub = self._hub_for(network)
        self._write("MATCH (p:TaskRestartPattern {taskhub: $hub}) DETACH DELETE p", hub=hub)

    def get_task_restart_patterns(self, network: ScopedKey) -> dict[str, int]:
        hub = self._hub_for(network)
        rows = self._read(
            "MATCH (p:TaskRestartPattern {taskhub: $hub}) RETURN p.pattern AS pattern, p.max_retries AS m",
            hub=hub,
        )
        return {r["pattern"]: r["m"] for r in rows}

    def set_task_restart_patterns_max_retries(
        self, network: ScopedKey, patterns: list[str], max_retries: int
    ) -> None:
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 1:
            raise InvalidInput("max_retries must be an integer >= 1")
        hub = self._hub_for(network)
        self._write(
            "UNWIND $keys AS k MATCH (p:TaskRestartPattern {key: k}) SET p.max_retries = $m",
            keys=[pattern_key(p, hub) for p in patterns],
            m=max_retries,
        )

    def resolve_task_restarts(self, tasks: Sequence[str]) -> dict[str, str]:
        """Send errored tasks back to waiting where a pattern matches their latest tracebacks.

        Per (task, hub with patterns): a matching pattern with allowance left counts a
        retry; no match, or an allowance used up, cancels the task from that hub
        (alchemiscale's rule). A task still applied to some hub becomes waiting.
        Returns the new status of each task that was considered. ``tasks``: key strings read
        from the graph (its callers are the store's own result and pattern paths).
        """
        rows = self._read(
            "UNWIND $keys AS k MATCH (t:Task {_scoped_key: k, status: 'error'}) "
            "MATCH (p:TaskRestartPattern)-[a:APPLIES]->(t) "
            "MATCH (p)-[:ENFORCES]->(th:TaskHub)-[:ACTIONS]->(t) "
            "OPTIONAL MATCH (t)-[:RESULTS_IN]->(r:ProtocolDAGResultRef {ok: false}) "
            "WITH t, p, a, th, r ORDER BY r.created_at DESC "
            "WITH t, p, a, th, collect(r.tracebacks)[0] AS tbs "
            "RETURN t._scoped_key AS task, th._scoped_key AS hub, p.key AS pkey, p.pattern AS pattern, "
            "p.max_retries AS max, a.num_retries AS n, coalesce(tbs, []) AS tracebacks",
            keys=list(tasks),
        )
        by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            by_pair.setdefault((r["task"], r["hub"]), []).append(r)
        bumps: list[dict[str, Any]] = []
        cancels: list[dict[str, str]] = []
        restarted: set[str] = set()
        for (task, hub), pats in by_pair.items():
            keep = False
            for r in pats:
                if any(re.search(r["pattern"], tb) for tb in r["tracebacks"]):
                    if r["n"] + 1 > r["max"]:
                        keep = False
                        break
                    bumps.append({"task": task, "pkey": r["pkey"]})
                    keep = True
            if keep:
                restarted.add(task)
            else:
                cancels.append({"task": task, "hub": hub})
        if bumps:
            self._write(
                "UNWIND $rows AS r MATCH (:TaskRestartPattern {key: r.pkey})-[a:APPLIES]->(:Task {_scoped_key: r.task}) "
                "SET a.num_retries = a.num_retries + 1",
                rows=bumps,
            )
        if cancels:
            self._write(
                "UNWIND $rows AS r MATCH (th:TaskHub {_scoped_key: r.hub})-[a:ACTIONS]->(t:Task {_scoped_key: r.task}) "
                "OPTIONAL MATCH (th)<-[:ENFORCES]-(:TaskRestartPattern)-[ap:APPLIES]->(t) DELETE a, ap",
                rows=cancels,
            )
        # A task cancelled from one hub may still be restarted by another's pattern.
        if restarted:
            self._write(
                "UNWIND $keys AS k MATCH (t:Task {_scoped_key: k, status: 'error'}) SET t.status = 'waiting'",
                keys=sorted(restarted),
            )
        considered = {task for task, _ in by_pair}
        return {t: ("waiting" if t in restarted else "error") for t in considered}

    def _hub_for(self, network: ScopedKey) -> str:
        hub = hub_key(key_of(network, "AlchemicalNetwork"))
        self._require_nodes("TaskHub", [hub], what="network")
        return hub

    @staticmethod
    def _check_pattern(pattern: str) -> None:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_LENGTH:
            raise InvalidInput(
                f"a restart pattern must be a non-empty string of at most {MAX_PATTERN_LENGTH} characters"
            )
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidInput(
                f"restart pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from None
