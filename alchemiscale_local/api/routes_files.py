"""Task files: what a protocol left behind (its log and shared/permanent files), kept next to its result.

Layout in the object store: ``taskfiles/<scope>/<task key>/<pdr key>/<path>``, one folder per
attempt (ProtocolDAGResult). A compute service uploads each file (streamed, sha256-checked,
write-once) while it holds the task's claim, then a ``manifest.json`` that lists them; the
manifest is the commit point, so users only ever see complete attempts.

The deployment's policy (``settings.compute.artifacts``) is enforced here for every service:
per-file and per-attempt caps (413) and a total quota over all task files (507, with the
numbers and the setting to raise).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from alchemiscale_local.backends.objectstore import ChecksumMismatch, InvalidPath, ObjectStore
from alchemiscale_local.backends.objectstore.paths import (
    TASKFILES_ROOT,
    task_prefix,
    validate_gufe_key,
    validate_relpath,
)
from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.models import ScopedKey
from alchemiscale_local.settings import ArtifactSettings, Settings
from alchemiscale_local.wire import ManifestBody

from .auth import TokenData, compute_token, user_token
from .deps import get_objects, get_settings, get_store
from .keys import ComputeTaskKey, TaskKey

MANIFEST = "manifest.json"
LOG_PATH = "protocol.log"
SPOOL_BYTES = 8 << 20
QUOTA_SETTING = "compute.artifacts.quota_bytes (ALCHEMISCALE_LOCAL_COMPUTE__ARTIFACTS__QUOTA_BYTES)"

compute_router = APIRouter(prefix="/compute", dependencies=[Depends(compute_token)], tags=["compute"])
user_router = APIRouter(dependencies=[Depends(user_token)], tags=["task files"])


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class QuotaExceeded(Exception):
    """Storing this file would take the deployment's task files past the quota."""


class TaskFileQuota:
    """Bytes used by all task files (manifests aside), shared by every API process through Neo4j.

    The state store holds the count (taken once from a listing of the object store, then kept
    up to date) and the reservations of uploads in flight, so N workers (or hosts) share one
    quota and concurrent uploads share the remaining room instead of all passing the check.
    Blocking: call from a worker thread.
    """

    def __init__(self, store: Neo4jStore, objects: ObjectStore) -> None:
        self._store = store
        self._objects = objects

    def _count(self) -> int:
        return sum(
            info.size
            for info in self._objects.list_prefix(TASKFILES_ROOT)
            if not info.location.endswith(f"/{MANIFEST}")
        )

    def reserve(self, size: int, quota: int, what: str) -> str:
        """A reservation id for ``size`` bytes; QuotaExceeded when they do not fit."""
        held = self._store.reserve_taskfile_bytes(self._objects.url, size, quota, self._count)
        if held.id is None:
            raise QuotaExceeded(
                f"task file quota reached: {_human(held.in_use)} of {_human(quota)} used, "
                f"{what} ({_human(size)}) not kept; raise {QUOTA_SETTING} or delete old task files"
            )
        return held.id

    def settle(self, reservation: str, stored: int) -> None:
        self._store.settle_taskfile_bytes(self._objects.url, reservation, stored)


# -- helpers ----------------------------------------------------------------------------
def _checked(pdr_key: str, path: str | None = None) -> tuple[str, str | None]:
    try:
        validate_gufe_key(pdr_key, "protocoldagresult key")
        if path is not None:
            validate_relpath(path, "task file path")
    except InvalidPath as exc:
        raise HTTPException(400, str(exc)) from None
    if path == MANIFEST:
        raise HTTPException(400, f"{MANIFEST!r} is reserved for the attempt's manifest")
    return pdr_key, path


def task_manifests(objects: ObjectStore, sk: ScopedKey) -> list[dict[str, Any]]:
    """The committed attempts of a task, oldest first."""
    found = []
    for tf in objects.list_task_files(sk.scope, sk.gufe_key):
        parts = tf.relpath.split("/")
        if len(parts) == 2 and parts[1] == MANIFEST:
            try:
                found.append(json.loads(objects.get(tf.location)))
            except ValueError:
                continue  # unreadable manifest: that attempt is not listed
    return sorted(found, key=lambda m: (m.get("created") or 0, m.get("pdr_key", "")))


def _file_entry(manifest: dict[str, Any], path: str) -> dict[str, Any] | None:
    return next((f for f in manifest.get("files", []) if f.get("path") == path), None)


def _stream(objects: ObjectStore, sk: ScopedKey, pdr_key: str, entry: dict, media: str) -> StreamingResponse:
    # Open first so a missing object is an error status, not a cut stream; sha256 checked at EOF.
    fh = objects.open_task_file(sk.scope, sk.gufe_key, f"{pdr_key}/{entry['path']}", entry["sha256"])

    def chunks() -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type=media,
        headers={"X-Content-SHA256": entry["sha256"], "Content-Length": str(entry["size"])},
    )


def _caps(policy: ArtifactSettings, path: str, size: int, used: int) -> None:
    """413 when one file or the attempt would go past the policy's caps."""
    if path == LOG_PATH:
        if size > policy.max_log_bytes:
            raise HTTPException(
                413, f"the log ({_human(size)}) is over max_log_bytes ({_human(policy.max_log_bytes)})"
            )
    elif size > policy.max_file_bytes:
        raise HTTPException(
            413,
            f"{path} ({_human(size)}) is over compute.artifacts.max_file_bytes ({_human(policy.max_file_bytes)})",
        )
    if used + size > policy.max_task_bytes:
        raise HTTPException(
            413,
            f"{path} ({_human(size)}) would take this attempt past compute.artifacts.max_task_bytes "
            f"({_human(policy.max_task_bytes)}; {_human(used)} already kept)",
        )


# -- compute routes ---------------------------------------------------------------------
@compute_router.put(
    "/tasks/{task}/files/{pdr_key}/{path:path}",
    summary="Upload one file a task left behind (streamed; sha256 and size checked)",
)
async def put_task_file(
    task: ComputeTaskKey,
    pdr_key: str,
    path: str,
    request: Request,
    compute_service_id: str,
    sha256: str = Query(pattern=r"^[0-9a-fA-F]{64}$"),
    size: int = Query(ge=0),
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
    settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    sk = task
    _checked(pdr_key, path)
    policy = settings.compute.artifacts
    if not policy.enabled:
        raise HTTPException(409, "this deployment keeps no task files (compute.artifacts.enabled is false)")
    await run_in_threadpool(store.assert_claim, compute_service_id, sk)
    attempt = f"{task_prefix(sk.scope, sk.gufe_key)}/{pdr_key}"
    used = sum(
        i.size
        for i in await run_in_threadpool(objects.list_prefix, attempt)
        if not i.location.endswith(f"/{path}")
    )
    _caps(policy, path, size, used)
    quota = TaskFileQuota(store, objects)
    try:
        reservation = await run_in_threadpool(quota.reserve, size, policy.quota_bytes, f"{path} of {sk}")
    except QuotaExceeded as exc:
        raise HTTPException(507, str(exc)) from None
    stored_size = 0
    try:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > size:
                    raise HTTPException(400, f"{path}: more bytes than the declared size {size}")
                spool.write(chunk)
            if received != size:
                raise HTTPException(400, f"{path}: {received} bytes received, {size} declared")
            spool.seek(0)
            try:
                stored = await run_in_threadpool(
                    lambda: objects.put_task_file(
                        sk.scope, sk.gufe_key, f"{pdr_key}/{path}", spool, sha256=sha256, max_bytes=size
                    )
                )
            except ChecksumMismatch as exc:
                raise HTTPException(400, f"{path}: {exc}; nothing was stored") from None
        stored_size = stored.size if stored.created else 0
    finally:
        await run_in_threadpool(quota.settle, reservation, stored_size)
    return {"path": path, "size": stored.size, "sha256": stored.sha256, "created": stored.created}


@compute_router.post(
    "/tasks/{task}/files/{pdr_key}/manifest",
    summary="Commit an attempt's files: the list users see (every file must be uploaded first)",
)
def put_manifest(
    task: ComputeTaskKey,
    pdr_key: str,
    body: ManifestBody,
    compute_service_id: str,
    token: TokenData = Depends(compute_token),
    store: Neo4jStore = Depends(get_store),
    objects: ObjectStore = Depends(get_objects),
) -> dict[str, Any]:
    sk = task
    _checked(pdr_key)
    store.assert_claim(compute_service_id, sk)
    attempt = f"{task_prefix(sk.scope, sk.gufe_key)}/{pdr_key}"
    sizes = {i.location[len(attempt) + 1 :]: i.size for i in objects.list_prefix(attempt)}
    for entry in body.files:
        _checked(pdr_key, entry.path)
        if sizes.get(entry.path) != entry.size:
            raise HTTPException(400, f"{entry.path} of {pdr_key} was not uploaded (or has another size)")
    manifest = {
        "task": str(sk),
        "pdr_key": pdr_key,
        "compute_service_id": compute_service_id,
        **body.model_dump(),
    }
    data = json.dumps(manifest, sort_keys=True).encode()
    # Manifests are not counted against the quota (a few KB each, one per attempt): the one of
    # an attempt refused by the quota is what tells the user why its files are missing.
    stored = objects.put_task_file(sk.scope, sk.gufe_key, f"{pdr_key}/{MANIFEST}", data)
    return {"location": stored.location, "files": len(body.files), "skipped": len(body.skipped)}


# -- user routes ------------------------------------------------------------------------
@user_router.get("/tasks/{task}/files", summary="The files kept of each attempt of a task (manifests)")
def list_task_files(
    task: TaskKey, token: TokenData = Depends(user_token), objects: ObjectStore = Depends(get_objects)
) -> list[dict[str, Any]]:
    return task_manifests(objects, task)


@user_router.get(
    "/tasks/{task}/files/{pdr_key}/{path:path}", summary="One kept file (sha256 in X-Content-SHA256)"
)
def get_task_file(
    task: TaskKey,
    pdr_key: str,
    path: str,
    token: TokenData = Depends(user_token),
    objects: ObjectStore = Depends(get_objects),
) -> StreamingResponse:
    return stream_kept_file(objects, task, pdr_key, path, "application/octet-stream")


def stream_kept_file(
    objects: ObjectStore,
    sk: ScopedKey,
    pdr_key: str,
    path: str,
    media: str,
    headers: dict[str, str] | None = None,
) -> StreamingResponse:
    """One kept file of a task's attempt, streamed (404 when that attempt did not keep it).

    The caller has checked that ``sk`` is in the caller's scopes (the API's token or the
    dashboard's session)."""
    _checked(pdr_key, path)
    manifest = next((m for m in task_manifests(objects, sk) if m.get("pdr_key") == pdr_key), None)
    entry = _file_entry(manifest, path) if manifest else None
    if entry is None:
        raise HTTPException(404, f"no kept file {path} of {pdr_key} of task {sk}")
    response = _stream(objects, sk, pdr_key, entry, media)
    response.headers.update(headers or {})
    return response


@user_router.get("/tasks/{task}/log", summary="The protocol log of a task's latest attempt (or of pdr_key)")
def get_task_log(
    task: TaskKey,
    pdr_key: str | None = None,
    token: TokenData = Depends(user_token),
    objects: ObjectStore = Depends(get_objects),
) -> StreamingResponse:
    sk = task
    if pdr_key is not None:
        _checked(pdr_key)
    for manifest in reversed(task_manifests(objects, sk)):
        if pdr_key is not None and manifest.get("pdr_key") != pdr_key:
            continue
        entry = _file_entry(manifest, LOG_PATH)
        if entry is not None:
            return _stream(objects, sk, manifest["pdr_key"], entry, "text/plain; charset=utf-8")
    which = f"attempt {pdr_key}" if pdr_key else "any attempt"
    raise HTTPException(404, f"no protocol log kept for {which} of task {sk}")


router = APIRouter()
router.include_router(compute_router)
router.include_router(user_router)

__all__ = ["QuotaExceeded", "TaskFileQuota", "router"]
