"""Compute routes (prefix ``/compute``): registration, heartbeats, claims, inputs, result upload."""

from __future__ import annotations

import json
import logging
import tempfile

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
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
from alchemiscale_local.settings import Settings

from .auth import TokenData, compute_token, parse_scope_param
from .deps import get_objects, get_settings, get_store
from .keys import ComputeTaskKey, need
from .owners import require_owner
from .result_check import ResultRejected, check_result
from .schemas import ClaimBody, TasksBody

log = logging.getLogger(__name__)

router = APIRouter(prefix="/compute", dependencies=[Depends(compute_token)], tags=["compute"])

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SPOOL_BYTES = 8 << 20


@router.post("/computeservice/{identifier}/register")
def register(
    identifier: str,
    body: ComputeServiceRegistration,
    request: Request,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    if body.identifier != identifier:
        raise HTTPException(400, "the identifier in the path and in the body differ")
    require_owner(request, store, identifier, token)
    return store.register_computeservice(body, owner=token.identifier)


@router.post("/computeservice/{identifier}/heartbeat")
def heartbeat(
    identifier: str,
    request: Request,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    require_owner(request, store, identifier, token)
    store.heartbeat_computeservice(identifier)
    return identifier


@router.post("/computeservice/{identifier}/deregister")
def deregister(
    identifier: str,
    request: Request,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    require_owner(request, store, identifier, token)
    store.deregister_computeservice(identifier)
    return identifier


@router.post(
    "/computeservice/{identifier}/tasks/unwanted",
    summary="Of the tasks a service runs, those it should stop (cancelled, claim lost, network off)",
)
def unwanted(
    identifier: str,
    body: TasksBody,
    request: Request,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> dict:
    require_owner(request, store, identifier, token)
    tasks = [need(token, t) for t in body.tasks]
    reasons = store.unwanted_tasks(identifier, tasks)
    keys = [str(t) for t in tasks]
    return {"stop": [k for k in dict.fromkeys(keys) if k in reasons], "reasons": reasons}


@router.post("/claim", summary="Claim up to count tasks; null when the service is denied for failures")
def claim(
    body: ClaimBody,
    request: Request,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    settings: Settings = Depends(get_settings),
) -> list[str | None] | None:
    require_owner(request, store, body.compute_service_id, token)
    scopes = []
    for text in body.scopes:
        scopes.extend(token.visible(parse_scope_param(text)))
    # Services claim only when idle, so tasks they still hold are re-delivered: a claim whose
    # response was lost (API killed mid-request) is not stranded under a live service.
    exclude = [parse_scope_param(text) for text in body.scopes_exclude or []]
    # One read does the failure gate, the held tasks and the candidates; null when denied.
    claimed = store.claim_for_service(
        body.compute_service_id,
        body.count,
        list(dict.fromkeys(scopes)),
        body.protocols,
        include_held=True,
        scopes_exclude=exclude,
        max_failures=settings.api.max_failures,
        window_s=settings.api.failure_window_s,
    )
    if claimed is None:
        return None
    return claimed + [None] * (body.count - len(claimed))


@router.get("/tasks/{task}/transformation", summary="The task's transformation ScopedKey")
def task_transformation(
    task: ComputeTaskKey, token: TokenData = Depends(compute_token), store: Neo4jStore = Depends(get_store)
) -> str:
    return store.get_task_transformation(task)[0]


@router.get("/tasks/{task}/inputs", summary="What a service needs to run a task")
def task_inputs(
    task: ComputeTaskKey, token: TokenData = Depends(compute_token), store: Neo4jStore = Depends(get_store)
) -> Response:
    info = store.get_tasks([task])[0]
    if info is None:
        raise HTTPException(404, f"no task {task}")
    extends_ref = None
    if info["extends"]:
        refs = store.get_task_results(info["extends"], ok=True)
        extends_ref = refs[-1] if refs else None
    chain = store.get_keyed_chain_json(info["transformation"])
    head = json.dumps(
        {
            "task": str(task),
            "transformation_key": info["transformation"],
            "protocol": info["protocol"],
            "protocol_module": info["protocol_module"],
            "extends": info["extends"],
            "extends_result": extends_ref,
        }
    )
    # Splice the stored chain text in as it is; it is already JSON.
    return Response(head[:-1] + ', "transformation": ' + chain + "}", media_type="application/json")


@router.get("/tasks/{task}/extends/result", summary="Bytes of the result the task extends")
def extends_result(
    task: ComputeTaskKey,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
) -> StreamingResponse:
    sk = task
    info = store.get_tasks([sk])[0]
    if info is None or not info["extends"]:
        raise HTTPException(404, f"task {sk} extends nothing")
    refs = store.get_task_results(info["extends"], ok=True)
    if not refs:
        raise HTTPException(404, f"the task {info['extends']} that {sk} extends has no successful result")
    ref = refs[-1]
    fh = objects.open_result(ref["location"], ref["sha256"])

    def chunks():
        with fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type="application/zstd",
        headers={"X-Content-SHA256": ref["sha256"], "Content-Length": str(ref["size"])},
    )


@router.post("/tasks/{task}/results", summary="Upload a ProtocolDAGResult (zstd keyed chain, streamed)")
async def push_result(
    task: ComputeTaskKey,
    request: Request,
    compute_service_id: str,
    pdr_key: str,
    ok: bool,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
) -> dict:
    sk = task
    await run_in_threadpool(require_owner, request, store, compute_service_id, token)
    # Refuse before storing anything when the task is complete or was never this service's.
    tf, held = await run_in_threadpool(store.result_admission, compute_service_id, sk)
    tf_key = tf.rsplit("-", 3)[0]

    async def refuse(status: int, reason: str) -> HTTPException:
        """A permanent refusal: a held task fails (failure gate, restart patterns) so no
        service loops on a result that can never be stored."""
        new = None
        if held:
            new = await run_in_threadpool(
                store.refuse_task_result, sk, compute_service_id, f"result refused: {reason}"
            )
        suffix = f"; task {sk} is now {new}" if new else ""
        return HTTPException(status, f"{reason}{suffix}")

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        first = True
        async for chunk in request.stream():
            if first and chunk:
                if not chunk.startswith(ZSTD_MAGIC[: len(chunk)]):
                    raise await refuse(400, "a result must be zstd-compressed keyed-chain JSON")
                first = False
            spool.write(chunk)
        if first:
            raise await refuse(400, "empty result body")
        try:
            tracebacks = await run_in_threadpool(
                lambda: check_result(spool, pdr_key=pdr_key, ok=ok, transformation_key=tf_key)
            )
        except ResultRejected as exc:
            raise await refuse(400, str(exc)) from None
        spool.seek(0)
        try:
            stored = await run_in_threadpool(
                lambda: objects.push_result(
                    spool, scope=sk.scope, transformation_key=tf_key, pdr_key=pdr_key, ok=ok
                )
            )
        except ObjectStoreUnavailable:
            raise  # 503: the store may come back; the service keeps the result and retries
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
    status = await run_in_threadpool(
        lambda: store.set_task_result(
            sk, ref, identifier=compute_service_id, tracebacks=tracebacks, allow_late=True
        )
    )
    return {
        "task": str(sk),
        "status": status,
        "late": not held,
        "location": stored.location,
        "sha256": stored.sha256,
        "size": stored.size,
    }
