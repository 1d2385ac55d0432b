"""A compute service id belongs to the compute identity that first registered it."""

from __future__ import annotations

import threading

from fastapi import HTTPException, Request

from alchemiscale_local.backends.statestore import Neo4jStore

from .auth import TokenData

_lock = threading.Lock()


def require_owner(request: Request, store: Neo4jStore, identifier: str, token: TokenData) -> None:
    """403 unless ``identifier`` is unbound (never registered) or bound to the caller.

    Bindings never change once made, so each is read from Neo4j once per app.
    """
    state = request.app.state
    with _lock:
        owners: dict[str, str] | None = getattr(state, "service_owners", None)
        if owners is None:
            owners = state.service_owners = {}
        owner = owners.get(identifier)
    if owner is None:
        owner = store.computeservice_owner(identifier)
        if owner is not None:
            with _lock:
                owners[identifier] = owner
    if owner is not None and owner != token.identifier:
        raise HTTPException(403, f"compute service {identifier} belongs to another identity; use your own id")
