"""User routes for results and failures: references and the stored bytes."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse

from alchemiscale_local.backends.objectstore import ObjectStore
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.models import InvalidIdentifier, Scope, ScopedKey
from alchemiscale_local.wire import REFS_MEDIA_TYPE, ZSTD_MEDIA_TYPE, ref_token, result_ref_key

from .auth import TokenData, user_token
from .deps import get_objects, get_store
from .keys import TaskKey, TransformationKey, need
from .schemas import BulkResultsBody, LocationsBody

router = APIRouter(dependencies=[Depends(user_token)])

ZSTD = ZSTD_MEDIA_TYPE


def _public(refs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "tracebacks" or not r.get("ok")} for r in refs]


def _refs_response(request: Request, refs: list[dict], scope: Scope) -> list:
    """Reference objects for ``Accept: REFS_MEDIA_TYPE`` (this project's client); else, as alchemiscale,
    the ``ProtocolDAGResultRef`` keys."""
    if REFS_MEDIA_TYPE in request.headers.get("accept", ""):
        return _public(refs)
    parts = scope.to_path_parts()
    return [result_ref_key(r["pdr_key"], parts) for r in refs if r.get("pdr_key")]


@router.get("/transformations/{transformation}/results", summary="References of successful results")
def transformation_results(
    transformation: TransformationKey,
    request: Request,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list:
    return _refs_response(
        request, store.get_transformation_results(transformation, ok=True), transformation.scope
    )


@router.get(
    "/transformations/{transformation}/failures", summary="References of failed results, with tracebacks"
)
def transformation_failures(
    transformation: TransformationKey,
    request: Request,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list:
    return _refs_response(
        request, store.get_transformation_results(transformation, ok=False), transformation.scope
    )


@router.get("/tasks/{task}/results")
def task_results(
    task: TaskKey,
    request: Request,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list:
    return _refs_response(request, store.get_task_results(task, ok=True), task.scope)


@router.get("/tasks/{task}/failures")
def task_failures(
    task: TaskKey,
    request: Request,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
) -> list:
    return _refs_response(request, store.get_task_results(task, ok=False), task.scope)


def _stream_result(
    kind: str,
    tf: ScopedKey,
    segment: str,
    request: Request,
    token: TokenData,
    store: Neo4jStore,
    objects: ObjectStore,
):
    """Raw zstd bytes (``Accept: application/zstd``, streamed, with X-Content-SHA256), else alchemiscale's
    ``["<zstd bytes as latin-1>"]`` JSON. ``segment``: a ProtocolDAGResultRef key or a pdr key."""
    ok = kind == "results"
    pdr_key = segment
    if (token_ := ref_token(segment)) is not None:
        token.require_key(segment)  # a ref key in the path: 400 if malformed, 403 outside the token's scopes
        found = [
            r["pdr_key"]
            for r in store.get_transformation_results(tf, ok=ok)
            if (r.get("pdr_key") or "").split("-", 1)[-1] == token_
        ]
        if not found:
            raise HTTPException(404, f"no {kind[:-1]} {segment} of {tf}")
        pdr_key = found[0]
    location = objects.result_location(tf.scope, tf.gufe_key, pdr_key, ok=ok)
    ref = store.get_result_ref(location)
    if ref["transformation"] != str(tf):
        raise HTTPException(404, f"no {kind[:-1]} {pdr_key} of {tf}")
    if ZSTD not in request.headers.get("accept", ""):
        data = objects.get_result(location, ref["sha256"])
        return JSONResponse([data.decode("latin-1")])
    # Open first so a missing or unreadable object is an error status, not a cut stream.
    fh = objects.open_result(location, ref["sha256"])

    def chunks():
        with fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type=ZSTD,
        headers={"X-Content-SHA256": ref["sha256"], "Content-Length": str(ref["size"])},
    )


@router.get(
    "/transformations/{transformation}/results/{pdr_key}",
    summary="A successful ProtocolDAGResult: zstd keyed-chain JSON (raw with Accept: application/zstd)",
)
def result_bytes(
    transformation: TransformationKey,
    pdr_key: str,
    request: Request,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
):
    return _stream_result("results", transformation, pdr_key, request, token, store, objects)


@router.get(
    "/transformations/{transformation}/failures/{pdr_key}",
    summary="A failed ProtocolDAGResult: zstd keyed-chain JSON (raw with Accept: application/zstd)",
)
def failure_bytes(
    transformation: TransformationKey,
    pdr_key: str,
    request: Request,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
):
    return _stream_result("failures", transformation, pdr_key, request, token, store, objects)


BUNDLE = "application/x-alchemiscale-local-bundle"


@router.post("/bulk/transformations/results", summary="Result references of many transformations at once")
def bulk_results(
    body: BulkResultsBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> dict[str, list[dict]]:
    return store.get_results_refs([need(token, t) for t in body.transformations], ok=body.ok)


def _location_scope(location: str) -> Scope:
    parts = location.split("/")
    try:
        if len(parts) < 4 or parts[0] != "protocoldagresult":
            raise ValueError(f"{location!r} is not a result location")
        return Scope(org=parts[1], campaign=parts[2], project=parts[3])
    except (InvalidIdentifier, ValueError) as exc:
        raise HTTPException(400, str(exc)) from None


@router.post(
    "/bulk/results/download",
    summary="Many results in one response: a JSON header line, then the objects' bytes in order",
)
def bulk_download(
    body: LocationsBody,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
):
    for location in body.locations:
        token.require(_location_scope(location))
    known = store.get_result_refs_at(body.locations)
    missing = [loc for loc in body.locations if loc not in known]
    if missing:
        raise HTTPException(
            404,
            f"no result at {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
        )
    header = [{"location": loc, **known[loc]} for loc in body.locations]

    def chunks():
        yield json.dumps(header).encode() + b"\n"
        for entry in header:
            # each object is verified against its recorded sha256 as it is read
            yield objects.get_result(entry["location"], entry["sha256"])

    return StreamingResponse(chunks(), media_type=BUNDLE)
