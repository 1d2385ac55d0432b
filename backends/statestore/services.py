"""Who owns a compute service id, which running tasks nobody wants any more, refused results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from neo4j import ManagedTransaction

from alchemiscale_local.models import ScopedKey

from .base import StoreBase, key_of, key_strs
from .errors import Conflict, NotFound

# Per task: does it exist, its status, whether this service holds its claim, and the states
# of the networks that still action it (no ACTIONS left = cancelled everywhere).
_UNWANTED = """
UNWIND $keys AS k
OPTIONAL MATCH (t:Task {_scoped_key: k})
OPTIONAL MATCH (t)<-[c:CLAIMS]-(:ComputeServiceRegistration {identifier: $id})
WITH k, t, c IS NOT NULL AS mine
OPTIONAL MATCH (t)<-[:ACTIONS]-(:TaskHub)-[:PERFORMS]->(an:AlchemicalNetwork)
RETURN k, t IS NOT NULL AS exists, t.status AS status, mine,
       collect(CASE WHEN an IS NULL THEN null ELSE coalesce(an._state, 'active') END) AS states
"""

# A result the server refused for good: the task fails like a failed run, so the failure
# gate and restart patterns apply and no service loops on it.
_REFUSE = """
MATCH (t:Task {_scoped_key: $task})<-[c:CLAIMS]-(:ComputeServiceRegistration {identifier: $id})
WHERE t.status = 'running'
DELETE c
SET t.status = 'error', t.claimed_by = null, t.refused_result = $reason, t.refused_at = $now
RETURN t._scoped_key AS k
"""


class ServicesMixin(StoreBase):
    """Ownership of compute service ids, unwanted tasks and refused results."""

    def computeservice_owner(self, identifier: str) -> str | None:
        """The identity the service id is bound to (None when it was never registered with one)."""
        rows = self._read(
            "MATCH (o:ComputeServiceOwner {identifier: $id}) RETURN o.owner AS owner", id=identifier
        )
        return rows[0]["owner"] if rows else None

    def unwanted_tasks(self, identifier: str, tasks: Sequence[ScopedKey]) -> dict[str, str]:
        """``{task: reason}`` for the tasks the service ``identifier`` should stop running.

        Reasons: ``gone`` (no such task), ``not running`` (its status changed, e.g. cancelled
        by a status change), ``not claimed`` (the claim expired or went to another service),
        ``cancelled`` (no network actions it any more), ``network <state>`` (every network
        that actions it is inactive, deleted or invalid).
        """
        keys = key_strs(tasks, "Task")
        if not keys:
            return {}
        out: dict[str, str] = {}
        for r in self._read(_UNWANTED, keys=list(dict.fromkeys(keys)), id=identifier):
            reason = _unwanted_reason(r)
            if reason is not None:
                out[r["k"]] = reason
        return out

    def result_admission(self, identifier: str, task: ScopedKey) -> tuple[str, bool]:
        """``(transformation, held)`` for a result push of ``identifier`` on ``task``.

        ``held``: the service holds the claim. Otherwise the push is a late result, kept only
        from a service that once claimed the task, and never for a complete task (Conflict).
        """
        rows = self._read(
            "MATCH (t:Task {_scoped_key: $k}) "
            "OPTIONAL MATCH (cs:ComputeServiceRegistration)-[:CLAIMS]->(t) "
            "RETURN t.status AS s, t.transformation AS tf, cs.identifier AS holder, "
            "coalesce(t.claimants, []) AS claimants",
            k=str(key_of(task)),  # no class check: any other key is simply no task (404)
        )
        if not rows:
            raise NotFound(f"no task {task}")
        row = rows[0]
        if row["s"] == "running" and row["holder"] == identifier:
            return row["tf"], True
        if row["s"] == "complete":
            raise Conflict(f"task {task} is already complete; the result of {identifier} is refused")
        if identifier not in row["claimants"]:
            raise Conflict(
                f"task {task} is not claimed by {identifier} and never was (status {row['s']}); result refused"
            )
        return row["tf"], False

    def refuse_task_result(self, task: ScopedKey, identifier: str, reason: str) -> str | None:
        """Fail a running task whose result the server refused for good; its new status.

        Only while ``identifier`` holds the claim (None otherwise: nothing changes). Counts a
        failure for the service and applies restart patterns, like a failed result.
        """
        key = str(key_of(task, "Task"))

        def work(tx: ManagedTransaction) -> bool:
            row = tx.run(_REFUSE, task=key, id=identifier, reason=reason[:2000], now=self._now()).single()
            return row is not None

        if not self._write_tx(work):
            return None
        self.log_failure_computeservice(identifier)  # type: ignore[attr-defined]
        return self.resolve_task_restarts([key]).get(key, "error")  # type: ignore[attr-defined]


def _unwanted_reason(row: dict[str, Any]) -> str | None:
    if not row["exists"]:
        return "gone"
    if row["status"] != "running":
        return f"not running (status {row['status']})"
    if not row["mine"]:
        return "not claimed by this service (the claim expired or went to another service)"
    states = row["states"]
    if not states:
        return "cancelled (no network actions it)"
    if "active" not in states:
        return f"network {sorted(set(states))[0]}"
    return None
