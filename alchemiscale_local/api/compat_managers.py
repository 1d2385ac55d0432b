"""alchemiscale 0.8's compute-manager routes, for its ``AlchemiscaleComputeManagerClient``.

A manager registers under ``<name>-<uuid hex>`` (one live registration per name; ``steal``
replaces one that is not in ERROR), asks for an instruction each cycle (SHUTDOWN when its
registration is gone, SKIP when a service it manages is over the failure limit, else OK with
its services and the number of tasks a service could claim), and reports its status (OK with a
saturation, ERROR with a detail); each status report also expires managers silent for too
long. Registrations belong to the compute identity that made them, as service ids do.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException

from alchemiscale_local.backends.statestore import InvalidInput, Neo4jStore
from alchemiscale_local.backends.statestore.managers import parse_manager_id
from alchemiscale_local.settings import Settings

from .auth import TokenData, compute_token
from .compat_taskhubs import scope_of, visible_scopes
from .deps import get_settings, get_store

router = APIRouter(dependencies=[Depends(compute_token)], tags=["alchemiscale compute"])

# alchemiscale's ALCHEMISCALE_COMPUTE_API_MANAGER_EXPIRE_SECONDS(_ERROR) defaults.
MANAGER_EXPIRE_S = 3600.0
MANAGER_EXPIRE_ERROR_S = 86400.0


def require_manager(store: Neo4jStore, compute_manager_id: str, token: TokenData) -> None:
    """422 unless a manager of that id's name is registered (by the caller: else 403).

    Checked before a service registration writes anything, as alchemiscale refuses one whose
    manager it cannot find.
    """
    try:
        name, _uuid = parse_manager_id(compute_manager_id)
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from None
    found = store.computemanager_by_name(name)
    if found is None:
        raise HTTPException(422, f"no compute manager named {name} is registered")
    if found.get("owner") not in (None, token.identifier):
        raise HTTPException(403, f"compute manager {name} belongs to another identity")


def link_service(
    store: Neo4jStore, compute_service_id: str, compute_manager_id: str, token: TokenData
) -> None:
    """Link a just-registered service to its manager (MANAGES)."""
    try:
        store.link_computeservice(compute_service_id, compute_manager_id, owner=token.identifier)
    except LookupError:
        raise HTTPException(
            409,
            f"compute manager {compute_manager_id} deregistered while {compute_service_id} registered; "
            "the service is registered without a manager",
        ) from None


@router.post("/computemanager/{identifier}/register", summary="Register a compute manager")
def register(
    identifier: str,
    steal: bool = Body(False, embed=True),
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    return store.register_computemanager(identifier, owner=token.identifier, steal=steal)


@router.post("/computemanager/{identifier}/deregister", summary="Deregister (ERROR registrations stay)")
def deregister(
    identifier: str, token: TokenData = Depends(compute_token), store: Neo4jStore = Depends(get_store)
) -> str:
    return store.deregister_computemanager(identifier, owner=token.identifier)


@router.post("/computemanager/{identifier}/instruction", summary="OK, SKIP or SHUTDOWN for this cycle")
def instruction(
    identifier: str,
    scopes: list[Any] = Body([], embed=True),
    protocols: list[str] | None = Body(None, embed=True),
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    requested = [scope_of(s) for s in scopes] or [scope_of({})]
    return store.computemanager_instruction(
        identifier,
        scopes=visible_scopes(token, requested),
        protocols=protocols or None,
        max_failures=settings.api.max_failures,
        failure_window_s=settings.api.failure_window_s,
        owner=token.identifier,
    )


@router.post("/computemanager/{identifier}/status", summary="Report OK (saturation) or ERROR (detail)")
def status(
    identifier: str,
    status: str = Body(),
    detail: str | None = Body(None),
    saturation: float | None = Body(None),
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    manager = store.update_computemanager_status(
        identifier, status, detail=detail, saturation=saturation, owner=token.identifier
    )
    store.expire_computemanagers(MANAGER_EXPIRE_S, MANAGER_EXPIRE_ERROR_S)
    return manager


@router.post("/computemanager/{identifier}/clear_error", summary="Remove the ERROR registration of a name")
def clear_error(
    identifier: str, token: TokenData = Depends(compute_token), store: Neo4jStore = Depends(get_store)
) -> None:
    store.clear_error_computemanager(identifier, owner=token.identifier)
