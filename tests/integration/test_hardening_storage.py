"""Object store hardening (issue 12): one scope-part rule at the API edge (F3) and storage
errors on upload as 503 with a reason, the task left running (F4).

F4 uses real filesystems: a read-only tmpfs (EROFS) and a full one (ENOSPC), mounted for the
test. Root ignores file modes, so ``chmod`` would prove nothing here; a read-only mount and a
full tmpfs refuse root too. Skipped where mounting is not allowed (no CAP_SYS_ADMIN).
"""

from __future__ import annotations

import errno
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from alchemiscale_local.backends.objectstore import InvalidPath, paths
from api_helpers import pdr_document, submit_toy, toy_network

from alchemiscale_local.models import SCOPE_PART_MAX, SCOPE_PART_RE, InvalidIdentifier, Scope
from tests.plugins.api_server import running_api


# -- F3: one rule for scope parts ------------------------------------------------------------
def test_scope_part_over_the_object_store_limit_is_refused_at_create_network(api_server, user_client):
    chain_scope = f"org1-c{uuid.uuid4().hex[:6]}-"
    too_long = "p" * (SCOPE_PART_MAX + 1)
    resp = httpx.post(
        f"{api_server.url}/networks",
        json={
            "network": toy_network(1),
            "scope": chain_scope + too_long,
        },
        headers=api_server.headers("user"),
    )
    assert resp.status_code == 422, resp.text
    assert f"at most {SCOPE_PART_MAX}" in resp.json()["detail"] and "object store" in resp.json()["detail"]
    assert api_server.store.query_networks(scope=f"org1-{chain_scope.split('-')[1]}-*") == []

    # At the limit: accepted, and a result of its task is stored (no refusal at upload).
    scope = chain_scope + "p" * SCOPE_PART_MAX
    net, _, tfs = submit_toy(user_client, scope, n=1)
    task = user_client.create_tasks(tfs[0])[0]
    user_client.action_tasks([task], net)
    with api_server.compute() as compute:
        svc = f"svc-{uuid.uuid4().hex[:8]}"
        compute.register(svc)
        assert compute.claim_tasks(svc, scopes=[scope]) == [task]
        pdr_key, _, data = pdr_document(str(task))
        assert compute.push_result(task, svc, pdr_key, True, data)["status"] == "complete"
        compute.deregister(svc)


@pytest.mark.parametrize(
    "part", ["a" * SCOPE_PART_MAX, "a" * (SCOPE_PART_MAX + 1), "a_1", "1a", "a.b", "a\n", "", "é"]
)
def test_scope_model_and_object_store_paths_share_one_rule(part):
    try:
        Scope(org=part, campaign="c", project="p")
        model_ok = True
    except (InvalidIdentifier, ValueError):
        model_ok = False
    # the object store checks path parts with the models' one pattern, and its scope parser agrees
    assert paths.SCOPE_PART_RE is SCOPE_PART_RE
    assert bool(SCOPE_PART_RE.match(part)) == model_ok, part
    try:
        paths.scope_parts(f"{part}-c-p")
        store_ok = True
    except InvalidPath:
        store_ok = False
    assert store_ok == model_ok, part


# -- F4: a store that cannot take objects is 503 with a reason, never 500 -----------------------
@pytest.fixture
def tmpfs():
    """``mount(path, options)``: a tmpfs at ``path`` for this test (unmounted after it)."""
    mounted: list[Path] = []

    def mount(path: Path, options: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
        mounted.append(path)

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def _claimed_task(server):
    """A fresh network with one task, claimed by a new service: (task, service)."""
    scope = f"org1-storage-p{uuid.uuid4().hex[:8]}"
    with server.client() as user, server.compute() as compute:
        net, _, tfs = submit_toy(user, scope, n=1)
        task = user.create_tasks(tfs[0])[0]
        user.action_tasks([task], net)
        svc = f"svc-{uuid.uuid4().hex[:8]}"
        compute.register(svc)
        assert compute.claim_tasks(svc, scopes=[scope]) == [task]
    return task, svc


def _push(server, task, svc: str, pdr_key: str, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/compute/tasks/{task}/results",
        params={"compute_service_id": svc, "pdr_key": pdr_key, "ok": "true"},
        content=data,
        headers={**server.headers("compute"), "Content-Type": "application/zstd"},
        timeout=60,
    )


def _assert_unavailable_then_recovers(server, reason: str, recover) -> None:
    task, svc = _claimed_task(server)
    pdr_key, _, data = pdr_document(str(task))
    resp = _push(server, task, svc, pdr_key, data)
    assert resp.status_code == 503, resp.text
    assert reason in resp.json()["detail"] and resp.headers.get("Retry-After")
    info = server.store.get_tasks([str(task)])[0]
    assert (info["status"], info["claimed_by"]) == ("running", svc)  # kept for the retry
    assert server.store.get_task_results(str(task), ok=None) == []
    check = httpx.get(f"{server.url}/check", headers=server.headers("user"), timeout=30)
    assert check.status_code == 503 and reason in check.json()["detail"]["objectstore"]
    assert "statestore" not in check.json()["detail"]

    recover()
    resp = _push(server, task, svc, pdr_key, data)
    assert resp.status_code == 200 and resp.json()["status"] == "complete", resp.text
    assert httpx.get(f"{server.url}/check", headers=server.headers("user"), timeout=30).status_code == 200


def test_read_only_object_store_is_503_and_the_task_keeps_running(neo4j_connection, tmp_path, tmpfs):
    objects = tmp_path / "objects"
    tmpfs(objects, "ro,size=4m,mode=0700")
    with running_api(neo4j_connection, tmp_path, reset=False) as server:

        def make_writable() -> None:
            subprocess.run(["mount", "-o", "remount,rw", str(objects)], check=True)

        _assert_unavailable_then_recovers(server, "read-only", make_writable)


def test_full_object_store_is_503_and_the_task_keeps_running(neo4j_connection, tmp_path, tmpfs):
    objects = tmp_path / "objects"
    tmpfs(objects, "size=256k,mode=0700")
    filler = objects / "filler"
    with open(filler, "wb", buffering=0) as fh:
        with pytest.raises(OSError) as info:
            while True:
                fh.write(b"\0" * 4096)
        assert info.value.errno == errno.ENOSPC
    with running_api(neo4j_connection, tmp_path, reset=False) as server:
        _assert_unavailable_then_recovers(server, "full", filler.unlink)
