"""User routes for tasks: creation, status, priority, actioning, status summaries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException

from alchemiscale_local.backends.statestore import InvalidTransition, Neo4jStore, NotFound
from alchemiscale_local.models import Scope, ScopedKey

from .auth import TokenData, parse_scope_param, user_token
from .deps import get_store
from .keys import ExtendsKey, NetworkKey, TaskKey, TransformationKey, need
from .routes_networks import visible_scopes
from .schemas import (
    ActionBody,
    ActionedBody,
    BulkActionedBody,
    BulkCreateTasksBody,
    CreateTasksBody,
    LooseTaskKeysBody,
    NetworksBody,
    TaskKeysBody,
    TaskPriorityBody,
    TaskStatusBody,
)

router = APIRouter(dependencies=[Depends(user_token)])


def _visible_or_none(token: TokenData, keys: list[ScopedKey | None]) -> list[ScopedKey | None]:
    """Keys the token may see; None in place of unreadable or out-of-scope ones (bulk getters)."""
    return [sk if sk is not None and token.allows(sk.scope) else None for sk in keys]


def _weights_or_keys(
    weights: dict[str, float], body: ActionedBody | BulkActionedBody | None
) -> dict[str, float] | list[str]:
    """``{key: weight}``, or alchemiscale's list of keys when the body says ``task_weights: false``."""
    return weights if body is None or body.task_weights else list(weights)


def _fill(keys: list[ScopedKey | None], values: list) -> list:
    it = iter(values)
    return [next(it) if k is not None else None for k in keys]


@router.post("/transformations/{transformation}/tasks", summary="Create tasks on a transformation")
def create_tasks(
    transformation: TransformationKey,
    body: CreateTasksBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str]:
    ext = need(token, body.extends) if body.extends else None
    return store.create_tasks([transformation] * body.count, [ext] * body.count, creator=token.identifier)


@router.post("/bulk/transformations/tasks/create", summary="One task per listed transformation")
def bulk_create_tasks(
    body: BulkCreateTasksBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    tfs = [need(token, t) for t in body.transformations]
    exts = [need(token, e) if e else None for e in body.extends] if body.extends else None
    return store.create_tasks(tfs, exts, creator=token.identifier)


@router.get("/transformations/{transformation}/tasks", summary="Tasks of a transformation (list or graph)")
def transformation_tasks(
    transformation: TransformationKey,
    extends: ExtendsKey,
    status: str | None = None,
    return_as: str = "list",
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str] | dict[str, str | None]:
    """``return_as=graph``: ``{task: the task it extends, or null}`` (alchemiscale's)."""
    if return_as not in ("list", "graph"):
        raise HTTPException(400, f"`return_as` takes 'list' or 'graph', not '{return_as}'")
    tasks = store.get_transformation_tasks(transformation, extends=extends, status=status)
    if return_as == "list":
        return tasks
    # keys read from the graph, parsed to pass back in
    rows = store.get_tasks([ScopedKey.from_str(k) for k in tasks])
    return {k: (row or {}).get("extends") for k, row in zip(tasks, rows, strict=True)}


@router.get("/transformations/{transformation}/status")
def transformation_status(
    transformation: TransformationKey,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> dict[str, int]:
    return store.get_transformation_status(transformation)


@router.get("/tasks", summary="Query tasks by scope (or org/campaign/project) and status")
def query_tasks(
    status: str | None = None,
    scopes: list[Scope] = Depends(visible_scopes),
    store: Neo4jStore = Depends(get_store),
) -> list[str]:
    out: set[str] = set()
    for sc in scopes:
        out.update(store.query_tasks(scope=str(sc), status=status))
    return sorted(out)


@router.get("/tasks/{task}/transformation")
def task_transformation(
    task: TaskKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> str:
    return store.get_task_transformation(task)[0]


@router.get("/tasks/{task}/networks")
def task_networks(
    task: TaskKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str]:
    return store.get_task_networks(task)


@router.post("/tasks/{task}/networks/actioned")
def task_actioned_networks(
    task: TaskKey,
    body: ActionedBody | None = None,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> dict[str, float] | list[str]:
    return _weights_or_keys(store.get_task_actioned_networks(task), body)


@router.get("/tasks/{task}/status")
def task_status(
    task: TaskKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> str:
    status = store.get_task_status([task])[0]
    if status is None:
        raise HTTPException(404, f"no task {task}")
    return status


@router.post("/bulk/tasks/status/get")
def bulk_task_status(
    body: LooseTaskKeysBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str | None]:
    keys = _visible_or_none(token, body.tasks)
    return _fill(keys, store.get_task_status([k for k in keys if k is not None]))


@router.post("/bulk/tasks/status/set", summary="Set tasks to waiting, invalid or deleted")
def bulk_set_task_status(
    body: TaskStatusBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str | None]:
    """As alchemiscale: None in place of each task that does not exist or cannot take the status."""
    keys = [need(token, t) for t in body.tasks]
    try:
        return store.set_task_status(keys, body.status)
    except (NotFound, InvalidTransition):
        pass  # some task cannot change: set the others one by one (the store is all-or-nothing)
    return [_set_one(store, k, body.status) for k in keys]


def _set_one(store: Neo4jStore, key: ScopedKey, status: str) -> str | None:
    try:
        return store.set_task_status([key], status)[0]
    except (NotFound, InvalidTransition):
        return None


@router.post("/tasks/{task}/status", summary="Set one task's status; its key, or null if it cannot")
def set_task_status(
    task: TaskKey,
    status: Annotated[str, Body()],
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> str | None:
    return _set_one(store, task, status)


@router.post("/bulk/tasks/priority/get")
def bulk_task_priority(
    body: LooseTaskKeysBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[int | None]:
    keys = _visible_or_none(token, body.tasks)
    return _fill(keys, store.get_task_priority([k for k in keys if k is not None]))


@router.post("/bulk/tasks/priority/set")
def bulk_set_task_priority(
    body: TaskPriorityBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[str | None]:
    return store.set_task_priority([need(token, t) for t in body.tasks], body.priority)


@router.get("/networks/{network}/tasks")
def network_tasks(
    network: NetworkKey,
    status: str | None = None,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str]:
    return store.get_network_tasks(network, status=status)


@router.post("/networks/{network}/tasks/action", summary="Action tasks on the network's hub")
def action_tasks(
    network: NetworkKey,
    body: ActionBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str | None]:
    return store.action_tasks([need(token, t) for t in body.tasks], network, body.weight)


@router.post("/networks/{network}/tasks/cancel")
def cancel_tasks(
    network: NetworkKey,
    body: TaskKeysBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list[str | None]:
    return store.cancel_tasks([need(token, t) for t in body.tasks], network)


@router.post("/networks/{network}/tasks/actioned", summary="Actioned tasks with their weights")
def actioned_tasks(
    network: NetworkKey,
    body: ActionedBody | None = None,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> dict[str, float] | list[str]:
    return _weights_or_keys(store.get_network_actioned_tasks(network), body)


@router.post("/bulk/networks/tasks/actioned", summary="Actioned tasks of each network, in input order")
def bulk_actioned_tasks(
    body: BulkActionedBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[Any]:
    return [_weights_or_keys(store.get_network_actioned_tasks(need(token, n)), body) for n in body.networks]


@router.get("/networks/{network}/status")
def network_status(
    network: NetworkKey, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> dict[str, int]:
    return store.get_network_status([network])[0]


@router.post("/bulk/networks/status")
def bulk_network_status(
    body: NetworksBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[dict[str, int]]:
    return store.get_network_status([need(token, n) for n in body.networks])


@router.get("/scopes/{scope}/status", summary="Task status counts over the visible sub-scopes")
def scope_status(
    scope: str,
    network_state: str | None = None,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> dict[str, int]:
    totals: dict[str, int] = {}
    for sc in token.visible(parse_scope_param(scope)):
        for status, n in store.get_scope_status(str(sc), network_state=network_state).items():
            totals[status] = totals.get(status, 0) + n
    return totals
