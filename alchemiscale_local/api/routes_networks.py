"""User routes for networks, transformations, chemical systems and restart patterns."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.models import InvalidIdentifier, Scope, ScopedKey, ScopePartTooLong

from .auth import TokenData, parse_scope_param, user_token
from .deps import get_store
from .keys import ChemicalSystemKey, NetworkKey, TransformationKey, need
from .middleware import json_body
from .schemas import (
    MaxRetriesBody,
    NetworksBody,
    NetworkStatesBody,
    NetworkSubmission,
    NetworkWeightsBody,
    PatternsBody,
    RestartPatternsBody,
    WeightBody,
)

router = APIRouter(dependencies=[Depends(user_token)])

JSON = "application/json"


def _chain_response(store: Neo4jStore, sk: ScopedKey) -> Response:
    return Response(store.get_keyed_chain_json(sk), media_type=JSON)


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
def _body_scope(raw: object) -> Scope:
    """The scope of a submission: ``'org-campaign-project'`` or alchemiscale's ``{org, campaign, project}``."""
    try:
        if isinstance(raw, str):
            scope = Scope.from_str(raw)
        elif isinstance(raw, dict) and set(raw) <= {"org", "campaign", "project"}:
            scope = Scope.from_dict(raw)
        else:
            scope = None
    except ScopePartTooLong as exc:
        # Well-formed but over the object store's limit: refused here (422), not at the
        # first result upload, where a service would rerun the task forever.
        raise HTTPException(422, str(exc)) from None
    except (InvalidIdentifier, ValueError) as exc:
        raise HTTPException(400, str(exc)) from None
    if scope is None or not scope.specific:
        raise HTTPException(
            400, "scope must be a specific 'org-campaign-project' string or {org, campaign, project} object"
        )
    return scope


@router.post("/networks", summary="Submit a network keyed chain into a scope")
async def create_network(
    request: Request, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> dict:
    """Answers alchemiscale's ScopedKey object ``{gufe_key, org, campaign, project}``, plus
    ``network`` (the key's string) and the counts of objects created, which its client ignores."""
    try:
        body = json_body(await request.body())
    except ValueError as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or "network" not in body or "scope" not in body:
        raise HTTPException(
            422, "body must be an object {network: <keyed chain>, scope: 'org-campaign-project', state?}"
        )
    submission = NetworkSubmission.model_validate(body)
    scope = _body_scope(submission.scope)
    token.require(scope)
    state = submission.state or "active"
    sk, stats = await run_in_threadpool(store.assemble_network, submission.network, scope, state=state)
    sk = ScopedKey.coerce(sk)
    return {**sk.to_dict(), "network": str(sk), **stats}


_STATES = ("active", "inactive", "invalid", "deleted")


@router.get("/networks", summary="Query networks by name regex, scope and state regex")
def query_networks(
    scopes: list[Scope] = Depends(visible_scopes),
    store: Neo4jStore = Depends(get_store),
    name: str | None = None,
    state: str | None = None,
) -> list[str]:
    """``state`` is a regex over the states, as alchemiscale's (absent or empty: any state)."""
    if not state or state in _STATES:
        return _union(scopes, lambda sc: store.query_networks(name=name, scope=sc, state=state or None))
    try:
        pattern = re.compile(state)
    except re.error as exc:
        raise HTTPException(400, f"state {state!r} is not a valid regex: {exc}") from None
    wanted = [st for st in _STATES if pattern.fullmatch(st)]
    return _union(
        scopes, lambda sc: [k for st in wanted for k in store.query_networks(name=name, scope=sc, state=st)]
    )


@router.get("/networks/{network}", summary="A network as a keyed chain")
def get_network(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> Response:
    return _chain_response(store, network)


@router.get("/networks/{network}/transformations")
def network_transformations(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_network_transformations(network)


@router.get("/networks/{network}/chemicalsystems")
def network_chemicalsystems(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_network_chemicalsystems(network)


@router.get("/networks/{network}/weight")
def get_network_weight(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> float | None:
    return store.get_network_weight([network])[0]


@router.post("/networks/{network}/weight", summary="Set the hub weight: a bare number or {weight}")
def set_network_weight(
    network: NetworkKey,
    body: Annotated[float | WeightBody, Body()],
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    weight = body.weight if isinstance(body, WeightBody) else body
    if not 0 <= weight <= 1:
        raise HTTPException(422, f"weight {weight!r} must be between 0 and 1")
    store.set_network_weight([network], [weight])
    return str(network)


@router.post("/bulk/networks/weight/get")
def bulk_get_weight(
    body: NetworksBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[float | None]:
    return store.get_network_weight([need(token, n) for n in body.networks])


@router.post("/bulk/networks/weight/set", summary="Set hub weights; answers the networks' keys")
def bulk_set_weight(
    body: NetworkWeightsBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    keys = [need(token, n) for n in body.networks]
    store.set_network_weight(keys, body.weights)
    return [str(k) for k in keys]


@router.post("/bulk/networks/state/set")
def bulk_set_state(
    body: NetworkStatesBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str | None]:
    return store.set_network_state([need(token, n) for n in body.networks], body.states)


@router.post("/bulk/networks/state/get")
def bulk_get_state(
    body: NetworksBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str | None]:
    return store.get_network_state([need(token, n) for n in body.networks])


# -- restart patterns -----------------------------------------------------------------------
@router.post("/networks/{network}/restartpatterns/add")
def add_restart_patterns(
    network: NetworkKey,
    body: RestartPatternsBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> None:
    store.add_task_restart_patterns(network, body.patterns, body.num_allowed_restarts)


@router.post("/networks/{network}/restartpatterns/remove")
def remove_restart_patterns(
    network: NetworkKey,
    body: PatternsBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> None:
    store.remove_task_restart_patterns(network, body.patterns)


def _clear(network: ScopedKey, store: Neo4jStore) -> list[str]:
    store.clear_task_restart_patterns(network)
    return [str(network)]


@router.get(
    "/networks/{network}/restartpatterns/clear", summary="Clear restart patterns (alchemiscale's GET)"
)
def clear_restart_patterns_get(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return _clear(network, store)


@router.post("/networks/{network}/restartpatterns/clear", summary="Clear restart patterns")
def clear_restart_patterns(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return _clear(network, store)


@router.post("/networks/{network}/restartpatterns/maxretries")
def set_restart_max_retries(
    network: NetworkKey,
    body: MaxRetriesBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> None:
    store.set_task_restart_patterns_max_retries(network, body.patterns, body.count)


@router.post(
    "/bulk/networks/restartpatterns/get", summary="Restart patterns: {network: [[pattern, allowed], ...]}"
)
def get_restart_patterns(
    body: NetworksBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for n in body.networks:
        out[str(n)] = sorted(store.get_task_restart_patterns(need(token, n)).items())
    return out


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
    transformation: TransformationKey,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> Response:
    return _chain_response(store, transformation)


@router.get("/transformations/{transformation}/networks")
def transformation_networks(
    transformation: TransformationKey,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str]:
    return store.get_transformation_networks(transformation)


@router.get("/transformations/{transformation}/chemicalsystems")
def transformation_chemicalsystems(
    transformation: TransformationKey,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str]:
    return store.get_transformation_chemicalsystems(transformation)


@router.get("/chemicalsystems")
def query_chemicalsystems(
    scopes: list[Scope] = Depends(visible_scopes),
    store: Neo4jStore = Depends(get_store),
    name: str | None = None,
) -> list[str]:
    return _union(scopes, lambda sc: store.query_chemicalsystems(name=name, scope=sc))


@router.get("/chemicalsystems/{chemicalsystem}", summary="A chemical system as a keyed chain")
def get_chemicalsystem(
    chemicalsystem: ChemicalSystemKey,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> Response:
    return _chain_response(store, chemicalsystem)


@router.get("/chemicalsystems/{chemicalsystem}/networks")
def chemicalsystem_networks(
    chemicalsystem: ChemicalSystemKey,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str]:
    return store.get_chemicalsystem_networks(chemicalsystem)


@router.get("/chemicalsystems/{chemicalsystem}/transformations")
def chemicalsystem_transformations(
    chemicalsystem: ChemicalSystemKey,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str]:
    return store.get_chemicalsystem_transformations(chemicalsystem)
