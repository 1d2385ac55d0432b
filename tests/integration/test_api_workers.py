"""A live multi-worker API (``settings.api.workers`` = 2, started as ``up`` starts it) on the
session's Neo4j: requests spread over the workers, tokens work on any of them, the background
lease sits with one worker and moves when it is SIGKILLed, a dashboard login link works once
across workers, and the /token failure budget holds for the workers together.

Every request below opens a new connection (no shared client), so the kernel hands them to
either worker; assertions that need both workers check that both answered.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest

from alchemiscale_local.api.leader import BACKGROUND_LEASE
from alchemiscale_local.api.ui.session import dashboard_login_url
from alchemiscale_local.api.worker_header import HEADER
from tests.plugins.api_server import JWT_SECRET, make_settings
from tests.waiting import wait_for

WORKERS = 2
TOKEN_BUDGET = 10  # FailureLimiter's per-identity default, for the deployment as a whole


@dataclass
class WorkersAPI:
    url: str
    record: Any
    store: Any

    def workers(self) -> list[psutil.Process]:
        """The live worker processes under uvicorn's supervisor."""
        proc = psutil.Process(self.record.pid)
        return [
            p
            for p in proc.children()
            if p.status() != psutil.STATUS_ZOMBIE and "multiprocessing.spawn" in " ".join(p.cmdline())
        ]

    def lease_pid(self) -> int | None:
        lease = self.store.lease(BACKGROUND_LEASE)
        if not lease or not lease["live"]:
            return None
        return int(lease["holder"].split(":")[-2])


@pytest.fixture(scope="module")
def workers_api(neo4j_connection, tmp_path_factory) -> Iterator[WorkersAPI]:
    from alchemiscale_local.backends.statestore import Neo4jStore
    from alchemiscale_local.launchers.api_server import start_api
    from alchemiscale_local.launchers.processes import stop

    from alchemiscale_local.secretfiles import write_private_json
    from alchemiscale_local.settings import masked_dump

    tmp = tmp_path_factory.mktemp("workers")
    settings = make_settings(tmp, workers=WORKERS, reaper_interval_s=1.0)
    child = masked_dump(settings, reveal=True)
    conn = neo4j_connection
    child["neo4j"].update(uri=conn.uri, user=conn.user, password=conn.password, database=conn.database)
    settings_file = tmp / "settings.json"
    write_private_json(settings_file, child)
    store = Neo4jStore.connect(conn.uri, conn.user, conn.password, conn.database)
    record = None
    try:
        store.initialize()
        record, url = start_api(settings, settings_file, timeout=180)
        api = WorkersAPI(url, record, store)
        wait_for(lambda: len(api.workers()) == WORKERS, 120, f"{WORKERS} workers")
        yield api
    finally:
        if record is not None:
            stop([record])
        store.close()


@pytest.fixture
def user(workers_api) -> tuple[str, str]:
    ident, key = f"w-{uuid.uuid4().hex[:8]}", f"w-key-{uuid.uuid4().hex}"
    workers_api.store.add_identity(ident, "user", key=key, scopes=["*-*-*"])
    yield ident, key
    workers_api.store.remove_identity(ident)


def _get(url: str, **kw: Any) -> httpx.Response:
    return httpx.get(url, timeout=60, **kw)  # a new connection each time


def _until_both(call, what: str, limit: int = 400) -> list[httpx.Response]:
    """Responses of ``call()`` until both workers have answered (at most ``limit`` calls)."""
    out: list[httpx.Response] = []
    for _ in range(limit):
        out.append(call())
        if len({r.headers.get(HEADER) for r in out}) >= WORKERS:
            return out
    raise AssertionError(f"{limit} requests for {what} all landed on one worker")


def test_requests_land_on_every_worker(workers_api):
    pids = {p.pid for p in workers_api.workers()}
    assert len(pids) == WORKERS and workers_api.record.pid not in pids
    replies = _until_both(lambda: _get(f"{workers_api.url}/ping"), "/ping")
    assert all(r.status_code == 200 for r in replies)
    names = {r.headers[HEADER] for r in replies}
    assert len(names) == WORKERS and all(len(n) == 8 for n in names)  # opaque, nothing about the host


def test_a_token_from_one_worker_is_accepted_by_the_other(workers_api, user):
    ident, key = user
    issued = httpx.post(f"{workers_api.url}/token", json={"identifier": ident, "key": key}, timeout=60)
    assert issued.status_code == 200
    token = issued.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    replies = _until_both(
        lambda: _get(f"{workers_api.url}/identities/{ident}/scopes", headers=headers), "scopes"
    )
    assert all(r.status_code == 200 and r.json() == ["*-*-*"] for r in replies)
    assert {r.headers[HEADER] for r in replies} - {issued.headers[HEADER]}  # another worker took it


def test_a_login_link_works_once_across_workers(workers_api, user):
    link = dashboard_login_url(workers_api.url, JWT_SECRET, user[0])
    first = _get(link, follow_redirects=False)
    assert first.status_code == 303
    replays = _until_both(lambda: _get(link, follow_redirects=False), "the login link")
    assert [r.status_code for r in replays] == [401] * len(replays)
    assert all("already used" in r.text for r in replays)


def test_the_token_failure_budget_holds_across_workers(workers_api, user):
    """Regression: each worker counted failures alone, so N workers allowed N x the budget."""
    ident, key = user
    codes: list[int] = []
    answered: set[str] = set()
    for _ in range(4 * TOKEN_BUDGET):
        resp = httpx.post(
            f"{workers_api.url}/token", json={"identifier": ident, "key": "wrong-key-0123456789"}, timeout=60
        )
        codes.append(resp.status_code)
        answered.add(resp.headers[HEADER])
    assert len(answered) == WORKERS, "all attempts landed on one worker: nothing shown"
    assert set(codes) == {401, 429}
    assert codes.count(401) <= TOKEN_BUDGET, codes
    # the right key is refused too now, on whichever worker
    right = [
        httpx.post(f"{workers_api.url}/token", json={"identifier": ident, "key": key}, timeout=60)
        for _ in range(6)
    ]
    assert [r.status_code for r in right] == [429] * len(right)


def test_the_background_lease_is_held_by_one_worker_and_moves_when_it_is_killed(workers_api):
    api = workers_api
    pids = {p.pid for p in api.workers()}
    holder = wait_for(api.lease_pid, 60, "a worker to hold the background lease")
    assert holder in pids
    os.kill(holder, signal.SIGKILL)
    # another worker (the survivor, or the one uvicorn starts in the dead one's place) takes over
    # once the lease runs out (10 s)
    new = wait_for(lambda: (p := api.lease_pid()) not in (None, holder) and p, 90, "the lease to move")
    assert new in {p.pid for p in api.workers()}
    # uvicorn replaces the dead worker: two serve again
    wait_for(
        lambda: len(api.workers()) == WORKERS and holder not in {p.pid for p in api.workers()},
        120,
        "a new worker",
    )
    assert _get(f"{api.url}/ping").status_code == 200
