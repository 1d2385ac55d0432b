"""Compute managers (alchemiscale 0.8): registrations, the services they manage, instructions.

A ``ComputeManagerRegistration`` node per manager name (unique: one live manager per name)
holds its uuid, status (``OK`` or ``ERROR``), detail, saturation, times and the compute
identity that registered it. A compute service registered with a manager id gets
``manager_name`` and a ``MANAGES`` relation from the manager of that name; when a manager
registers again under the same name, services still carrying its name are reattached.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Sequence
from typing import Any

from neo4j import ManagedTransaction
from neo4j.exceptions import ConstraintError

from alchemiscale_local.models import Scope

from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .taskhubs import TaskHubsMixin, _scope_rows, check_protocols

MANAGER_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_.:]*\Z")
STATUSES = ("OK", "ERROR")


def parse_manager_id(text: str) -> tuple[str, str]:
    """``(name, uuid)`` of ``<name>-<uuid hex>``, checked as alchemiscale's ComputeManagerID."""
    if not isinstance(text, str):
        raise InvalidInput("a compute manager id must be a string '<name>-<uuid hex>'")
    parts = text.split("-")
    if len(parts) != 2:
        raise InvalidInput(f"compute manager id {text!r} must have the form '<name>-<uuid hex>'")
    name, uuid = parts
    check_manager_name(name)
    try:
        uuidlib.UUID(uuid)
    except ValueError:
        raise InvalidInput(f"compute manager id {text!r}: {uuid!r} is not a UUID") from None
    return name, uuid


def check_manager_name(name: str) -> str:
    if not isinstance(name, str) or not MANAGER_NAME.match(name) or len(name) > 200:
        raise InvalidInput(
            f"compute manager name {name!r} must start with a letter and contain only letters, "
            "digits, '_', '.' or ':'"
        )
    return name


_REGISTER = """
CREATE (m:ComputeManagerRegistration {name: $name, uuid: $uuid, owner: $owner, registered: $now,
        last_status_update: $now, status: 'OK', detail: '', saturation: 0.0})
WITH m
OPTIONAL MATCH (cs:ComputeServiceRegistration {manager_name: $name})
FOREACH (_ IN CASE WHEN cs IS NULL THEN [] ELSE [1] END | MERGE (m)-[:MANAGES]->(cs))
"""

# Waiting tasks a service could claim now: the candidate rules of compute._CANDIDATES.
_CLAIMABLE = """
MATCH (th:TaskHub) WHERE th.weight > 0 AND any(s IN $scopes WHERE
  (s.org IS NULL OR th._org = s.org) AND (s.campaign IS NULL OR th._campaign = s.campaign)
  AND (s.project IS NULL OR th._project = s.project))
MATCH (th)-[a:ACTIONS]->(t:Task)
WHERE t.status = 'waiting' AND a.weight > 0 AND ($protocols IS NULL OR t.protocol IN $protocols)
  AND NOT EXISTS { (t)-[:EXTENDS]->(e) WHERE e.status <> 'complete' }
RETURN count(DISTINCT t) AS n
"""


class ManagersMixin(TaskHubsMixin):
    """Register, deregister, instruct, update and expire compute managers."""

    def computemanager_by_name(self, name: str) -> dict[str, Any] | None:
        rows = self._read("MATCH (m:ComputeManagerRegistration {name: $name}) RETURN m {.*} AS m", name=name)
        return rows[0]["m"] if rows else None

    def _own_manager(self, manager_id: str, owner: str | None) -> dict[str, Any] | None:
        """The registration of exactly this id (None if absent); Forbidden for another identity's."""
        name, uuid = parse_manager_id(manager_id)
        found = self.computemanager_by_name(name)
        if found is None or found["uuid"] != uuid:
            return None
        if owner is not None and found.get("owner") not in (None, owner):
            raise Forbidden(f"compute manager {manager_id} belongs to another identity")
        return found

    def register_computemanager(
        self, manager_id: str, *, owner: str | None = None, steal: bool = False
    ) -> str:
        """Register a manager; with ``steal``, replace a registration of the same name that is
        not in ERROR. Conflict when the name is taken; Forbidden when another identity holds it."""
        name, uuid = parse_manager_id(manager_id)

        def work(tx: ManagedTransaction) -> str | None:
            row = tx.run(
                "MATCH (m:ComputeManagerRegistration {name: $name}) "
                "RETURN m.uuid AS uuid, m.status AS status, m.owner AS owner",
                name=name,
            ).single()
            if row is not None:
                if owner is not None and row["owner"] not in (None, owner):
                    raise Forbidden(f"compute manager name {name} belongs to another identity")
                if not steal or row["status"] == "ERROR":
                    return row["status"]
                tx.run(
                    "MATCH (m:ComputeManagerRegistration {name: $name}) WHERE m.status <> 'ERROR' "
                    "DETACH DELETE m",
                    name=name,
                ).consume()
            tx.run(_REGISTER, name=name, uuid=uuid, owner=owner, now=self._now()).consume()
            return None

        try:
            taken = self._write_tx(work)
        except ConstraintError:  # another registration of this name won the race
            taken = "OK"
        if taken is not None:
            raise Conflict(f"a compute manager named {name} is already registered with status {taken}")
        return f"{name}-{uuid}"

    def deregister_computemanager(self, manager_id: str, *, owner: str | None = None) -> str:
        """Remove the registration unless it is in ERROR (kept for an operator to see)."""
        name, uuid = parse_manager_id(manager_id)
        self._own_manager(manager_id, owner)
        self._write(
            "MATCH (m:ComputeManagerRegistration {name: $name, uuid: $uuid}) WHERE m.status <> 'ERROR' "
            "DETACH DELETE m",
            name=name,
            uuid=uuid,
        )
        return f"{name}-{uuid}"

    def managed_computeservices(self, manager_id: str) -> list[str]:
        name, uuid = parse_manager_id(manager_id)
        return [
            r["id"]
            for r in self._read(
                "MATCH (:ComputeManagerRegistration {name: $name, uuid: $uuid})-[:MANAGES]->"
                "(cs:ComputeServiceRegistration) RETURN cs.identifier AS id ORDER BY id",
                name=name,
                uuid=uuid,
            )
        ]

    def computemanager_instruction(
        self,
        manager_id: str,
        *,
        scopes: Sequence[str | Scope],
        protocols: Sequence[str] | None,
        max_failures: int,
        failure_window_s: float,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """alchemiscale's instruction: SHUTDOWN without a registration, SKIP when a managed
        service is over the failure limit (the claim gate), else OK with the number of
        tasks a service could claim in ``scopes``."""
        if self._own_manager(manager_id, owner) is None:
            return {
                "instruction": "SHUTDOWN",
                "message": f"no compute manager is registered with the id {manager_id}",
            }
        services = self.managed_computeservices(manager_id)
        for sid in services:
            try:
                allowed = self.computeservice_can_claim(sid, max_failures, failure_window_s)
            except NotFound:  # deregistered or expired since: it manages nothing now
                continue
            if not allowed:
                return {"instruction": "SKIP", "compute_service_ids": services}
        rows = _scope_rows(scopes)
        protos = check_protocols(protocols or None)
        n = self._read(_CLAIMABLE, scopes=rows, protocols=protos)[0]["n"] if rows else 0
        return {"instruction": "OK", "compute_service_ids": services, "num_tasks": n}

    def update_computemanager_status(
        self,
        manager_id: str,
        status: str,
        *,
        detail: str | None = None,
        saturation: float | None = None,
        owner: str | None = None,
    ) -> str:
        """OK needs ``saturation`` in [0, 1] and no detail; ERROR needs ``detail`` and no saturation."""
        name, uuid = parse_manager_id(manager_id)
        if status not in STATUSES:
            raise InvalidInput(f"status {status!r} must be one of {list(STATUSES)}")
        if status == "OK":
            if saturation is None:
                raise InvalidInput("saturation is required for the 'OK' status")
            if detail:
                raise InvalidInput("detail should only be provided for the 'ERROR' status")
            if (
                isinstance(saturation, bool)
                or not isinstance(saturation, (int, float))
                or not 0 <= saturation <= 1
            ):
                raise InvalidInput(f"saturation must be a number between 0 and 1, not {saturation!r}")
        else:
            if saturation is not None:
                raise InvalidInput("saturation should only be provided for the 'OK' status")
            if not detail or not isinstance(detail, str):
                raise InvalidInput("detail is required for the 'ERROR' status")
        if self._own_manager(manager_id, owner) is None:
            raise InvalidInput(f"no compute manager is registered with the id {manager_id}")
        rows = self._write(
            "MATCH (m:ComputeManagerRegistration {name: $name, uuid: $uuid}) "
            "SET m.status = $status, m.detail = $detail, m.saturation = $saturation, "
            "m.last_status_update = $now RETURN 1 AS one",
            name=name,
            uuid=uuid,
            status=status,
            detail=detail[:10000] if detail else None,
            saturation=float(saturation) if saturation is not None else None,
            now=self._now(),
        )
        if not rows:  # deregistered in between
            raise InvalidInput(f"no compute manager is registered with the id {manager_id}")
        return f"{name}-{uuid}"

    def expire_computemanagers(self, ok_ttl_s: float, error_ttl_s: float) -> list[str]:
        """Remove OK managers silent for ``ok_ttl_s`` and ERROR ones for ``error_ttl_s``; their ids."""
        for ttl in (ok_ttl_s, error_ttl_s):
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl >= 0:
                raise InvalidInput(f"a ttl must be a number >= 0, not {ttl!r}")
        now = self._now()
        return [
            r["id"]
            for r in self._write(
                "MATCH (m:ComputeManagerRegistration) "
                "WHERE (m.status = 'OK' AND m.last_status_update < $ok) "
                "OR (m.status = 'ERROR' AND m.last_status_update < $err) "
                "WITH m, m.name + '-' + m.uuid AS id DETACH DELETE m RETURN id",
                ok=now - ok_ttl_s,
                err=now - error_ttl_s,
            )
        ]

    def clear_error_computemanager(self, name: str, *, owner: str | None = None) -> str:
        """Remove the ERROR registration named ``name``; its id. NotFound / Conflict otherwise."""
        check_manager_name(name)
        found = self.computemanager_by_name(name)
        if found is None:
            raise NotFound(f"no compute manager named {name} is registered")
        if owner is not None and found.get("owner") not in (None, owner):
            raise Forbidden(f"compute manager {name} belongs to another identity")
        rows = self._write(
            "MATCH (m:ComputeManagerRegistration {name: $name, uuid: $uuid, status: 'ERROR'}) "
            "DETACH DELETE m RETURN 1 AS one",
            name=name,
            uuid=found["uuid"],
        )
        if not rows:
            raise Conflict(f"compute manager {name} is not in the ERROR status (it is {found['status']})")
        return f"{name}-{found['uuid']}"

    def link_computeservice(self, identifier: str, manager_id: str, *, owner: str | None = None) -> None:
        """Mark a registered service as managed by the manager of ``manager_id``'s name.

        As alchemiscale, the link is by name: the service keeps ``manager_name`` and is
        reattached when a manager of that name registers again.
        """
        name, _uuid = parse_manager_id(manager_id)
        rows = self._write(
            "MATCH (m:ComputeManagerRegistration {name: $name}) "
            "WHERE $owner IS NULL OR coalesce(m.owner, $owner) = $owner "
            "MATCH (cs:ComputeServiceRegistration {identifier: $id}) "
            "SET cs.manager_name = $name MERGE (m)-[:MANAGES]->(cs) RETURN 1 AS one",
            name=name,
            id=identifier,
            owner=owner,
        )
        if not rows:
            raise NotFound(f"no compute manager named {name} (of this identity) or no service {identifier}")
