"""Tasks: creation, status transitions, priorities, actioning on task hubs, status counts."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from neo4j import ManagedTransaction

from alchemiscale_local.models import NetworkState, ScopedKey, TaskStatus

from .base import StoreBase, key_of, key_strs, parse_scope, scope_filter, scope_params
from .errors import InvalidInput, InvalidTransition, NotFound
from .networks import TRANSFORMATION_QUALNAMES, hub_key

DEFAULT_PRIORITY = 10
MAX_PRIORITY = 2**63 - 1  # Neo4j integers are 64-bit
DEFAULT_ACTION_WEIGHT = 0.5

# Statuses a user may ask for, and the statuses each may be reached from.
USER_TRANSITIONS: dict[str, set[str]] = {
    TaskStatus.waiting.value: {"waiting", "running", "error"},
    TaskStatus.invalid.value: {"waiting", "running", "complete", "error", "invalid"},
    TaskStatus.deleted.value: {"waiting", "running", "complete", "error", "deleted"},
}
ACTIONABLE = ["waiting", "running", "error"]

_CREATE_TASKS = """
UNWIND $rows AS r
MATCH (tf:GufeTokenizable {_scoped_key: r.tf})
CREATE (t:Task {_scoped_key: r.sk, _gufe_key: r.key, _org: tf._org, _campaign: tf._campaign,
                _project: tf._project, status: 'waiting', priority: $priority,
                created_at: $now, creator: $creator, extends: r.extends,
                transformation: r.tf, protocol: r.protocol, protocol_module: r.module})
CREATE (t)-[:PERFORMS]->(tf)
WITH t, r WHERE r.extends IS NOT NULL
MATCH (e:Task {_scoped_key: r.extends})
CREATE (t)-[:EXTENDS]->(e)
"""

# Invalid and deleted reach every task that extends the target, however deep.
_TERMINATE = """
UNWIND $keys AS k
MATCH (t:Task {_scoped_key: k})
OPTIONAL MATCH (x:Task)-[:EXTENDS*]->(t)
WITH collect(t) + collect(x) AS ts
UNWIND ts AS task
WITH DISTINCT task WHERE task.status <> $blocked
OPTIONAL MATCH (task)<-[rel:ACTIONS|APPLIES|CLAIMS]-()
DELETE rel
SET task.status = $status, task.claimed_by = null
"""


class TasksMixin(StoreBase):
    """Task creation, transitions, priorities, action/cancel, status summaries."""

    # -- creation -----------------------------------------------------------------
    def create_tasks(
        self,
        transformations: Sequence[ScopedKey],
        extends: Sequence[ScopedKey | None] | None = None,
        *,
        creator: str | None = None,
    ) -> list[str]:
        """One new waiting task per entry (repeat a transformation for several)."""
        if not transformations:
            return []
        extends = list(extends) if extends is not None else [None] * len(transformations)
        if len(extends) != len(transformations):
            raise InvalidInput("extends must have the same length as transformations")
        tfs = [key_of(t, TRANSFORMATION_QUALNAMES) for t in transformations]
        exts = [key_of(e, "Task") if e is not None else None for e in extends]
        info = self._transformation_info([str(t) for t in tfs])
        if any(e is not None for e in exts):
            self._check_extends(tfs, exts)
        rows = []
        for tf, ext in zip(tfs, exts, strict=False):
            key = f"Task-{uuid.uuid4().hex}"
            q, m = info[str(tf)]
            rows.append(
                {
                    "tf": str(tf),
                    "key": key,
                    "sk": f"{key}-{tf.scope}",
                    "extends": str(ext) if ext is not None else None,
                    "protocol": q,
                    "module": m,
                }
            )
        self._write(_CREATE_TASKS, rows=rows, priority=DEFAULT_PRIORITY, now=self._now(), creator=creator)
        return [str(r["sk"]) for r in rows]

    def _transformation_info(self, tfs: list[str]) -> dict[str, tuple[str, str]]:
        rows = self._read(
            "UNWIND $keys AS k MATCH (tf:GufeTokenizable {_scoped_key: k}) "
            "WHERE tf._qualname IN $qualnames "
            "OPTIONAL MATCH (tf)-[:DEPENDS_ON {attribute: 'protocol'}]->(p) "
            "RETURN k, p._qualname AS q, p._module AS m",
            keys=list(dict.fromkeys(tfs)),
            qualnames=list(TRANSFORMATION_QUALNAMES),
        )
        found = {r["k"]: (r["q"] or "", r["m"] or "") for r in rows}
        for t in tfs:
            if t not in found:
                raise NotFound(f"no transformation {t}")
        return found

    def _check_extends(self, tfs: list[ScopedKey], exts: list[ScopedKey | None]) -> None:
        keys = [str(e) for e in exts if e is not None]
        rows = {
            r["k"]: r
            for r in self._read(
                "UNWIND $keys AS k MATCH (t:Task {_scoped_key: k}) "
                "RETURN k, t.transformation AS tf, t.status AS status",
                keys=keys,
            )
        }
        for tf, ext in zip(tfs, exts, strict=False):
            if ext is None:
                continue
            row = rows.get(str(ext))
            if row is None:
                raise NotFound(f"no task {ext} to extend")
            if row["tf"] != str(tf):
                raise InvalidInput(
                    f"task {ext} performs another transformation; it cannot be extended by {tf}"
                )
            if row["status"] in ("invalid", "deleted"):
                raise InvalidTransition(f"task {ext} is {row['status']} and cannot be extended")

    # -- status -------------------------------------------------------------------
    def _task_values(self, tasks: Sequence[ScopedKey], prop: str) -> list[Any]:
        """One property of each task, in input order; None for unknown tasks."""
        if prop not in ("status", "priority"):  # a constant in the query text, never user data
            raise ValueError(f"unsupported task property {prop!r}")
        keys = key_strs(tasks, "Task")
        got = {
            r["k"]: r["v"]
            for r in self._read(
                f"UNWIND $keys AS k MATCH (t:Task {{_scoped_key: k}}) RETURN k, t.{prop} AS v", keys=keys
            )
        }
        return [got.get(k) for k in keys]

    def get_task_status(self, tasks: Sequence[ScopedKey]) -> list[str | None]:
        return self._task_values(tasks, "status")

    def set_task_status(self, tasks: Sequence[ScopedKey], status: str) -> list[str]:
        """User transition to waiting, invalid or deleted; all-or-nothing.

        NotFound for an unknown task, InvalidTransition for a transition the state
        machine forbids; in either case nothing changes.
        """
        if status not in USER_TRANSITIONS:
            raise InvalidInput(f"a user may set tasks to {sorted(USER_TRANSITIONS)}, not {status!r}")
        keys = key_strs(tasks, "Task")
        allowed = USER_TRANSITIONS[status]

        def work(tx: ManagedTransaction) -> list[str]:
            # Lock first, then read: the check and the change see the same state.
            current = {
                r["k"]: r["s"]
                for r in tx.run(
                    "UNWIND $keys AS k MATCH (t:Task {_scoped_key: k}) SET t._lock = true "
                    "WITH k, t REMOVE t._lock RETURN k, t.status AS s",
                    keys=keys,
                ).data()
            }
            for k in keys:
                if k not in current:
                    raise NotFound(f"no task {k}")
                if current[k] not in allowed:
                    raise InvalidTransition(f"task {k} is {current[k]}; it cannot become {status}")
            if status == TaskStatus.waiting.value:
                tx.run(
                    "UNWIND $keys AS k MATCH (t:Task {_scoped_key: k}) "
                    "OPTIONAL MATCH (t)<-[c:CLAIMS]-() DELETE c SET t.status = 'waiting', t.claimed_by = null",
                    keys=keys,
                ).consume()
            else:
                blocked = "deleted" if status == "invalid" else "invalid"
                tx.run(_TERMINATE, keys=keys, status=status, blocked=blocked).consume()
            return keys

        return self._write_tx(work)

    # -- priority -------------------------------------------------------------------
    def set_task_priority(self, tasks: Sequence[ScopedKey], priority: int) -> list[str | None]:
        if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= MAX_PRIORITY:
            raise InvalidInput(f"priority must be an integer from 1 to {MAX_PRIORITY}, not {priority!r}")
        keys = key_strs(tasks, "Task")
        done = {
            r["k"]
            for r in self._write(
                "UNWIND $keys AS k MATCH (t:Task {_scoped_key: k}) SET t.priority = $p RETURN k",
                keys=keys,
                p=priority,
            )
        }
        return [k if k in done else None for k in keys]

    def get_task_priority(self, tasks: Sequence[ScopedKey]) -> list[int | None]:
        return self._task_values(tasks, "priority")

    # -- actioning ------------------------------------------------------------------
    def action_tasks(
        self, tasks: Sequence[ScopedKey], network: ScopedKey, weight: float | list[float] | None = None
    ) -> list[str | None]:
        """Queue tasks on a network's hub; None for tasks not actionable there.

        A task is actionable when it is waiting, running or error and performs a
        transformation of the network. Actioning again updates the weight.
        """
        net = key_of(network, "AlchemicalNetwork")
        keys = key_strs(tasks, "Task")
        weights = (
            weight
            if isinstance(weight, list)
            else [weight if weight is not None else DEFAULT_ACTION_WEIGHT] * len(keys)
        )
        if len(weights) != len(keys):
            raise InvalidInput("weights must have the same length as tasks")
        for w in weights:
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w <= 1:
                raise InvalidInput(f"task weight {w!r} must be a number between 0 and 1")
        hub = hub_key(net)
        self._require_nodes("TaskHub", [hub], what="network")
        rows = [{"k": k, "w": float(w)} for k, w in zip(keys, weights, strict=False)]
        done = {
            r["k"]
            for r in self._write(
                "MATCH (th:TaskHub {_scoped_key: $hub})-[:PERFORMS]->(an) "
                "UNWIND $rows AS r MATCH (t:Task {_scoped_key: r.k}) "
                "WHERE t.status IN $actionable "
                "AND EXISTS { (an)-[:DEPENDS_ON {attribute: 'edges'}]->(:GufeTokenizable)<-[:PERFORMS]-(t) } "
                "MERGE (th)-[a:ACTIONS]->(t) SET a.weight = r.w "
                "WITH th, t, r "
                "OPTIONAL MATCH (p:TaskRestartPattern)-[:ENFORCES]->(th) "
                "FOREACH (_ IN CASE WHEN p IS NULL THEN [] ELSE [1] END | "
                "  MERGE (p)-[ap:APPLIES]->(t) ON CREATE SET ap.num_retries = 0) "
                "RETURN DISTINCT r.k AS k",
                hub=hub,
                rows=rows,
                actionable=ACTIONABLE,
            )
        }
        return [k if k in done else None for k in keys]

    def cancel_tasks(self, tasks: Sequence[ScopedKey], network: ScopedKey) -> list[str | None]:
        """Remove tasks from a network's hub; None for tasks that were not actioned there."""
        net = key_of(network, "AlchemicalNetwork")
        keys = key_strs(tasks, "Task")
        done = {
            r["k"]
            for r in self._write(
                "UNWIND $keys AS k MATCH (th:TaskHub {_scoped_key: $hub})-[a:ACTIONS]->(t:Task {_scoped_key: k}) "
                "OPTIONAL MATCH (th)<-[:ENFORCES]-(:TaskRestartPattern)-[ap:APPLIES]->(t) "
                "DELETE a, ap RETURN DISTINCT k",
                keys=keys,
                hub=hub_key(net),
            )
        }
        return [k if k in done else None for k in keys]

    def get_network_actioned_tasks(self, network: ScopedKey) -> dict[str, float]:
        """Actioned tasks of a network with their weights."""
        net = key_of(network, "AlchemicalNetwork")
        hub = hub_key(net)
        self._require_nodes("TaskHub", [hub], what="network")
        rows = self._read(
            "MATCH (:TaskHub {_scoped_key: $hub})-[a:ACTIONS]->(t:Task) WHERE t.status IN $actionable "
            "RETURN t._scoped_key AS k, a.weight AS w",
            hub=hub,
            actionable=ACTIONABLE,
        )
        return {r["k"]: r["w"] for r in rows}

    def get_task_actioned_networks(self, task: ScopedKey) -> dict[str, float]:
        key = str(key_of(task, "Task"))
        self._require_nodes("Task", [key])
        rows = self._read(
            "MATCH (th:TaskHub)-[a:ACTIONS]->(t:Task {_scoped_key: $k}) WHERE t.status IN $actionable "
            "RETURN th.network AS n, a.weight AS w",
            k=key,
            actionable=ACTIONABLE,
        )
        return {r["n"]: r["w"] for r in rows}

    # -- lookups ------------------------------------------------------------------------
    def get_task_transformation(self, task: ScopedKey) -> tuple[str, str | None]:
        """(transformation, extended task) of a task."""
        key = str(key_of(task, "Task"))
        rows = self._read(
            "MATCH (t:Task {_scoped_key: $k}) RETURN t.transformation AS tf, t.extends AS ext", k=key
        )
        if not rows:
            raise NotFound(f"no task {key}")
        return rows[0]["tf"], rows[0]["ext"]

    def get_task_networks(self, task: ScopedKey) -> list[str]:
        key = str(key_of(task, "Task"))
        self._require_nodes("Task", [key])
        rows = self._read(
            "MATCH (:Task {_scoped_key: $k})-[:PERFORMS]->(tf)<-[:DEPENDS_ON {attribute: 'edges'}]-(an) "
            "RETURN DISTINCT an._scoped_key AS n ORDER BY n",
            k=key,
        )
        return [r["n"] for r in rows]

    def get_transformation_tasks(
        self, transformation: ScopedKey, *, extends: ScopedKey | None = None, status: str | None = None
    ) -> list[str]:
        tf = str(key_of(transformation, TRANSFORMATION_QUALNAMES))
        self._require_nodes("GufeTokenizable", [tf], what="transformation")
        rows = self._read(
            "MATCH (t:Task {transformation: $tf}) WHERE ($status IS NULL OR t.status = $status) "
            "AND ($ext IS NULL OR t.extends = $ext) RETURN t._scoped_key AS k ORDER BY t.created_at, k",
            tf=tf,
            status=self._status_or_none(status),
            ext=str(key_of(extends, "Task")) if extends else None,
        )
        return [r["k"] for r in rows]

    def get_network_tasks(self, network: ScopedKey, *, status: str | None = None) -> list[str]:
        net = str(key_of(network, "AlchemicalNetwork"))
        self._require_nodes("GufeTokenizable", [net], what="network")
        rows = self._read(
            "MATCH (:AlchemicalNetwork {_scoped_key: $n})-[:DEPENDS_ON {attribute: 'edges'}]->(tf)"
            "<-[:PERFORMS]-(t:Task) WHERE ($status IS NULL OR t.status = $status) "
            "RETURN t._scoped_key AS k ORDER BY k",
            n=net,
            status=self._status_or_none(status),
        )
        return [r["k"] for r in rows]

    def query_tasks(self, *, scope: str = "*-*-*", status: str | None = None) -> list[str]:
        sc = parse_scope(scope)
        rows = self._read(
            "MATCH (t:Task) WHERE " + scope_filter("t") + " AND ($status IS NULL OR t.status = $status) "
            "RETURN t._scoped_key AS k ORDER BY k",
            status=self._status_or_none(status),
            **scope_params(sc),
        )
        return [r["k"] for r in rows]

    @staticmethod
    def _status_or_none(status: str | None) -> str | None:
        if status is None:
            return None
        try:
            return TaskStatus(status).value
        except ValueError:
            raise InvalidInput(f"status must be one of {[s.value for s in TaskStatus]}") from None

    # -- status summaries ----------------------------------------------------------------
    def get_network_status(self, networks: Sequence[ScopedKey]) -> list[dict[str, int]]:
        keys = key_strs(networks, "AlchemicalNetwork")
        self._require_nodes("GufeTokenizable", keys, what="network")
        rows = self._read(
            "UNWIND $keys AS n MATCH (:AlchemicalNetwork {_scoped_key: n})-[:DEPENDS_ON {attribute: 'edges'}]->(tf)"
            "<-[:PERFORMS]-(t:Task) RETURN n, t.status AS s, count(DISTINCT t) AS c",
            keys=keys,
        )
        counts: dict[str, Counter] = {k: Counter() for k in keys}
        for r in rows:
            counts[r["n"]][r["s"]] += r["c"]
        return [dict(counts[k]) for k in keys]

    def get_transformation_status(self, transformation: ScopedKey) -> dict[str, int]:
        tf = str(key_of(transformation, TRANSFORMATION_QUALNAMES))
        self._require_nodes("GufeTokenizable", [tf], what="transformation")
        rows = self._read("MATCH (t:Task {transformation: $tf}) RETURN t.status AS s, count(t) AS c", tf=tf)
        return {r["s"]: r["c"] for r in rows}

    def get_scope_status(self, scope: str = "*-*-*", *, network_state: str | None = None) -> dict[str, int]:
        """Task counts in a scope; with ``network_state``, only tasks of networks in that state."""
        sc = parse_scope(scope)
        if network_state is not None:
            try:
                network_state = NetworkState(network_state).value
            except ValueError:
                raise InvalidInput(
                    f"network state must be one of {[x.value for x in NetworkState]}"
                ) from None
        if network_state is None:
            rows = self._read(
                "MATCH (t:Task) WHERE " + scope_filter("t") + " RETURN t.status AS s, count(t) AS c",
                **scope_params(sc),
            )
        else:
            rows = self._read(
                "MATCH (an:AlchemicalNetwork)-[:DEPENDS_ON {attribute: 'edges'}]->()<-[:PERFORMS]-(t:Task) "
                "WHERE " + scope_filter("t") + " AND an._state = $state "
                "WITH DISTINCT t RETURN t.status AS s, count(t) AS c",
                state=network_state,
                **scope_params(sc),
            )
        return {r["s"]: r["c"] for r in rows}

    def _task_rows(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return {
            r["k"]: r
            for r in self._read(
                "UNWIND $keys AS k MATCH (t:Task {_scoped_key: k}) RETURN k, t.status AS status, "
                "t.transformation AS transformation, t.extends AS extends, t.priority AS priority, "
                "t.claimed_by AS claimed_by, t.protocol AS protocol, t.protocol_module AS protocol_module",
                keys=keys,
            )
        }

    def get_tasks(self, tasks: Sequence[ScopedKey]) -> list[dict[str, Any] | None]:
        """Task records (status, transformation, extends, priority, claim, protocol)."""
        keys = key_strs(tasks, "Task")
        rows = self._task_rows(keys)
        return [rows.get(k) for k in keys]
