"""The task-file quota is one for the deployment, kept in Neo4j.

Store level (the session's Neo4j): concurrent reservations never pass the quota, an expired
reservation frees its room, settling counts the stored bytes. Deployment level: a live API of
two uvicorn workers (started as ``up`` starts it) stops uploads at the quota, not at 2x it
(regression: each worker counted only its own uploads in memory).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from alchemiscale_local.api.worker_header import HEADER
from tests.integration.test_task_files import _claimed
from tests.plugins.api_server import ApiServer, make_settings
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(300)

WORKERS = 2
FILE = 100
QUOTA = 10 * FILE


# -- store level --------------------------------------------------------------------------
def test_concurrent_reservations_never_pass_the_quota(store: Any) -> None:
    where = f"mem://quota-{uuid.uuid4().hex[:8]}"
    counted: list[int] = []

    def count() -> int:
        counted.append(1)
        return 2 * FILE  # already kept before the first upload

    results: list[Any] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def reserve() -> None:
        barrier.wait()
        for _ in range(3):
            held = store.reserve_taskfile_bytes(where, FILE, QUOTA, count)
            with lock:
                results.append(held)

    threads = [threading.Thread(target=reserve) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 48
    admitted = [r for r in results if r.id is not None]
    assert len(admitted) == 8  # (QUOTA - 2 * FILE) / FILE, of 48 tries
    assert all(r.in_use + FILE > QUOTA for r in results if r.id is None)
    assert store.taskfile_usage(where) == {"used": 2 * FILE, "reserved": 8 * FILE}
    assert 1 <= len(counted) <= 16  # the listing is taken before the node exists, never after
    calls = len(counted)
    store.settle_taskfile_bytes(where, admitted[0].id, FILE)
    assert store.taskfile_usage(where) == {"used": 3 * FILE, "reserved": 7 * FILE}
    assert store.reserve_taskfile_bytes(where, 1, QUOTA, count).id is None
    assert len(counted) == calls


def test_settle_counts_the_stored_bytes_and_frees_the_reservation(store: Any) -> None:
    where = f"mem://quota-{uuid.uuid4().hex[:8]}"
    held = store.reserve_taskfile_bytes(where, 300, QUOTA, lambda: 0)
    assert held.id and held.in_use == 0
    store.settle_taskfile_bytes(where, held.id, 120)  # e.g. a shorter file than declared
    assert store.taskfile_usage(where) == {"used": 120, "reserved": 0}
    broken = store.reserve_taskfile_bytes(where, 500, QUOTA, lambda: 0)
    store.settle_taskfile_bytes(where, broken.id, 0)  # nothing stored: the room comes back
    assert store.taskfile_usage(where) == {"used": 120, "reserved": 0}
    assert store.reserve_taskfile_bytes(where, QUOTA - 120, QUOTA, lambda: 0).id is not None
    assert store.reserve_taskfile_bytes(where, 1, QUOTA, lambda: 0).id is None
    store.forget_taskfile_usage(where)
    assert store.taskfile_usage(where) is None
    assert store.reserve_taskfile_bytes(where, 1, QUOTA, lambda: QUOTA).in_use == QUOTA  # recounted


def test_an_expired_reservation_frees_its_room(store: Any) -> None:
    """A worker killed mid-upload never settles: its reservation runs out on Neo4j's clock."""
    where = f"mem://quota-{uuid.uuid4().hex[:8]}"
    dead = store.reserve_taskfile_bytes(where, QUOTA, QUOTA, lambda: 0, ttl_s=1.0)
    assert dead.id is not None
    assert store.reserve_taskfile_bytes(where, FILE, QUOTA, lambda: 0).id is None  # held while live
    held = wait_for(
        lambda: (r := store.reserve_taskfile_bytes(where, FILE, QUOTA, lambda: 0)).id and r,
        60,
        "the dead upload's reservation to expire",
    )
    assert held.in_use == 0
    assert store.taskfile_usage(where) == {"used": 0, "reserved": FILE}


# -- deployment level ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def quota_api(neo4j_connection: Any, tmp_path_factory: Any) -> Iterator[ApiServer]:
    """A 2-worker API (its own process tree) with QUOTA bytes of task files allowed."""
    from alchemiscale_local.backends.objectstore import ObjectStore
    from alchemiscale_local.backends.statestore import Neo4jStore
    from alchemiscale_local.launchers.api_server import start_api
    from alchemiscale_local.launchers.processes import stop

    from alchemiscale_local.secretfiles import write_private_json
    from alchemiscale_local.settings import masked_dump

    tmp = tmp_path_factory.mktemp("quota-workers")
    settings = make_settings(tmp, workers=WORKERS)
    settings.compute.artifacts.quota_bytes = QUOTA
    child = masked_dump(settings, reveal=True)
    conn = neo4j_connection
    child["neo4j"].update(uri=conn.uri, user=conn.user, password=conn.password, database=conn.database)
    settings_file = tmp / "settings.json"
    write_private_json(settings_file, child)
    store = Neo4jStore.connect(conn.uri, conn.user, conn.password, conn.database)
    objects = ObjectStore.from_settings(settings.objectstore)
    record = None
    try:
        store.initialize()
        server = ApiServer(url="", settings=settings, store=store, objects=objects, app=None)
        server.ensure_identities()
        record, server.url = start_api(settings, settings_file, timeout=180)
        pid = record.pid
        wait_for(
            lambda: (
                len([p for p in psutil.Process(pid).children() if p.status() != psutil.STATUS_ZOMBIE])
                >= WORKERS
            ),
            120,
            f"{WORKERS} workers",
        )
        yield server
    finally:
        if record is not None:
            stop([record])
        store.close()


def test_uploads_over_two_workers_stop_at_the_quota(quota_api: ApiServer, tmp_path: Path) -> None:
    """Regression: each worker kept its own count, so two workers stored up to 2x the quota."""
    api = quota_api
    scope = f"quota-w{uuid.uuid4().hex[:6]}-workers"
    pdr = f"ProtocolDAGResult-{uuid.uuid4().hex}"
    with api.client() as user, api.compute() as compute:
        task, service = _claimed(api, user, compute, scope)
    headers = api.headers("compute")
    kept: dict[str, int] = {}  # worker -> files it kept
    refused: dict[str, int] = {}
    for i in range(40):
        data = f"{i:03d}".encode() * (FILE // 3) + b"x" * (FILE % 3)
        resp = httpx.put(  # a new connection each time: the kernel hands it to either worker
            f"{api.url}/compute/tasks/{task}/files/{pdr}/shared/f{i}.bin",
            params={"compute_service_id": service, "sha256": hashlib.sha256(data).hexdigest(), "size": FILE},
            content=data,
            headers=headers,
            timeout=60,
        )
        worker = resp.headers[HEADER]
        if resp.status_code == 507:
            assert "task file quota reached" in resp.text and "QUOTA_BYTES" in resp.text
            refused[worker] = refused.get(worker, 0) + 1
        else:
            assert resp.status_code == 200, resp.text
            kept[worker] = kept.get(worker, 0) + 1
    assert len(set(kept) | set(refused)) == WORKERS, "every upload landed on one worker: nothing shown"
    assert sum(kept.values()) == QUOTA // FILE, (kept, refused)
    stored = sum(
        i.size for i in api.objects.list_prefix("taskfiles") if not i.location.endswith("manifest.json")
    )
    assert stored == QUOTA


def test_each_api_start_counts_the_task_files_again(
    store: Any, neo4j_connection: Any, tmp_path: Path
) -> None:
    """The count lives in Neo4j and outlives the API: files deleted by hand while it was down free
    their room at its next start (the recount the in-memory count used to give for free)."""
    from alchemiscale_local.backends.objectstore import ObjectStore
    from alchemiscale_local.launchers.api_server import _recount_task_files
    from pydantic import SecretStr

    settings = make_settings(tmp_path)
    conn = neo4j_connection
    settings.neo4j.uri, settings.neo4j.user = conn.uri, conn.user
    settings.neo4j.password, settings.neo4j.database = SecretStr(conn.password), conn.database
    where = ObjectStore.from_settings(settings.objectstore).url
    held = store.reserve_taskfile_bytes(where, QUOTA, QUOTA, lambda: 0)
    store.settle_taskfile_bytes(where, held.id, QUOTA)  # full; then the files go, by hand
    assert store.reserve_taskfile_bytes(where, FILE, QUOTA, lambda: 0).id is None
    _recount_task_files(settings)
    assert store.taskfile_usage(where) is None  # the next upload counts from a listing
    assert store.reserve_taskfile_bytes(where, FILE, QUOTA, lambda: 0).in_use == 0
