"""User routes for networks, transformations, chemical systems and restart patterns."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.models import InvalidIdentifier, Scope, ScopePartTooLong

from .auth import TokenData, parse_scope_param, user_token
from .deps import get_store
from .middleware import json_body
from .schemas import (
    NetworksBody,
    NetworkStatesBody,
    NetworkWeightsBody,
    PatternsBody,
    RestartPatternsBody,
    WeightBody,
)

router = APIRouter(dependencies=[Depends(user_token)])

JSON = "application/json"


def _chain_response(store: Neo4jStore, token: TokenData, key: str) -> Response:
    sk = token.require_key(key)
    return Response(store.get_keyed_chain_json(str(sk)), media_type=JSON)


def visible_scopes(
    token: TokenData = Depends(user_token),
    scope: str | None = None,
    org: str | None = None,
    campaign: str | None = None,
    project: str | None = None,
) -> list[Scope]:
    """The requested scope (``scope`` or its parts), cut down to what the token may see."""
    if scope:
        requested = parse_scope_param(scope)
    else:
        try:
            requested = Scope(org=org, campaign=campaign, project=project)
        except (InvalidIdentifier, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None
    return token.visible(requested)


def _union(scopes: list[Scope], query: Callable[[Scope], list[str]]) -> list[str]:
    """One query per visible scope, merged."""
    out: set[str] = set()
    for sc in scopes:
        out.update(query(sc))
    return sorted(out)


# -- networks -------------------------------------------------------------------------
@router.post("/networks", summary="Submit a network keyed chain into a scope")
async def create_network(
    request: Request, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> dict:
    try:
        body = json_body(await request.body())
    except ValueError as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or "network" not in body or "scope" not in body:
        raise HTTPException(
            422, "body must be an object {network: <keyed chain>, scope: 'org-campaign-project', state?}"
        )
    try:
        scope = Scope.from_str(body["scope"]) if isinstance(body["scope"], str) else None
    except ScopePartTooLong as exc:
        # Well-formed but over the object store's limit: refused here (422), not at the
        # first result upload, where a service would rerun the task forever.
        raise HTTPException(422, str(exc)) from None
    except (InvalidIdentifier, ValueError) as exc:
        raise HTTPException(400, str(exc)) from None
    if scope is None or not scope.specific:
        raise HTTPException(400, "scope must be a specific 'org-campaign-project' string")
    token.require(scope)
    state = body.get("state", "active")
    sk, stats = await run_in_threadpool(store.assemble_network, body["network"], scope, state=state)
    return {"network": str(sk), **stats}


@router.get("/networks", summary="Query networks by name regex, scope and state")
def query_networks(
    scopes: list[Scope] = Depends(visible_scopes),
    store: Neo4jStore = Depends(get_store),
    name: str | None = None,
    state: str | None = "active",
) -> list[str]:
    return _union(scopes, lambda sc: store.query_networks(name=name, scope=sc, state=state or None))


@router.get("/networks/{network}", summary="A network as a keyed chain")
def get_network(
    network: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> Response:
    return _chain_response(store, token, network)


@router.get("/networks/{network}/transformations")
def network_transformations(
    network: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_network_transformations(str(token.require_key(network)))


@router.get("/networks/{network}/chemicalsystems")
def network_chemicalsystems(
    network: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_network_chemicalsystems(str(token.require_key(network)))


@router.get("/networks/{network}/weight")
def get_network_weight(
    network: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> float | None:
    return store.get_network_weight([str(token.require_key(network))])[0]


@router.post("/networks/{network}/weight")
def set_network_weight(
    network: str,
    body: WeightBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> None:
    store.set_network_weight([str(token.require_key(network))], [body.weight])


@router.post("/bulk/networks/weight/get")
def bulk_get_weight(
    body: NetworksBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[float | None]:
    return store.get_network_weight([str(token.require_key(n)) for n in body.networks])


@router.post("/bulk/networks/weight/set")
def bulk_set_weight(
    body: NetworkWeightsBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> None:
    store.set_network_weight([str(token.require_key(n)) for n in body.networks], body.weights)


@router.post("/bulk/networks/state/set")
def bulk_set_state(
    body: NetworkStatesBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str | None]:
    return store.set_network_state([str(token.require_key(n)) for n in body.networks], body.states)


@router.post("/bulk/networks/state/get")
def bulk_get_state(
    body: NetworksBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str | None]:
    return store.get_network_state([str(token.require_key(n)) for n in body.networks])


# -- restart patterns -----------------------------------------------------------------------
@router.post("/networks/{network}/restartpatterns/add")
def add_restart_patterns(
    network: str,
    body: RestartPatternsBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> None:
    store.add_task_restart_patterns(str(token.require_key(network)), body.patterns, body.num_allowed_restarts)


@router.post("/networks/{network}/restartpatterns/remove")
def remove_restart_patterns(
    network: str,
    body: PatternsBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> None:
    store.remove_task_restart_patterns(str(token.require_key(network)), body.patterns)


# A POST, not alchemiscale's state-changing GET.
@router.post("/networks/{network}/restartpatterns/clear")
def clear_restart_patterns(
    network: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> None:
    store.clear_task_restart_patterns(str(token.require_key(network)))


@router.post("/networks/{network}/restartpatterns/maxretries")
def set_restart_max_retries(
    network: str,
    body: RestartPatternsBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> None:
    store.set_task_restart_patterns_max_retries(
        str(token.require_key(network)), body.patterns, body.num_allowed_restarts
    )


@router.post("/bulk/networks/restartpatterns/get")
def get_restart_patterns(
    body: NetworksBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> dict[str, dict[str, int]]:
    return {n: store.get_task_restart_patterns(str(token.require_key(n))) for n in body.networks}


# -- transformations and chemical systems --------------------------------------------------
@router.get("/transformations")
def query_transformations(
    scopes: list[Scope] = Depends(visible_scopes),
    store: Neo4jStore = Depends(get_store),
    name: str | None = None,
) -> list[str]:
    return _union(scopes, lambda sc: store.query_transformations(name=name, scope=sc))


@router.get("/transformations/{transformation}", summary="A transformation as a keyed chain")
def get_transformation(
    transformation: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> Response:
    return _chain_response(store, token, transformation)


@router.get("/transformations/{transformation}/networks")
def transformation_networks(
    transformation: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_transformation_networks(str(token.require_key(transformation)))


@router.get("/transformations/{transformation}/chemicalsystems")
def transformation_chemicalsystems(
    transformation: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_transformation_chemicalsystems(str(token.require_key(transformation)))


@router.get("/chemicalsystems")
def query_chemicalsystems(
    scopes: list[Scope] = Depends(visible_scopes),
    store: Neo4jStore = Depends(get_store),
    name: str | None = None,
) -> list[str]:
    return _union(scopes, lambda sc: store.query_chemicalsystems(name=name, scope=sc))


@router.get("/chemicalsystems/{chemicalsystem}", summary="A chemical system as a keyed chain")
def get_chemicalsystem(
    chemicalsystem: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> Response:
    return _chain_response(store, token, chemicalsystem)


@router.get("/chemicalsystems/{chemicalsystem}/networks")
def chemicalsystem_networks(
    chemicalsystem: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_chemicalsystem_networks(str(token.require_key(chemicalsystem)))


@router.get("/chemicalsystems/{chemicalsystem}/transformations")
def chemicalsystem_transformations(
    chemicalsystem: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_chemicalsystem_transformations(str(token.require_key(chemicalsystem)))
