"""User routes for results and failures: references and the stored bytes."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import StreamingResponse

from alchemiscale_local.backends.objectstore import ObjectStore
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.models import InvalidIdentifier, Scope

from .auth import TokenData, user_token
from .deps import get_objects, get_store
from .schemas import BulkResultsBody, LocationsBody

router = APIRouter(dependencies=[Depends(user_token)])

ZSTD = "application/zstd"


def _public(refs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "tracebacks" or not r.get("ok")} for r in refs]


@router.get("/transformations/{transformation}/results", summary="References of successful results")
def transformation_results(
    transformation: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[dict]:
    return _public(store.get_transformation_results(str(token.require_key(transformation)), ok=True))


@router.get(
    "/transformations/{transformation}/failures", summary="References of failed results, with tracebacks"
)
def transformation_failures(
    transformation: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[dict]:
    return _public(store.get_transformation_results(str(token.require_key(transformation)), ok=False))


@router.get("/tasks/{task}/results")
def task_results(
    task: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[dict]:
    return _public(store.get_task_results(str(token.require_key(task)), ok=True))


@router.get("/tasks/{task}/failures")
def task_failures(
    task: str, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> list[dict]:
    return _public(store.get_task_results(str(token.require_key(task)), ok=False))


def _stream_result(
    kind: str, transformation: str, pdr_key: str, token: TokenData, store: Neo4jStore, objects: ObjectStore
) -> StreamingResponse:
    tf = token.require_key(transformation)
    location = objects.result_location(tf.scope, tf.gufe_key, pdr_key, ok=(kind == "results"))
    ref = store.get_result_ref(location)
    if ref["transformation"] != str(tf):
        raise HTTPException(404, f"no {kind[:-1]} {pdr_key} of {tf}")
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
    summary="A successful ProtocolDAGResult: zstd-compressed keyed-chain JSON",
)
def result_bytes(
    transformation: str,
    pdr_key: str,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
):
    return _stream_result("results", transformation, pdr_key, token, store, objects)


@router.get(
    "/transformations/{transformation}/failures/{pdr_key}",
    summary="A failed ProtocolDAGResult: zstd-compressed keyed-chain JSON",
)
def failure_bytes(
    transformation: str,
    pdr_key: str,
    token: TokenData = Depends(user_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
):
    return _stream_result("failures", transformation, pdr_key, token, store, objects)


BUNDLE = "application/x-alchemiscale-local-bundle"


@router.post("/bulk/transformations/results", summary="Result references of many transformations at once")
def bulk_results(
    body: BulkResultsBody, token: TokenData = Depends(user_token), store: Neo4jStore = Depends(get_store)
) -> dict[str, list[dict]]:
    return store.get_results_refs([str(token.require_key(t)) for t in body.transformations], ok=body.ok)


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
