"""Compute service registrations, heartbeats, expiry, failure counting and claims.

Claiming follows alchemiscale's order (a hub by weighted choice, then the lowest
priority number, then a weighted pick by ACTIONS weight) but locks **tasks**, not
the hub: each candidate task is write-locked and re-checked inside the claiming
transaction, so no task is ever held by two services while claimers on the same
network proceed in parallel (alchemiscale issue #121).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from neo4j import ManagedTransaction

from alchemiscale_local.models import ComputeServiceRegistration, Scope, ScopedKey

from .base import StoreBase, key_of, parse_scope
from .errors import Conflict, Forbidden, InvalidInput, NotFound

# Candidates read per hub and round: several times what is asked for, so concurrent
# claimers sample different tasks from the same priority tier instead of colliding.
CANDIDATE_FACTOR = 8
CANDIDATE_MIN = 32
# Further reads of a hub whose candidates concurrent claimers all took before this claim could.
MAX_RETRIES = 8

_RELEASE_CLAIMS = """
MATCH (cs:ComputeServiceRegistration) WHERE cs.identifier IN $ids
OPTIONAL MATCH (cs)-[c:CLAIMS]->(t:Task)
FOREACH (_ IN CASE WHEN t IS NOT NULL AND t.status = 'running' THEN [1] ELSE [] END |
  SET t.status = 'waiting', t.claimed_by = null)
DELETE c
WITH DISTINCT cs
DETACH DELETE cs
"""

# A task a claim may take: waiting, actioned (weight above 0), in the protocol filter, and not
# extending an unfinished task. ``t`` and ``e`` have no label on purpose (ACTIONS and EXTENDS
# only ever reach Tasks): with one, a plan cached while there was one hub may start from the
# Task(status) index and join every waiting task to every hub (seen: 30k db hits for 10 hubs
# of 60 tasks; and 4M for 900 tasks with the EXTENDS check as an index scan per candidate).
_CLAIMABLE = """(th)-[a:ACTIONS]->(t)
  WHERE t.status = 'waiting' AND a.weight > 0 AND ($protocols IS NULL OR t.protocol IN $protocols)
  AND NOT EXISTS { (t)-[:EXTENDS]->(e) WHERE e.status <> 'complete' }"""

# ONE hub, chosen by weight among the hubs in scope that have a claimable task, with its best
# candidates: alchemiscale's order (hub first, then tasks) without reading every hub's tasks.
# The EXISTS stops at the hub's first claimable task (skipped when only one hub is in scope: the
# expansion finds out); only the chosen hub is expanded and sorted. The choice walks the hubs in key order to the first whose running weight sum exceeds
# ``$r * total`` ($r in [0, 1) from the caller's rng). ``$skip``: hubs this claim has emptied.
_CHOOSE_AND_EXPAND = f"""
MATCH (th:TaskHub) WHERE th.weight > 0 AND NOT th._scoped_key IN $skip AND any(s IN $scopes WHERE
  (s.org IS NULL OR th._org = s.org) AND (s.campaign IS NULL OR th._campaign = s.campaign)
  AND (s.project IS NULL OR th._project = s.project))
  AND NOT any(x IN $exclude WHERE
  (x.org IS NULL OR th._org = x.org) AND (x.campaign IS NULL OR th._campaign = x.campaign)
  AND (x.project IS NULL OR th._project = x.project))
WITH collect(th) AS scoped
UNWIND scoped AS th
WITH th, size(scoped) AS n ORDER BY th._scoped_key
WITH th WHERE n = 1 OR EXISTS {{ MATCH {_CLAIMABLE} }}
WITH collect(th) AS hubs, sum(th.weight) AS total
WITH hubs, reduce(s = {{acc: 0.0, pick: null}}, h IN hubs |
  {{acc: s.acc + h.weight, pick: CASE WHEN s.pick IS NULL AND s.acc + h.weight > $r * total
                                   THEN h ELSE s.pick END}}).pick AS pick
WITH coalesce(pick, last(hubs)) AS th WHERE th IS NOT NULL
CALL (th) {{
  MATCH {_CLAIMABLE}
  RETURN t._scoped_key AS k, t.priority AS p, a.weight AS w
  ORDER BY p
  LIMIT $limit
}}
"""
_CANDIDATES = _CHOOSE_AND_EXPAND + "RETURN th._scoped_key AS hub, collect({k: k, p: p, w: w}) AS candidates\n"

# The failure gate, the held tasks and the candidates of one claim, in one round trip.
# Held tasks are read only when asked for (``$include_held``); candidates only when the gate
# lets the service claim and its held tasks do not already fill the request.
_CLAIM_START = (
    """
MATCH (cs:ComputeServiceRegistration {identifier: $id})
WITH cs, coalesce(cs.failure_times, []) AS f
WITH cs, f, NOT $gated OR size([x IN f WHERE x >= $cutoff]) <= $max_failures AS allowed
CALL (cs, allowed) {
  OPTIONAL MATCH (cs)-[:CLAIMS]->(t)  // no Task label: the plan must start from cs, not Task(status)
  WHERE allowed AND $include_held AND t.status = 'running' AND any(s IN $scopes WHERE (s.org IS NULL OR t._org = s.org)
  AND (s.campaign IS NULL OR t._campaign = s.campaign) AND (s.project IS NULL OR t._project = s.project))
  WITH t ORDER BY t._scoped_key LIMIT $count
  RETURN collect(t._scoped_key) AS held
}
CALL (allowed, held) {
  WITH allowed, held WHERE allowed AND size(held) < $count
"""
    + _CHOOSE_AND_EXPAND
    + """WITH th, collect({k: k, p: p, w: w}) AS candidates
  RETURN collect({hub: th._scoped_key, candidates: candidates}) AS hubs
}
RETURN f, allowed, held, hubs
"""
)

# Lock each task (SET), then re-read its status: a concurrent claimer that got there
# first has committed 'running', and this row drops out.
_CLAIM = """
MATCH (cs:ComputeServiceRegistration {identifier: $id})
UNWIND $keys AS k
MATCH (t:Task {_scoped_key: k})
SET t._lock = true
WITH cs, t, t.status = 'waiting' AND NOT EXISTS { (t)<-[:CLAIMS]-() } AS free
REMOVE t._lock
WITH cs, t WHERE free
CREATE (cs)-[:CLAIMS {claimed: $now}]->(t)
SET t.status = 'running', t.claimed_by = $id, t.claimed_at = $now,
    t.claimants = CASE WHEN $id IN coalesce(t.claimants, []) THEN t.claimants
                       ELSE coalesce(t.claimants, []) + $id END
RETURN t._scoped_key AS k
"""


def weighted_sample(items: Sequence[Any], weights: Sequence[float], n: int, rng: random.Random) -> list[Any]:
    """Up to n items without replacement, each draw proportional to weight."""
    pool = [(i, w) for i, w in zip(items, weights, strict=False) if w > 0]
    if n >= len(pool):
        return [i for i, _ in pool]
    # Efraimidis-Spirakis: keys u^(1/w), take the n largest.
    keyed = sorted(pool, key=lambda iw: rng.random() ** (1.0 / iw[1]), reverse=True)
    return [i for i, _ in keyed[:n]]


class ComputeMixin(StoreBase):
    """Registration, heartbeat, expiry, the failure gate, and claims."""

    rng = random.Random()

    # -- registration ---------------------------------------------------------------
    def register_computeservice(self, reg: ComputeServiceRegistration, owner: str | None = None) -> str:
        """Register (or refresh) a service. With ``owner``, the id is bound to that identity
        for good on first registration; Forbidden when another identity holds it."""
        now = self._now()
        rows = self._write(
            "MERGE (o:ComputeServiceOwner {identifier: $id}) ON CREATE SET o.owner = $owner "
            "WITH o WHERE $owner IS NULL OR coalesce(o.owner, $owner) = $owner "
            "SET o.owner = coalesce(o.owner, $owner) "
            "MERGE (cs:ComputeServiceRegistration {identifier: $id}) "
            "ON CREATE SET cs.registered = $now, cs.failure_times = [] "
            "SET cs.hostname = $host, cs.pid = $pid, cs.gpu = $gpu, cs.runtimes = $runtimes, "
            "cs.heartbeat = $now RETURN cs.identifier AS id",
            id=reg.identifier,
            host=reg.hostname,
            pid=reg.pid,
            gpu=reg.gpu,
            runtimes=reg.runtimes,
            now=now,
            owner=owner,
        )
        if not rows:
            raise Forbidden(f"compute service id {reg.identifier} belongs to another identity")
        return rows[0]["id"]

    def heartbeat_computeservice(self, identifier: str) -> None:
        rows = self._write(
            "MATCH (cs:ComputeServiceRegistration {identifier: $id}) SET cs.heartbeat = $now RETURN 1 AS one",
            id=identifier,
            now=self._now(),
        )
        if not rows:
            raise NotFound(f"no compute service {identifier} (expired or never registered)")

    def deregister_computeservice(self, identifier: str) -> None:
        """Remove a registration; its running tasks go back to waiting."""
        self._require_service(identifier)
        self._write(_RELEASE_CLAIMS, ids=[identifier])

    def expire_computeservices(self, ttl_s: float) -> list[str]:
        """Remove services silent for longer than ``ttl_s``; return their identifiers."""
        if not isinstance(ttl_s, (int, float)) or isinstance(ttl_s, bool) or not ttl_s >= 0:
            raise InvalidInput(f"ttl_s must be a number >= 0, not {ttl_s!r}")
        cutoff = self._now() - ttl_s
        ids = [
            r["id"]
            for r in self._read(
                "MATCH (cs:ComputeServiceRegistration) WHERE cs.heartbeat < $cutoff RETURN cs.identifier AS id",
                cutoff=cutoff,
            )
        ]
        if ids:
            self._write(_RELEASE_CLAIMS, ids=ids)
        return ids

    def list_computeservices(self) -> list[dict[str, Any]]:
        return self._read(
            "MATCH (cs:ComputeServiceRegistration) "
            "OPTIONAL MATCH (cs)-[:CLAIMS]->(t:Task {status: 'running'}) "
            "RETURN cs.identifier AS identifier, cs.hostname AS hostname, cs.pid AS pid, cs.gpu AS gpu, "
            "cs.registered AS registered, cs.heartbeat AS heartbeat, size(cs.failure_times) AS failures, "
            "collect(t._scoped_key) AS tasks ORDER BY identifier"
        )

    def _require_service(self, identifier: str) -> None:
        if not self._read(
            "MATCH (cs:ComputeServiceRegistration {identifier: $id}) RETURN 1 AS one", id=identifier
        ):
            raise NotFound(f"no compute service {identifier} (expired or never registered)")

    # -- failure gate ------------------------------------------------------------------
    def log_failure_computeservice(self, identifier: str) -> None:
        self._write(
            "MATCH (cs:ComputeServiceRegistration {identifier: $id}) "
            "SET cs.failure_times = coalesce(cs.failure_times, []) + $now",
            id=identifier,
            now=self._now(),
        )

    def computeservice_can_claim(self, identifier: str, max_failures: int, window_s: float) -> bool:
        """Deny when more than ``max_failures`` failures fall inside the window.

        A read in the common case; failures older than the window are pruned only when there are some.
        """
        rows = self._read(
            "MATCH (cs:ComputeServiceRegistration {identifier: $id}) RETURN coalesce(cs.failure_times, []) AS f",
            id=identifier,
        )
        if not rows:
            raise NotFound(f"no compute service {identifier} (expired or never registered)")
        cutoff = self._now() - window_s
        self._prune_failures(identifier, rows[0]["f"], cutoff)
        return len([f for f in rows[0]["f"] if f >= cutoff]) <= max_failures

    def _prune_failures(self, identifier: str, failures: list[float], cutoff: float) -> None:
        """Drop failures older than ``cutoff``; a write only when there are some."""
        if any(f < cutoff for f in failures):
            self._write(
                "MATCH (cs:ComputeServiceRegistration {identifier: $id}) "
                "SET cs.failure_times = [f IN coalesce(cs.failure_times, []) WHERE f >= $cutoff]",
                id=identifier,
                cutoff=cutoff,
            )

    # -- claims --------------------------------------------------------------------------
    def claim_tasks(
        self,
        identifier: str,
        count: int = 1,
        scopes: Sequence[str | Scope] = ("*-*-*",),
        protocols: Sequence[str] | None = None,
        *,
        include_held: bool = False,
        scopes_exclude: Sequence[str | Scope] | None = None,
    ) -> list[str]:
        """Claim up to ``count`` waiting tasks in ``scopes`` for a registered service.

        Usually two round trips: one hub chosen by weight with its candidates, and the claim itself.
        With ``include_held``, running tasks the service already holds come first, which
        makes a retried claim idempotent for services that claim only when idle.
        """
        claimed = self.claim_for_service(
            identifier,
            count,
            scopes,
            protocols,
            include_held=include_held,
            scopes_exclude=scopes_exclude,
        )
        assert claimed is not None  # no failure gate: never denied
        return claimed

    def claim_for_service(
        self,
        identifier: str,
        count: int = 1,
        scopes: Sequence[str | Scope] = ("*-*-*",),
        protocols: Sequence[str] | None = None,
        *,
        include_held: bool = False,
        scopes_exclude: Sequence[str | Scope] | None = None,
        max_failures: int | None = None,
        window_s: float = 0.0,
    ) -> list[str] | None:
        """:meth:`claim_tasks` behind the failure gate of :meth:`computeservice_can_claim`.

        None when the service is denied (``max_failures`` given and exceeded in ``window_s``).
        The gate, the held tasks and the first candidates are one read; the claim one write.
        A further read (another hub chosen by weight) only when the chosen hub runs out before
        ``count`` tasks are claimed, or concurrent claimers took all of its candidates.
        """
        if not isinstance(count, int) or count < 1 or count > 1000:
            raise InvalidInput("count must be an integer between 1 and 1000")
        parsed = [parse_scope(s) for s in scopes]
        scope_rows = [{"org": s.org, "campaign": s.campaign, "project": s.project} for s in parsed]
        excluded = [parse_scope(s) for s in scopes_exclude or ()]
        exclude_rows = [{"org": s.org, "campaign": s.campaign, "project": s.project} for s in excluded]
        protos = list(protocols) if protocols else None
        limit = max(CANDIDATE_MIN, count * CANDIDATE_FACTOR)
        if not parsed and max_failures is None:
            return []
        now = self._now()
        gated = max_failures is not None
        rows = self._read(
            _CLAIM_START,
            id=identifier,
            gated=gated,
            cutoff=now - window_s,
            max_failures=max_failures,
            include_held=include_held,
            count=count,
            scopes=scope_rows,
            exclude=exclude_rows,
            protocols=protos,
            limit=limit,
            skip=[],
            r=self.rng.random(),
        )
        if not rows:
            raise NotFound(f"no compute service {identifier} (expired or never registered)")
        row = rows[0]
        if gated:
            self._prune_failures(identifier, row["f"], now - window_s)
            if not row["allowed"]:
                return None
        claimed: list[str] = list(row["held"])
        found: list[dict[str, Any]] | None = row["hubs"]
        skip: list[str] = []  # hubs whose every claimable task this claim has picked
        retries = 0
        while len(claimed) < count and parsed:
            if found is None:
                found = self._read(
                    _CANDIDATES,
                    scopes=scope_rows,
                    exclude=exclude_rows,
                    protocols=protos,
                    limit=limit,
                    skip=skip,
                    r=self.rng.random(),
                )
            if not found:
                break  # no hub in scope has a claimable task
            hub, candidates = found[0]["hub"], found[0]["candidates"]
            complete = len(candidates) < limit  # the read saw all of the hub's claimable tasks
            found = None
            while len(claimed) < count and candidates:
                picks = self._pick(candidates, count - len(claimed))
                if not picks:
                    break
                claimed.extend(self._claim_keys(identifier, picks))
                # Whatever was picked is gone (claimed now, or by someone else): keep the rest.
                taken = set(picks)
                candidates = [c for c in candidates if c["k"] not in taken]
            if len(claimed) >= count:
                break
            if complete:
                skip.append(hub)  # emptied: a further read chooses among the other hubs
            else:
                retries += 1  # concurrent claimers took every candidate: read again, a few times
                if retries >= MAX_RETRIES:
                    break
        return claimed

    def _claim_keys(self, identifier: str, keys: list[str]) -> list[str]:
        if not keys:
            return []

        def work(tx: ManagedTransaction, keys: list[str] = sorted(keys)) -> list[str]:
            # Sorted keys: every claimer locks in the same order, so no deadlocks.
            return [r["k"] for r in tx.run(_CLAIM, id=identifier, keys=keys, now=self._now()).data()]

        return self._write_tx(work)

    def _pick(self, candidates: list[dict[str, Any]], want: int) -> list[str]:
        """Lowest priority tiers first; within the tier that overflows, weighted by ACTIONS weight."""
        picks: list[str] = []
        tiers: dict[int, list[dict[str, Any]]] = {}
        for c in candidates:
            tiers.setdefault(c["p"], []).append(c)
        for p in sorted(tiers):
            tier = tiers[p]
            room = want - len(picks)
            if room <= 0:
                break
            picks.extend(weighted_sample([c["k"] for c in tier], [c["w"] for c in tier], room, self.rng))
        return picks

    def assert_claim(self, identifier: str, task: ScopedKey) -> str:
        """The task's transformation; Conflict unless ``identifier`` holds the claim on ``task``."""
        rows = self._read(
            "MATCH (t:Task {_scoped_key: $k}) OPTIONAL MATCH (cs:ComputeServiceRegistration)-[:CLAIMS]->(t) "
            "RETURN t.status AS s, t.transformation AS tf, cs.identifier AS holder",
            k=str(key_of(task)),  # no class check: any other key is simply no task (404)
        )
        if not rows:
            raise NotFound(f"no task {task}")
        if rows[0]["holder"] != identifier:
            raise Conflict(
                f"task {task} is not claimed by {identifier} (status {rows[0]['s']}); "
                "the claim was lost, e.g. the service expired"
            )
        return rows[0]["tf"]
