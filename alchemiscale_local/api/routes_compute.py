"""Compute routes (prefix ``/compute``): registration, heartbeats, claims, inputs, result upload."""

from __future__ import annotations

import json
import logging
import tempfile
from typing import Any

import zstandard
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from alchemiscale_local.backends.objectstore import ObjectStore
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.models import ComputeServiceRegistration, ResultRef
from alchemiscale_local.settings import Settings

from .auth import TokenData, compute_token, parse_scope_param
from .deps import get_objects, get_settings, get_store
from .schemas import ClaimBody

log = logging.getLogger(__name__)

router = APIRouter(prefix="/compute", dependencies=[Depends(compute_token)], tags=["compute"])

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SPOOL_BYTES = 8 << 20
# Failed results are parsed for their tracebacks; beyond this size they are stored unparsed.
MAX_PARSED_FAILURE = 64 << 20


@router.post("/computeservice/{identifier}/register")
def register(
    identifier: str,
    body: ComputeServiceRegistration,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
) -> str:
    if body.identifier != identifier:
        raise HTTPException(400, "the identifier in the path and in the body differ")
    return store.register_computeservice(body)


@router.post("/computeservice/{identifier}/heartbeat")
def heartbeat(identifier: str, store: Neo4jStore = Depends(get_store)) -> str:
    store.heartbeat_computeservice(identifier)
    return identifier


@router.post("/computeservice/{identifier}/deregister")
def deregister(identifier: str, store: Neo4jStore = Depends(get_store)) -> str:
    store.deregister_computeservice(identifier)
    return identifier


@router.post("/claim", summary="Claim up to count tasks; null when the service is denied for failures")
def claim(
    body: ClaimBody,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    settings: Settings = Depends(get_settings),
) -> list[str | None] | None:
    if not store.computeservice_can_claim(
        body.compute_service_id, settings.api.max_failures, settings.api.failure_window_s
    ):
        return None
    scopes = []
    for text in body.scopes:
        scopes.extend(token.visible(parse_scope_param(text)))
    # Services claim only when idle, so tasks they still hold are re-delivered: a claim whose
    # response was lost (API killed mid-request) is not stranded under a live service.
    exclude = [parse_scope_param(text) for text in body.scopes_exclude or []]
    claimed = store.claim_tasks(
        body.compute_service_id,
        body.count,
        list(dict.fromkeys(scopes)),
        body.protocols,
        include_held=True,
        scopes_exclude=exclude,
    )
    return claimed + [None] * (body.count - len(claimed))


@router.get("/tasks/{task}/transformation", summary="The task's transformation ScopedKey")
def task_transformation(
    task: str, token: TokenData = Depends(compute_token), store: Neo4jStore = Depends(get_store)
) -> str:
    return store.get_task_transformation(str(token.require_key(task)))[0]


@router.get("/tasks/{task}/inputs", summary="What a service needs to run a task")
def task_inputs(
    task: str, token: TokenData = Depends(compute_token), store: Neo4jStore = Depends(get_store)
) -> Response:
    sk = str(token.require_key(task))
    info = store.get_tasks([sk])[0]
    if info is None:
        raise HTTPException(404, f"no task {sk}")
    extends_ref = None
    if info["extends"]:
        refs = store.get_task_results(info["extends"], ok=True)
        extends_ref = refs[-1] if refs else None
    chain = store.get_keyed_chain_json(info["transformation"])
    head = json.dumps(
        {
            "task": sk,
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
    task: str,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
) -> StreamingResponse:
    sk = str(token.require_key(task))
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


def _tracebacks(spool: Any) -> list[str]:
    """Tracebacks of the ProtocolUnitFailures in a failed result (no gufe needed)."""
    spool.seek(0)
    try:
        with zstandard.ZstdDecompressor().stream_reader(spool, closefd=False) as reader:
            text = reader.read(MAX_PARSED_FAILURE + 1)
        if len(text) > MAX_PARSED_FAILURE:
            return []
        chain = json.loads(text)
    except (zstandard.ZstdError, ValueError, RecursionError):
        raise HTTPException(400, "a failed result must be zstd-compressed keyed-chain JSON") from None
    out = []
    if isinstance(chain, list):
        for entry in chain:
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict):
                tb = entry[1].get("traceback")
                if isinstance(tb, str):
                    out.append(tb)
    return out


@router.post("/tasks/{task}/results", summary="Upload a ProtocolDAGResult (zstd keyed chain, streamed)")
async def push_result(
    task: str,
    request: Request,
    compute_service_id: str,
    pdr_key: str,
    ok: bool,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
) -> dict:
    sk = token.require_key(task)
    # Refuse before storing anything when the claim is gone (e.g. the service expired).
    tf = await run_in_threadpool(store.assert_claim, compute_service_id, str(sk))
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        first = True
        async for chunk in request.stream():
            if first and chunk:
                if not chunk.startswith(ZSTD_MAGIC[: len(chunk)]):
                    raise HTTPException(400, "a result must be zstd-compressed keyed-chain JSON")
                first = False
            spool.write(chunk)
        if first:
            raise HTTPException(400, "empty result body")
        tracebacks = [] if ok else await run_in_threadpool(_tracebacks, spool)
        spool.seek(0)
        tf_key = tf.rsplit("-", 3)[0]
        stored = await run_in_threadpool(
            lambda: objects.push_result(
                spool, scope=sk.scope, transformation_key=tf_key, pdr_key=pdr_key, ok=ok
            )
        )
    ref = ResultRef(
        location=stored.location,
        size=stored.size,
        sha256=stored.sha256,
        ok=ok,
        creator=compute_service_id,
        pdr_key=pdr_key,
    )
    status = await run_in_threadpool(
        lambda: store.set_task_result(str(sk), ref, identifier=compute_service_id, tracebacks=tracebacks)
    )
    return {
        "task": str(sk),
        "status": status,
        "location": stored.location,
        "sha256": stored.sha256,
        "size": stored.size,
    }
