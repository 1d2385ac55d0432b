"""TaskHubs as alchemiscale's compute API sees them: query them by scope, claim from one.

Every network has one TaskHub (``hub_key``: alchemiscale's key, the md5 of the network's
ScopedKey), with the network's ScopedKey and a weight. A claim from one hub is the claim of
:class:`ComputeMixin` narrowed to that hub: the same candidate rules (``_CLAIMABLE``: waiting,
ACTIONS weight above 0, extended task complete, protocol filter), the same priority tiers and weighted pick
(``_pick``) and the same task-locking claim transaction (``_claim_keys``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alchemiscale_local.models import Scope, ScopedKey

from .base import key_of, parse_scope
from .compute import _CLAIMABLE, CANDIDATE_FACTOR, CANDIDATE_MIN, ComputeMixin
from .errors import InvalidInput, NotFound

_QUERY = """
MATCH (th:TaskHub) WHERE any(s IN $scopes WHERE
  (s.org IS NULL OR th._org = s.org) AND (s.campaign IS NULL OR th._campaign = s.campaign)
  AND (s.project IS NULL OR th._project = s.project))
RETURN th._scoped_key AS taskhub, th.network AS network, th.weight AS weight
ORDER BY taskhub
"""

# The candidate rules of compute's claims (one definition, _CLAIMABLE) for one hub. The hub's
# own weight is not a condition here: it only steers the choice between hubs, and this caller chose one.
_HUB_CANDIDATES = f"""
MATCH (th:TaskHub {{_scoped_key: $hub}})
OPTIONAL MATCH {_CLAIMABLE}
WITH th, t, a ORDER BY t.priority LIMIT $limit
RETURN count(th) > 0 AS found,
       collect(CASE WHEN t IS NULL THEN null ELSE {{k: t._scoped_key, p: t.priority, w: a.weight}} END) AS candidates
"""


def _scope_rows(scopes: Sequence[str | Scope]) -> list[dict[str, Any]]:
    rows = []
    for s in scopes:
        parsed = parse_scope(s)
        rows.append({"org": parsed.org, "campaign": parsed.campaign, "project": parsed.project})
    return rows


def check_protocols(protocols: Sequence[str] | None) -> list[str] | None:
    """None (no filter) or a non-empty list of protocol names; InvalidInput otherwise."""
    if protocols is None:
        return None
    if isinstance(protocols, str) or not all(isinstance(p, str) and p for p in protocols):
        raise InvalidInput("protocols must be a list of protocol class names")
    if not protocols:
        raise InvalidInput("protocols must be null (any protocol) or a non-empty list")
    return list(protocols)


class TaskHubsMixin(ComputeMixin):
    """Query TaskHubs; claim tasks from one TaskHub."""

    def query_taskhubs(self, scopes: Sequence[str | Scope]) -> list[dict[str, Any]]:
        """``{taskhub, network, weight}`` of every TaskHub in any of ``scopes``, by key."""
        rows = _scope_rows(scopes)
        if not rows:
            return []
        return self._read(_QUERY, scopes=rows)

    def get_taskhub(self, taskhub: ScopedKey) -> dict[str, Any]:
        """``{taskhub, network, weight}`` of one TaskHub; NotFound when there is none."""
        key = str(key_of(taskhub, "TaskHub"))
        rows = self._read(
            "MATCH (th:TaskHub {_scoped_key: $k}) "
            "RETURN th._scoped_key AS taskhub, th.network AS network, th.weight AS weight",
            k=key,
        )
        if not rows:
            raise NotFound(f"no TaskHub {key}")
        return rows[0]

    def claim_taskhub_tasks(
        self,
        identifier: str,
        taskhub: ScopedKey,
        count: int = 1,
        protocols: Sequence[str] | None = None,
    ) -> list[str]:
        """Claim up to ``count`` waiting tasks actioned by ``taskhub`` for a registered service."""
        if not isinstance(count, int) or isinstance(count, bool) or count < 1 or count > 1000:
            raise InvalidInput("count must be an integer between 1 and 1000")
        key = str(key_of(taskhub, "TaskHub"))
        protos = check_protocols(protocols)
        limit = max(CANDIDATE_MIN, count * CANDIDATE_FACTOR)
        claimed: list[str] = []
        for _round in range(8):  # as claim_tasks: read again only when others took every candidate
            row = self._read(_HUB_CANDIDATES, hub=key, protocols=protos, limit=limit)[0]
            if not row["found"]:
                raise NotFound(f"no TaskHub {key}")
            candidates = row["candidates"]
            if not candidates:
                break
            while len(claimed) < count and candidates:
                picks = self._pick(candidates, count - len(claimed))
                if not picks:
                    break
                claimed.extend(self._claim_keys(identifier, picks))
                taken = set(picks)
                candidates = [c for c in candidates if c["k"] not in taken]
            if len(claimed) >= count or len(row["candidates"]) < limit:
                break  # enough, or the hub had no more than what was read
        if not claimed:
            self._require_service(identifier)  # an expired service learns it must register again
        return claimed
