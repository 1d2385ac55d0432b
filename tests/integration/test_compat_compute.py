"""alchemiscale's compute paths at the root, spoken as its client does (raw HTTP, no gufe):
owner binding, scopes as objects, bad bodies refused with 4xx and nothing stored."""

from __future__ import annotations

import uuid

import httpx
import pytest
from api_helpers import submit_toy

OTHER = ("test-compute-other", "compute-other-key-0123456789abcdef")


@pytest.fixture(scope="module")
def toy(api_server):
    scope = f"org1-compat-p{uuid.uuid4().hex[:8]}"
    with api_server.client() as client:
        net, _chain, tfs = submit_toy(client, scope, n=1)
        tasks = client.create_tasks(tfs[0], count=2)
        client.action_tasks(tasks, net)
    return scope, [str(t) for t in tasks]


def _http(api_server, role: str = "compute") -> httpx.Client:
    return httpx.Client(base_url=api_server.url, headers=api_server.headers(role), timeout=60)


def _other_headers(api_server) -> dict[str, str]:
    api_server.store.add_identity(OTHER[0], "compute", key=OTHER[1], scopes=["*-*-*"], replace=True)
    resp = httpx.post(f"{api_server.url}/token", data={"username": OTHER[0], "password": OTHER[1]})
    resp.raise_for_status()  # alchemiscale's OAuth2 form login
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def test_service_id_is_bound_to_its_identity(api_server):
    sid = f"bound-{uuid.uuid4().hex}"
    with _http(api_server) as http:
        assert http.post(f"/computeservice/{sid}/register", json={"compute_manager_id": None}).json() == sid
    other = _other_headers(api_server)
    for action in ("heartbeat", "deregister", "register"):
        resp = httpx.post(f"{api_server.url}/computeservice/{sid}/{action}", json={}, headers=other)
        assert resp.status_code == 403 and "another identity" in resp.json()["detail"]
    resp = httpx.post(
        f"{api_server.url}/claim",
        json={
            "scopes": [{"org": None, "campaign": None, "project": None}],
            "compute_service_id": sid,
            "count": 1,
        },
        headers=other,
    )
    assert resp.status_code == 403


def test_claim_takes_scope_objects_and_pads_with_null(api_server, toy):
    scope, tasks = toy
    org, campaign, project = scope.split("-")
    sid = f"claimer-{uuid.uuid4().hex}"
    with _http(api_server) as http:
        http.post(f"/computeservice/{sid}/register", json={"compute_manager_id": None})
        body = {
            "scopes": [{"org": org, "campaign": campaign, "project": project}],
            "compute_service_id": sid,
            "count": 3,
        }
        claimed = http.post("/claim", json=body).json()
        assert sorted(c for c in claimed if c) == sorted(tasks) and claimed.count(None) == 1
        for bad in (
            {**body, "scopes": "org1"},
            {**body, "scopes": [42]},
            {**body, "count": 0},
            {"scopes": []},
        ):
            resp = http.post("/claim", json=bad)
            assert resp.status_code == 422, (bad, resp.text)
        http.post(f"/computeservice/{sid}/deregister", json={})


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"compute_service_id": "x"}',
        b'{"protocoldagresult": {"latin-1": "not zstd"}, "compute_service_id": "SID"}',
        b'{"protocoldagresult": {"latin-1": "(\\u00b5/\\u00fd garbage"}, "compute_service_id": "SID"}',
        b'{"protocoldagresult": 5, "compute_service_id": "SID"}',
    ],
)
def test_bad_result_bodies_are_4xx_and_store_nothing(api_server, toy, body):
    _scope, tasks = toy
    sid = f"pusher-{uuid.uuid4().hex}"
    with _http(api_server) as http:
        http.post(f"/computeservice/{sid}/register", json={"compute_manager_id": None})
        resp = http.post(f"/tasks/{tasks[0]}/results", content=body.replace(b"SID", sid.encode()))
        assert 400 <= resp.status_code < 500, resp.text
        assert api_server.store.get_task_results(tasks[0], ok=None) == []
        http.post(f"/computeservice/{sid}/deregister", json={})


def test_user_token_is_refused_on_compute_paths(api_server, toy):
    _scope, tasks = toy
    with _http(api_server, "user") as http:
        resp = http.get(f"/tasks/{tasks[0]}/transformation/gufe")
        assert resp.status_code == 403 and "cannot use compute routes" in resp.json()["detail"]
