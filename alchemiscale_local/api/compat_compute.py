"""alchemiscale 0.8's compute API on its own paths, so its ``AlchemiscaleComputeClient`` and
``SynchronousComputeService`` work unchanged against this deployment.

alchemiscale's clients build every URL with ``urljoin(api_url, "/path")``, which drops any path
prefix of ``api_url``; its compute routes therefore live at the root of the same app (they do not
collide with the user API: ``/computeservice/...``, ``/claim``, ``/taskhubs``,
``/tasks/{sk}/transformation/gufe``, ``POST /tasks/{sk}/results``). Point a service's
``api_url`` at the deployment's URL itself. ``/token``, ``/info``, ``/check`` and
``/identities/{id}/scopes`` are the app's own and already speak alchemiscale's format.

The same state-store calls as :mod:`routes_compute` do the work: service ids are bound to the
identity that registered them, results are validated before they complete a task. gufe is not
imported: the bytes alchemiscale's client sends are unwrapped from gufe's JSON codec by hand.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import zstandard
from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from alchemiscale_local.backends.objectstore import (
    InvalidPath,
    ObjectExists,
    ObjectStore,
    ObjectStoreUnavailable,
    ObjectTooLarge,
)
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.models import ComputeServiceRegistration, ResultRef
from alchemiscale_local.runtimes.pdr import summarize
from alchemiscale_local.settings import Settings

from . import compat_managers, routes_compute
from .auth import TokenData, any_token, compute_token, parse_scope_param
from .deps import get_objects, get_settings, get_store
from .keys import AnyKindTaskKey, ComputeTaskKey
from .owners import require_owner
from .result_check import MAX_DECOMPRESSED, ResultRejected, check_result

log = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(compute_token)], tags=["alchemiscale compute"])

# Paths both of alchemiscale's clients use: included before the user routes, so compute
# identities reach them too (the answer is the same for both).
shared_router = APIRouter(tags=["alchemiscale compute"])

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@shared_router.get("/tasks/{task}/transformation", summary="The task's transformation ScopedKey")
def task_transformation_any_kind(
    task: AnyKindTaskKey, token: TokenData = Depends(any_token), store: Neo4jStore = Depends(get_store)
) -> str:
    return store.get_task_transformation(task)[0]


def _scope_text(scope: Any) -> str:
    """alchemiscale sends scopes as ``{org, campaign, project}`` with null for a wildcard."""
    if isinstance(scope, str):
        return scope
    if not isinstance(scope, dict):
        raise HTTPException(422, f"a scope must be an object {{org, campaign, project}}, not {scope!r}")
    return "-".join(scope.get(part) or "*" for part in ("org", "campaign", "project"))


@router.post("/computeservice/{compute_service_id}/register")
def register(
    compute_service_id: str,
    request: Request,
    compute_manager_id: str | None = Body(None, embed=True),
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    require_owner(request, store, compute_service_id, token)
    try:
        reg = ComputeServiceRegistration(
            identifier=compute_service_id,
            hostname=request.client.host if request.client else "unknown",
            pid=0,
            runtimes=["alchemiscale"],
        )
    except ValueError as exc:
        raise HTTPException(422, f"invalid compute service id {compute_service_id!r}: {exc}") from None
    if compute_manager_id:  # refused before anything is written when the manager is unknown
        compat_managers.require_manager(store, compute_manager_id, token)
    registered = store.register_computeservice(reg, owner=token.identifier)
    if compute_manager_id:
        compat_managers.link_service(store, registered, compute_manager_id, token)
    return registered


@router.post("/computeservice/{compute_service_id}/deregister")
def deregister(
    compute_service_id: str,
    request: Request,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    return routes_compute.deregister(compute_service_id, request, token, store)  # one implementation


@router.post("/computeservice/{compute_service_id}/heartbeat")
def heartbeat(
    compute_service_id: str,
    request: Request,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    return routes_compute.heartbeat(compute_service_id, request, token, store)


@router.post("/claim")
def claim(
    request: Request,
    scopes: list[Any] = Body(),
    compute_service_id: str = Body(),
    count: int = Body(ge=1, le=1000),
    scopes_exclude: list[Any] | None = Body(None),
    protocols: list[str] | None = Body(None),
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    settings: Settings = Depends(get_settings),
) -> list[str | None] | None:
    """Claim up to ``count`` tasks in ``scopes``; null when the service is denied for failures."""
    require_owner(request, store, compute_service_id, token)
    visible = []
    for scope in scopes:
        visible.extend(token.visible(parse_scope_param(_scope_text(scope))))
    exclude = [parse_scope_param(_scope_text(s)) for s in scopes_exclude or []]
    # One read does the failure gate, the held tasks and the candidates; null when denied.
    claimed = store.claim_for_service(
        compute_service_id,
        count,
        list(dict.fromkeys(visible)),
        protocols,
        include_held=True,
        scopes_exclude=exclude,
        max_failures=settings.api.max_failures,
        window_s=settings.api.failure_window_s,
    )
    if claimed is None:
        return None
    return claimed + [None] * (count - len(claimed))


@router.get("/tasks/{task}/transformation/gufe")
def retrieve_task_transformation(
    task: ComputeTaskKey,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
) -> Response:
    """``[transformation keyed chain, extended result as latin-1 zstd text or null]``."""
    sk = task
    info = store.get_tasks([sk])[0]
    if info is None:
        raise HTTPException(404, f"no task {sk}")
    pdr = None
    if info["extends"]:
        refs = store.get_task_results(info["extends"], ok=True)
        if refs:
            with objects.open_result(refs[-1]["location"], refs[-1]["sha256"]) as fh:
                pdr = fh.read().decode("latin-1")
    chain = store.get_keyed_chain_json(info["transformation"])
    # The stored chain is JSON already: splice it in rather than parse and re-encode it.
    return Response("[" + chain + ", " + json.dumps(pdr) + "]", media_type="application/json")


def _unwrap_result(body: bytes) -> bytes:
    """The zstd keyed-chain bytes inside alchemiscale's ``{"protocoldagresult": ...}`` body.

    gufe's JSON codec sends bytes as ``{"latin-1": text}``; gufe >= 1.10 zstd-compresses the
    bytes first (so the result is zstd twice), older gufe does not.
    """
    try:
        doc = json.loads(body)
        field = doc["protocoldagresult"]
        raw = field["latin-1"].encode("latin-1") if isinstance(field, dict) else field.encode("latin-1")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise ResultRejected(
            "the body must be JSON {protocoldagresult: <gufe-encoded bytes>, compute_service_id}"
        ) from None
    if not raw.startswith(ZSTD_MAGIC):
        raise ResultRejected("protocoldagresult must be zstd-compressed keyed-chain JSON")
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as reader:
            inner = reader.read(MAX_DECOMPRESSED + 1)
    except zstandard.ZstdError as exc:
        raise ResultRejected(f"protocoldagresult is not valid zstd: {exc}") from None
    return inner if inner.startswith(ZSTD_MAGIC) else raw


def _pdr_identity(result: bytes) -> tuple[str, bool]:
    """(root key, ok) of a zstd keyed-chain ProtocolDAGResult; check_result validates the rest."""
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(result)) as reader:
            text = reader.read(MAX_DECOMPRESSED + 1)
        chain = json.loads(text)
        return str(chain[-1][0]), summarize(chain).ok
    except (zstandard.ZstdError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError):
        raise ResultRejected("protocoldagresult is not a ProtocolDAGResult keyed chain") from None


@router.post("/tasks/{task}/results")
async def set_task_result(
    task: ComputeTaskKey,
    request: Request,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
) -> dict:
    """Store a result (alchemiscale's JSON body); answer the result reference's ScopedKey."""
    sk = task
    body = await request.body()
    try:
        compute_service_id = json.loads(body)["compute_service_id"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise HTTPException(400, "the body must be JSON with compute_service_id") from None
    if not isinstance(compute_service_id, str) or compute_service_id in ("", "None"):
        raise HTTPException(400, "compute_service_id must name the service that ran the task")
    await run_in_threadpool(require_owner, request, store, compute_service_id, token)
    tf, held = await run_in_threadpool(store.result_admission, compute_service_id, sk)
    tf_key = tf.rsplit("-", 3)[0]

    async def refuse(status: int, reason: str) -> HTTPException:
        # As routes_compute: a held task fails, so no service loops on an unstorable result.
        new = None
        if held:
            new = await run_in_threadpool(
                store.refuse_task_result, sk, compute_service_id, f"result refused: {reason}"
            )
        return HTTPException(status, reason + (f"; task {sk} is now {new}" if new else ""))

    try:
        result = await run_in_threadpool(_unwrap_result, body)
        pdr_key, ok = await run_in_threadpool(_pdr_identity, result)
        tracebacks = await run_in_threadpool(
            lambda: check_result(io.BytesIO(result), pdr_key=pdr_key, ok=ok, transformation_key=tf_key)
        )
    except ResultRejected as exc:
        raise await refuse(400, str(exc)) from None
    try:
        stored = await run_in_threadpool(
            lambda: objects.push_result(
                io.BytesIO(result), scope=sk.scope, transformation_key=tf_key, pdr_key=pdr_key, ok=ok
            )
        )
    except ObjectStoreUnavailable:
        raise
    except (InvalidPath, ObjectTooLarge, ObjectExists) as exc:
        status = 413 if isinstance(exc, ObjectTooLarge) else 409 if isinstance(exc, ObjectExists) else 400
        raise await refuse(status, f"the object store refuses this result: {exc}") from None
    ref = ResultRef(
        location=stored.location,
        size=stored.size,
        sha256=stored.sha256,
        ok=ok,
        creator=compute_service_id,
        pdr_key=pdr_key,
    )
    await run_in_threadpool(
        lambda: store.set_task_result(
            sk, ref, identifier=compute_service_id, tracebacks=tracebacks, allow_late=True
        )
    )
    scope = sk.scope
    return {
        "gufe_key": "ProtocolDAGResultRef-" + pdr_key.rsplit("-", 1)[-1],
        "org": scope.org,
        "campaign": scope.campaign,
        "project": scope.project,
    }
