"""Compute API hardening (issue 12): service-id ownership (F2), validated result uploads (F7),
refused uploads fail the task (F3), late results (alchemiscale #513) and unwanted tasks.

Real Neo4j and a live uvicorn API; results pushed over HTTP as a service would.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import zstandard
from api_helpers import pdr_document, submit_toy

from alchemiscale_local.client import (
    AuthError,
    ComputeClient,
    ConflictError,
    CorruptResult,
    NotFoundError,
    ValidationError,
)
from tests.plugins.api_server import CLIENT_OPTIONS

OTHER = ("test-compute-other", "test-compute-other-key-0123456789")


@pytest.fixture(scope="module")
def other_compute(api_server):
    """A second compute identity (scope org2-*-*): another lab's services."""
    api_server.store.add_identity(OTHER[0], "compute", key=OTHER[1], scopes=["org2-*-*"], replace=True)
    with ComputeClient(api_server.url, *OTHER, **CLIENT_OPTIONS) as client:
        yield client


@pytest.fixture
def work(user_client, compute_client):
    """A network with three actioned tasks in a fresh org1 project and a registered service."""
    scope = f"org1-harden-p{uuid.uuid4().hex[:8]}"
    net, _chain, tfs = submit_toy(user_client, scope, n=3)
    tasks = [user_client.create_tasks(tf)[0] for tf in tfs]
    user_client.action_tasks(tasks, net)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    yield {"scope": scope, "net": net, "tfs": tfs, "tasks": tasks, "service": service}
    try:
        compute_client.deregister(service)
    except NotFoundError:
        pass


def push_raw(server, task, service: str, pdr_key: str, ok: bool, data: bytes, role: str = "compute"):
    """One result upload over plain HTTP (no client retries): the response as it came."""
    return httpx.post(
        f"{server.url}/compute/tasks/{task}/results",
        params={"compute_service_id": service, "pdr_key": pdr_key, "ok": str(ok).lower()},
        content=data,
        headers={**server.headers(role), "Content-Type": "application/zstd"},
        timeout=60,
    )


def claim_one(compute, service: str, scope: str):
    got = [t for t in compute.claim_tasks(service, scopes=[scope]) if t is not None]
    assert len(got) == 1, got
    return got[0]


def gufe_key(sk) -> str:
    return str(sk).rsplit("-", 3)[0]


# -- F2: a service id belongs to the identity that registered it ---------------------------
def test_service_id_is_bound_to_its_registering_identity(api_server, compute_client, other_compute, work):
    svc, task = work["service"], claim_one(compute_client, work["service"], work["scope"])
    pdr_key, _, data = pdr_document(str(task))
    calls = {
        "register": lambda: other_compute.register(svc),
        "heartbeat": lambda: other_compute.heartbeat(svc),
        "claim": lambda: other_compute.claim_tasks(svc, scopes=["*-*-*"]),
        "unwanted": lambda: other_compute.unwanted_tasks(svc, [task]),
        "deregister": lambda: other_compute.deregister(svc),
    }
    for name, call in calls.items():
        with pytest.raises(AuthError) as info:
            call()
        assert info.value.status == 403, name
        assert "belongs to another identity" in str(info.value), name
    # The other identity's token on a push in svc's name: refused (403: scope org1, or owner).
    other = ComputeClient(api_server.url, *OTHER, **CLIENT_OPTIONS)
    with pytest.raises(AuthError) as info:
        other.push_result(task, svc, pdr_key, True, data)
    assert info.value.status == 403
    # svc still holds its task and nothing was released or completed.
    assert compute_client.unwanted_tasks(svc, [task]) == []
    assert api_server.store.get_tasks([str(task)])[0]["status"] == "running"
    assert compute_client.push_result(task, svc, pdr_key, True, data)["status"] == "complete"


def test_same_scope_identity_cannot_use_another_identitys_service(api_server, compute_client, work):
    """Even with every scope, an identity cannot act through a service id it did not register."""
    ident, key = "test-compute-wide", "test-compute-wide-key-0123456789"
    api_server.store.add_identity(ident, "compute", key=key, scopes=["*-*-*"], replace=True)
    svc, task = work["service"], claim_one(compute_client, work["service"], work["scope"])
    pdr_key, _, data = pdr_document(str(task))
    with ComputeClient(api_server.url, ident, key, **CLIENT_OPTIONS) as wide:
        with pytest.raises(AuthError, match="belongs to another identity"):
            wide.push_result(task, svc, pdr_key, True, data)
        with pytest.raises(AuthError, match="belongs to another identity"):
            wide.claim_tasks(svc, scopes=[work["scope"]])
        # Its own service id works, within its scopes.
        mine = f"svc-wide-{uuid.uuid4().hex[:6]}"
        assert wide.register(mine) == mine
        wide.deregister(mine)
    assert api_server.store.get_tasks([str(task)])[0]["status"] == "running"


# -- F7: uploads are validated before the task completes ------------------------------------
def _bad_uploads(task, tf_other: str) -> list[tuple[str, str, bool, bytes, str]]:
    """(what, pdr key, ok, body, a phrase the 400's detail must contain) for one task."""
    z = zstandard.ZstdCompressor().compress
    pdr_key, chain, _ = pdr_document(str(task))
    root = dict(chain[-1][1], __qualname__="Transformation")
    failed_key, _, failed = pdr_document(str(task), ok=False)
    wrong_key, _, wrong_tf = pdr_document(str(task), transformation_key=tf_other)
    return [
        ("zstd magic + garbage", pdr_key, True, b"\x28\xb5\x2f\xfd" + b"garbage" * 20, "zstd"),
        ("not utf-8 json", pdr_key, True, z(b"\x80\x81 not json"), "JSON"),
        ("not a chain", pdr_key, True, z(b'{"a": 1}'), "keyed chain"),
        (
            "root not a PDR",
            pdr_key,
            True,
            z(_dumps([*chain[:-1], [pdr_key, root]])),
            "not a ProtocolDAGResult",
        ),
        ("pdr_key differs", "ProtocolDAGResult-" + "0" * 32, True, z(_dumps(chain)), "pdr_key"),
        ("ok flag lies", failed_key, True, failed, "failed"),
        ("another transformation", wrong_key, True, wrong_tf, "not of the task's transformation"),
    ]


def _dumps(chain) -> bytes:
    return json.dumps(chain).encode()


def test_bad_result_uploads_are_400_and_never_complete_the_task(api_server, compute_client, work):
    store = api_server.store
    for n in range(7):
        svc = f"svc-bad{n}-{uuid.uuid4().hex[:6]}"
        compute_client.register(svc)
        task = claim_one(compute_client, svc, work["scope"])
        tf = gufe_key(store.get_tasks([str(task)])[0]["transformation"])
        other_tf = next(gufe_key(t) for t in work["tfs"] if gufe_key(t) != tf)
        what, pdr_key, ok, data, needle = _bad_uploads(task, other_tf)[n]
        resp = push_raw(api_server, task, svc, pdr_key, ok, data)
        assert resp.status_code == 400, (what, resp.status_code, resp.text)
        assert needle in resp.json()["detail"], (what, resp.text)
        # F3: a refused upload fails the task (not complete, not left running to be rerun).
        assert store.get_tasks([str(task)])[0]["status"] == "error", what
        assert store.get_task_results(str(task), ok=None) == [], what
        assert [s["failures"] for s in store.list_computeservices() if s["identifier"] == svc] == [1], what
        store.set_task_status([str(task)], "waiting")
        compute_client.deregister(svc)


def test_refused_upload_counts_for_the_failure_gate(api_server, compute_client, work):
    """A service whose uploads are refused again and again is denied claims (no loop)."""
    svc = work["service"]
    max_failures = api_server.settings.api.max_failures
    for _ in range(max_failures + 1):
        task = claim_one(compute_client, svc, work["scope"])
        resp = push_raw(
            api_server, task, svc, f"ProtocolDAGResult-{uuid.uuid4().hex}", True, b"\x28\xb5\x2f\xfdxx"
        )
        assert resp.status_code == 400
        assert api_server.store.get_tasks([str(task)])[0]["status"] == "error"
        api_server.store.set_task_status([str(task)], "waiting")
    assert compute_client.claim_tasks(svc, scopes=[work["scope"]]) is None


def test_client_raises_corrupt_result_on_a_bad_stored_object(api_server, user_client, compute_client, work):
    """A bad object stored by an older server (written here through the stores directly)."""
    from alchemiscale_local.models import ResultRef

    task = claim_one(compute_client, work["service"], work["scope"])
    tf = api_server.store.get_tasks([str(task)])[0]["transformation"]
    pdr_key = f"ProtocolDAGResult-{uuid.uuid4().hex}"
    bad = b"\x28\xb5\x2f\xfd" + b"\x00" * 40
    stored = api_server.objects.push_result(
        bad, scope=task.scope, transformation_key=gufe_key(tf), pdr_key=pdr_key, ok=True
    )
    ref = ResultRef(
        location=stored.location, size=stored.size, sha256=stored.sha256, ok=True, pdr_key=pdr_key
    )
    api_server.store.set_task_result(str(task), ref, identifier=work["service"])
    with pytest.raises(CorruptResult, match="does not decode"):
        user_client.get_transformation_results(tf, "ProtocolDAGResults")


# -- late results (alchemiscale #513) -----------------------------------------------------------
def test_late_result_is_kept_without_changing_the_task(api_server, compute_client, work):
    svc, store = work["service"], api_server.store
    task = claim_one(compute_client, svc, work["scope"])
    tf = store.get_tasks([str(task)])[0]["transformation"]
    compute_client.deregister(svc)  # the claim is lost: the task goes back to waiting
    assert store.get_tasks([str(task)])[0]["status"] == "waiting"
    pdr_key, _, data = pdr_document(str(task))
    out = compute_client.push_result(task, svc, pdr_key, True, data)
    assert out["late"] is True and out["status"] == "waiting"
    assert store.get_tasks([str(task)])[0]["status"] == "waiting"
    assert [r["pdr_key"] for r in store.get_transformation_results(tf)] == [pdr_key]
    # The same late result again (a retried push) is stored once.
    assert compute_client.push_result(task, svc, pdr_key, True, data)["late"] is True
    assert len(store.get_transformation_results(tf)) == 1

    # Another service now runs it; the first one's second late result is kept, the run goes on.
    svc2 = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(svc2)
    compute_client.register(svc)
    assert task in compute_client.claim_tasks(svc2, count=3, scopes=[work["scope"]])
    k2, _, d2 = pdr_document(str(task))
    assert compute_client.push_result(task, svc, k2, True, d2)["status"] == "running"
    assert store.get_tasks([str(task)])[0]["claimed_by"] == svc2

    # Completed by svc2: a late result after that is refused (409), nothing stored.
    k3, _, d3 = pdr_document(str(task))
    assert compute_client.push_result(task, svc2, k3, True, d3)["status"] == "complete"
    k4, _, d4 = pdr_document(str(task))
    with pytest.raises(ConflictError, match="already complete"):
        compute_client.push_result(task, svc, k4, True, d4)
    assert {r["pdr_key"] for r in store.get_transformation_results(tf)} == {pdr_key, k2, k3}
    compute_client.deregister(svc2)


def test_result_from_a_service_that_never_claimed_the_task_is_refused(api_server, compute_client, work):
    task = claim_one(compute_client, work["service"], work["scope"])
    stranger = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(stranger)
    pdr_key, _, data = pdr_document(str(task))
    with pytest.raises(ConflictError, match="never was"):
        compute_client.push_result(task, stranger, pdr_key, True, data)
    assert api_server.store.get_task_results(str(task), ok=None) == []
    compute_client.deregister(stranger)


# -- unwanted tasks --------------------------------------------------------------------------
def test_unwanted_tasks_names_each_task_to_stop(api_server, user_client, compute_client, work):
    svc, store, scope = work["service"], api_server.store, work["scope"]
    held = [t for t in compute_client.claim_tasks(svc, count=3, scopes=[scope]) if t]
    assert len(held) == 3
    assert compute_client.unwanted_tasks(svc, held) == []  # all running, claimed, active

    # cancelled: no network actions it any more
    user_client.cancel_tasks([held[0]], work["net"])
    assert compute_client.unwanted_tasks(svc, held) == [str(held[0])]
    # no longer running: its status was changed (here: invalid)
    user_client.set_tasks_status([held[1]], "invalid")
    assert compute_client.unwanted_tasks(svc, held) == [str(held[0]), str(held[1])]
    # the network was set inactive, then deleted
    user_client.set_network_state(work["net"], "inactive")
    assert compute_client.unwanted_tasks(svc, held) == [str(t) for t in held]
    resp = httpx.post(
        f"{api_server.url}/compute/computeservice/{svc}/tasks/unwanted",
        json={"tasks": [str(held[2])]},
        headers=api_server.headers("compute"),
    )
    assert resp.json()["reasons"] == {str(held[2]): "network inactive"}
    user_client.set_network_state(work["net"], "active")
    assert compute_client.unwanted_tasks(svc, [held[2]]) == []

    # claim lost and given to another service
    compute_client.deregister(svc)
    compute_client.register(svc)
    other = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(other)
    assert claim_one(compute_client, other, scope) == held[2]
    assert compute_client.unwanted_tasks(svc, [held[2]]) == [str(held[2])]
    assert compute_client.unwanted_tasks(other, [held[2]]) == []
    assert store.get_tasks([str(held[2])])[0]["claimed_by"] == other
    compute_client.deregister(other)


def test_unwanted_tasks_refuses_bad_input(api_server, compute_client, work):
    with pytest.raises(ValidationError):
        compute_client.unwanted_tasks(work["service"], ["not a key"])
    # A task key outside the identity's scopes is 403 (org3 is in *-*-*: use the org2 identity).
    with pytest.raises(AuthError):
        ComputeClient(api_server.url, *OTHER, **CLIENT_OPTIONS).unwanted_tasks(
            "svc-any", [f"Task-{'0' * 32}-org1-a-b"]
        )


def test_held_tasks_are_redelivered_only_within_the_callers_scopes(api_server, user_client, work):
    """A claim hands back tasks the service holds, but not outside the identity's scopes."""
    ident, key = f"test-compute-narrow-{uuid.uuid4().hex[:6]}", "test-compute-narrow-key-0123456789"
    api_server.store.add_identity(ident, "compute", key=key, scopes=["*-*-*"])
    svc = f"svc-{uuid.uuid4().hex[:8]}"
    with ComputeClient(api_server.url, ident, key, **CLIENT_OPTIONS) as wide:
        wide.register(svc)
        task = claim_one(wide, svc, work["scope"])
        assert wide.claim_tasks(svc, scopes=["*-*-*"]) == [task]  # held: handed back
    api_server.store.set_identity_scopes(ident, ["org2-*-*"])
    with ComputeClient(api_server.url, ident, key, **CLIENT_OPTIONS) as narrow:  # a new token
        assert narrow.claim_tasks(svc, scopes=["*-*-*"]) == [None]
        narrow.deregister(svc)
    api_server.store.remove_identity(ident)
