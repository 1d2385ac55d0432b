"""Liveness, health, info and identity routes shared by users and compute services."""

from __future__ import annotations

import platform

import fastapi
import neo4j
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse

from alchemiscale_local import __version__
from alchemiscale_local.backends.objectstore import ObjectStore
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.settings import Settings, masked_dump

from .auth import TokenData, any_token
from .deps import get_objects, get_settings, get_store
from .keys import AnyKey, need

router = APIRouter()


@router.get("/ping", summary="Liveness (no authentication)")
def ping() -> dict:
    return {"api": "alchemiscale-local", "version": __version__}


@router.get("/check", summary="State store and object store reachable (503 if not)")
def check(
    _: TokenData = Depends(any_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
) -> JSONResponse:
    problems = {}
    for name, probe in (("statestore", store.check), ("objectstore", objects.check)):
        try:
            probe()
        except Exception as exc:  # any failure of a dependency is a 503, with its message
            problems[name] = str(exc)
    if problems:
        return JSONResponse({"detail": problems}, status_code=503, headers={"Retry-After": "2"})
    return JSONResponse({"statestore": "ok", "objectstore": "ok"})


@router.get("/info", summary="Versions and non-secret settings")
def info(_: TokenData = Depends(any_token), settings: Settings = Depends(get_settings)) -> dict:
    public = masked_dump(settings)
    return {
        "version": __version__,
        "python": platform.python_version(),
        "fastapi": fastapi.__version__,
        "neo4j_driver": neo4j.__version__,
        "neo4j_server": settings.neo4j.version,
        "objectstore": public["objectstore"]["url"],
        "api": public["api"],
    }


@router.get("/identities/{identifier}/scopes", summary="Scopes of an identity")
def identity_scopes(identifier: str, token: TokenData = Depends(any_token)) -> list[str]:
    if identifier != token.identifier:
        raise HTTPException(403, "an identity may list only its own scopes")
    return sorted(str(s) for s in token.scopes)


@router.get("/exists/{scoped_key}", summary="Whether a gufe object or task exists")
def exists(scoped_key: AnyKey, store: Neo4jStore = Depends(get_store)) -> bool:
    if scoped_key.qualname == "Task":
        return store.get_task_status([scoped_key])[0] is not None
    return store.object_exists(scoped_key)


__all__ = ["need", "router"]
