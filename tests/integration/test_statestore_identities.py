"""State store: credentialed identities (bcrypt keys, scopes, disabled, expiry)."""

from __future__ import annotations

import time

import pytest
from alchemiscale_local.backends.statestore import Conflict, InvalidInput, NotFound
from statestore_helpers import graph_snapshot

KEY = "correct-horse-battery-staple"


def test_add_list_remove(store):
    generated = store.add_identity("alice", "user", scopes=["org-camp-proj", "org-*-*"])
    assert isinstance(generated, str) and len(generated) >= 16
    assert store.add_identity("worker1", "compute", key=KEY) == KEY
    rows = store.list_identities()
    assert [r["identifier"] for r in rows] == ["alice", "worker1"]
    assert rows[0]["kind"] == "user" and rows[0]["scopes"] == ["org-camp-proj", "org-*-*"]
    assert rows[0]["disabled"] is False and rows[0]["expires"] is None
    assert [r["identifier"] for r in store.list_identities("compute")] == ["worker1"]
    ident = store.get_identity("alice")
    assert ident["hashed_key"].startswith("$2") and generated not in ident["hashed_key"]
    store.set_identity_scopes("alice", ["x-y-z"])
    assert store.get_identity("alice")["scopes"] == ["x-y-z"]
    store.remove_identity("alice")
    assert [r["identifier"] for r in store.list_identities()] == ["worker1"]
    with pytest.raises(NotFound):
        store.remove_identity("alice")
    with pytest.raises(NotFound):
        store.get_identity("alice")
    for call in (
        lambda: store.set_identity_disabled("alice", True),
        lambda: store.set_identity_scopes("alice", []),
    ):
        with pytest.raises(NotFound):
            call()


def test_duplicate_add_is_a_conflict_and_keeps_the_original(store):
    store.add_identity("bob", "user", key=KEY)
    before = graph_snapshot(store.driver)
    with pytest.raises(Conflict):
        store.add_identity("bob", "compute", key="another-key-of-enough-length")
    assert graph_snapshot(store.driver) == before
    assert store.authenticate("bob", KEY)["kind"] == "user"
    # replace=True is the explicit way to overwrite.
    store.add_identity("bob", "user", key="another-key-of-enough-length", replace=True)
    assert store.authenticate("bob", KEY) is None
    assert store.authenticate("bob", "another-key-of-enough-length") is not None


def test_authenticate(store):
    store.add_identity("carol", "user", key=KEY, scopes=["org-camp-proj"])
    ident = store.authenticate("carol", KEY)
    assert ident is not None and ident["identifier"] == "carol" and ident["scopes"] == ["org-camp-proj"]
    assert store.authenticate("carol", KEY + "x") is None
    assert store.authenticate("carol", "") is None
    assert store.authenticate("nobody", KEY) is None


def test_disabled_identity_cannot_authenticate(store):
    store.add_identity("dave", "compute", key=KEY)
    store.set_identity_disabled("dave", True)
    assert store.authenticate("dave", KEY) is None
    assert store.get_identity("dave")["disabled"] is True
    store.set_identity_disabled("dave", False)
    assert store.authenticate("dave", KEY) is not None


def test_expired_identity_cannot_authenticate(store):
    store.add_identity("erin", "user", key=KEY, expires=time.time() - 1)
    store.add_identity("frank", "user", key=KEY, expires=time.time() + 3600)
    assert store.authenticate("erin", KEY) is None
    assert store.authenticate("frank", KEY) is not None


def test_identity_bad_input(store):
    before = graph_snapshot(store.driver)
    for kwargs in (
        {"identifier": "", "kind": "user"},
        {"identifier": "-leading-dash", "kind": "user"},
        {"identifier": "has space", "kind": "user"},
        {"identifier": "a" * 129, "kind": "user"},
        {"identifier": "ok", "kind": "admin"},
        {"identifier": "ok", "kind": "user", "key": "short"},
        {"identifier": "ok", "kind": "user", "scopes": ["a-b"]},
        {"identifier": "ok", "kind": "user", "scopes": ["*-x-y"]},
    ):
        with pytest.raises(InvalidInput):
            store.add_identity(**kwargs)
    store.add_identity("ok", "user", key=KEY)
    snap = graph_snapshot(store.driver)
    with pytest.raises(InvalidInput):
        store.set_identity_scopes("ok", ["org/camp/proj"])
    assert graph_snapshot(store.driver) == snap
    assert before["nodes"] == 0
