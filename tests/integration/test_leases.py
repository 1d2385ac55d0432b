"""Leases and one-time tokens in Neo4j (``backends/statestore/leases.py``, ``api/leader.py``):
one holder at a time, also when many ask at once; takeover after expiry or release; each
one-time token burnt once, also when two API apps (as two workers or hosts) race for it.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from alchemiscale_local.api.leader import LeaseKeeper
from alchemiscale_local.api.ui.session import dashboard_login_url
from tests.plugins.api_server import JWT_SECRET, running_api, serve
from tests.waiting import wait_for


def _name() -> str:
    return f"test-lease-{uuid.uuid4().hex[:8]}"


def test_one_of_many_concurrent_askers_gets_the_lease(store):
    name = _name()
    holders = [f"h{i}" for i in range(16)]
    go = threading.Barrier(len(holders))

    def ask(holder: str) -> bool:
        go.wait()
        return store.acquire_lease(name, holder, 30.0)

    with ThreadPoolExecutor(len(holders)) as pool:
        got = list(pool.map(ask, holders))
    assert got.count(True) == 1, got
    winner = holders[got.index(True)]
    lease = store.lease(name)
    assert lease["holder"] == winner and lease["live"]
    # the holder renews; the others are still refused
    assert store.acquire_lease(name, winner, 30.0)
    assert not any(store.acquire_lease(name, h, 30.0) for h in holders if h != winner)


def test_an_expired_lease_is_taken_over_and_a_released_one_at_once(store):
    name = _name()
    assert store.acquire_lease(name, "a", 4.0)
    assert not store.acquire_lease(name, "b", 4.0)
    wait_for(lambda: store.acquire_lease(name, "b", 30.0), 10, "b to take over the expired lease")
    assert store.lease(name)["holder"] == "b" and store.lease(name)["takeovers"] == 1
    assert not store.acquire_lease(name, "a", 30.0)  # a's old claim is gone
    store.release_lease(name, "a")  # not the holder: nothing changes
    assert not store.acquire_lease(name, "c", 30.0)
    store.release_lease(name, "b")
    assert store.acquire_lease(name, "c", 30.0)


def test_lease_keepers_hold_one_at_a_time_and_hand_over_on_stop(store):
    name = _name()
    keepers = [LeaseKeeper(store, f"k{i}", name=name, ttl_s=3.0, renew_s=0.5).start() for i in range(3)]
    try:
        first = wait_for(lambda: [k for k in keepers if k.held()], 30, "a keeper to hold the lease")
        for _ in range(10):  # never two at once while all of them keep asking
            assert sum(k.held() for k in keepers) <= 1
            time.sleep(0.2)
        (holder,) = first
        holder.stop()
        after = store.lease(name)  # handed back at once (or already taken by another keeper)
        assert after["holder"] != holder.holder or not after["live"]
        rest = [k for k in keepers if k is not holder]
        nxt = wait_for(lambda: [k for k in rest if k.held()], 30, "another keeper to take over")
        assert len(nxt) == 1 and store.lease(name)["holder"] == nxt[0].holder
    finally:
        for k in keepers:
            k.stop()


def test_a_one_time_token_is_burnt_once_by_concurrent_consumers(store):
    jti = uuid.uuid4().hex
    go = threading.Barrier(8)

    def consume(_: int) -> bool:
        go.wait()
        return store.consume_once(jti, time.time() + 60)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(consume, range(8)))
    assert got.count(True) == 1, got
    assert store.consume_once(uuid.uuid4().hex, time.time() + 60)  # another token is its own


def test_expired_one_time_tokens_are_pruned(store):
    old = uuid.uuid4().hex
    assert store.consume_once(old, time.time() - 1)  # already past its expiry
    store.consume_once(uuid.uuid4().hex, time.time() + 60)  # any consume prunes
    rows = store._read("MATCH (u:UsedToken {jti: $j}) RETURN u", j=old)
    assert rows == []


@pytest.fixture
def two_apps(neo4j_connection, tmp_path):
    """Two API apps on the session's Neo4j (as two workers or two hosts would be): their URLs."""
    with running_api(neo4j_connection, tmp_path / "a", reset=False) as a:
        from alchemiscale_local.api import create_app

        second = create_app(a.settings, store=a.store, objects=a.objects)
        with serve(second) as url_b:
            yield a, url_b


def test_a_login_link_used_on_one_app_is_refused_by_another(two_apps):
    """Regression: used links were remembered per process, so each worker accepted one once."""
    server, url_b = two_apps
    ident = server.credentials["user"][0]
    link = dashboard_login_url(server.url, JWT_SECRET, ident)
    first = httpx.get(link, follow_redirects=False, timeout=60)
    assert first.status_code == 303 and "alchemiscale_ui" in first.cookies
    again = httpx.get(link.replace(server.url, url_b), follow_redirects=False, timeout=60)
    assert again.status_code == 401 and "already used" in again.text
    assert httpx.get(link, follow_redirects=False, timeout=60).status_code == 401
