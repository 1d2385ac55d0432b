"""alchemiscale 0.8's TaskHub routes: ``GET /taskhubs`` and ``POST /taskhubs/{sk}/claim``.

A TaskHub is a network's hub: its ScopedKey is alchemiscale's (``TaskHub-<md5 of the network
key>-<scope>``, see ``hub_key``), it carries the network's ScopedKey and the network's weight.
With ``return_gufe`` alchemiscale answers ``{hub key: gufe JSON of the TaskHub}``; the server
does not import gufe, so that JSON is written here in gufe's dict form, which alchemiscale's
client turns into its own ``TaskHub`` (``GufeTokenizable.from_dict``).

A claim from one hub goes through the checks of ``POST /claim`` (service bound to the caller,
the failure gate, the caller's scopes) and the store's claim algorithm narrowed to that hub.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.models import InvalidIdentifier, Scope
from alchemiscale_local.settings import Settings

from .auth import TokenData, compute_token
from .deps import get_settings, get_store
from .keys import ComputeAnyKey
from .owners import require_owner

router = APIRouter(dependencies=[Depends(compute_token)], tags=["alchemiscale compute"])

# Where alchemiscale's client finds the class when it decodes a TaskHub.
TASKHUB_MODULE = "alchemiscale.storage.models"


def taskhub_gufe_json(network: str, weight: float) -> str:
    """gufe's ``to_dict`` of alchemiscale's ``TaskHub(network, weight)``, as JSON text."""
    return json.dumps(
        {
            "network": network,
            "weight": weight,
            "__qualname__": "TaskHub",
            "__module__": TASKHUB_MODULE,
            ":version:": 1,
        }
    )


def scope_of(value: Any) -> Scope:
    """A Scope from alchemiscale's ``{org, campaign, project}`` (null or '*': any) or our string."""
    try:
        if isinstance(value, str):
            return Scope.from_str(value)
        if isinstance(value, dict) and set(value) <= {"org", "campaign", "project"}:
            return Scope(value.get("org"), value.get("campaign"), value.get("project"))
    except (InvalidIdentifier, ValueError, TypeError) as exc:
        raise HTTPException(400, f"invalid scope {value!r}: {exc}") from None
    raise HTTPException(400, f"a scope must be an object {{org, campaign, project}}, not {value!r}")


def visible_scopes(token: TokenData, requested: list[Scope]) -> list[Scope]:
    """The parts of the requested scopes the token may see, each once."""
    out: list[Scope] = []
    for scope in requested:
        out.extend(token.visible(scope))
    return list(dict.fromkeys(out))


@router.get("/taskhubs", summary="TaskHubs in the caller's scopes (alchemiscale's query_taskhubs)")
def query_taskhubs(
    return_gufe: bool = False,
    org: str | None = None,
    campaign: str | None = None,
    project: str | None = None,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str] | dict[str, str]:
    scopes = visible_scopes(token, [scope_of({"org": org, "campaign": campaign, "project": project})])
    hubs = store.query_taskhubs(scopes)
    if return_gufe:
        return {h["taskhub"]: taskhub_gufe_json(h["network"], h["weight"]) for h in hubs}
    return [h["taskhub"] for h in hubs]


class ClaimHubBody(BaseModel):
    compute_service_id: str = Field(min_length=1, max_length=200)
    count: int = Field(1, ge=1, le=1000)
    protocols: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=1000)] | None
    ) = None


@router.post(
    "/taskhubs/{scoped_key}/claim",
    summary="Claim up to count tasks from one TaskHub; null for each one not claimed",
)
def claim_taskhub_tasks(
    scoped_key: ComputeAnyKey,
    request: Request,
    raw: dict[str, Any] = Body(
        openapi_examples={"claim": {"value": {"compute_service_id": "svc-1", "count": 1}}}
    ),
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    settings: Settings = Depends(get_settings),
) -> list[str | None]:
    sk = scoped_key
    if sk.qualname != "TaskHub":
        raise HTTPException(400, f"{sk} is not a TaskHub (GET /taskhubs lists them)")
    try:  # after the key's scope check, so an out-of-scope caller learns nothing more
        body = ClaimHubBody.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    require_owner(request, store, body.compute_service_id, token)
    padding: list[str | None] = [None] * body.count
    # The failure gate of POST /claim; a denied service gets nothing (alchemiscale's client
    # reads this route's answer as a list, so it cannot be null here).
    if not store.computeservice_can_claim(
        body.compute_service_id, settings.api.max_failures, settings.api.failure_window_s
    ):
        return padding
    claimed = store.claim_taskhub_tasks(body.compute_service_id, sk, body.count, body.protocols)
    return [*claimed, *padding[len(claimed) :]]
