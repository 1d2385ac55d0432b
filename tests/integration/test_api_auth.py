"""The auth matrix over every route of the app, tokens, identities and scope checks."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from api_helpers import ANY_KIND_ROUTES, alchemiscale_compute_routes, api_routes, submit_toy

from alchemiscale_local.client import AlchemiscaleLocalClient, AuthError, ComputeClient
from tests.pdr_pool import pdr_chain
from tests.plugins.api_server import CLIENT_OPTIONS

ROUTES = api_routes()
ALCH_COMPUTE = alchemiscale_compute_routes()
USER_ROUTES = [
    r
    for r in ROUTES
    if not r[1].startswith("/compute") and r[1] not in ANY_KIND_ROUTES and r not in ALCH_COMPUTE
]
COMPUTE_ROUTES = [r for r in ROUTES if r[1].startswith("/compute") or r in ALCH_COMPUTE]
KEY_PARAM = re.compile(r"\{(network|transformation|chemicalsystem|task|scoped_key)\}")
KEYED_USER_ROUTES = [r for r in USER_ROUTES if KEY_PARAM.search(r[1])]
KEYED_COMPUTE_ROUTES = [r for r in COMPUTE_ROUTES if KEY_PARAM.search(r[1])]
# A compute identity limited to org1 (the keys fixture's objects live in org2).
LIMITED_COMPUTE = ("test-compute-org1", "compute-org1-key-0123456789")


@pytest.fixture(scope="module")
def keys(api_server):
    """Real keys in scope org2-auth-proj (outside the limited identity's org1)."""
    with api_server.client() as client:
        net, chain, tfs = submit_toy(client, "org2-auth-proj", n=1)
        task = client.create_tasks(tfs[0])[0]
        cs = client.get_network_chemicalsystems(net)[0]
    return {
        "network": str(net),
        "transformation": str(tfs[0]),
        "chemicalsystem": str(cs),
        "task": str(task),
        "scoped_key": str(net),
        "identifier": "test-user",
        "compute_service_id": "authsvc-0123456789abcdef",
        "scope": "org2-auth-proj",
        "pdr_key": pdr_chain()[-1][0],  # a real gufe-made key, of no stored result
        "path": "protocol.log",  # a kept file of a task attempt
    }


def _url(api_server, path: str, keys: dict) -> str:
    return api_server.url + re.sub(r"\{(\w+)\}", lambda m: keys[m.group(1)], path)


def _body(path: str, keys: dict) -> dict | str:
    """A valid body for the route, so that only the scope check can refuse it."""
    if path.endswith(("/restartpatterns/add", "/restartpatterns/maxretries")):
        return {"patterns": ["x"], "num_allowed_restarts": 1}
    if path.endswith("/restartpatterns/remove"):
        return {"patterns": ["x"]}
    if path.endswith("/weight"):
        return {"weight": 0.5}
    if path.endswith(("/tasks/action", "/tasks/cancel")):
        return {"tasks": [keys["task"]]}
    if path == "/tasks/{task}/status":  # POST: alchemiscale's body is the bare status
        return "waiting"
    if path == "/compute/tasks/{task}/files/{pdr_key}/manifest":
        return {"ok": True, "created": time.time()}
    return {}


def _params(path: str, keys: dict) -> dict:
    """Query parameters a route requires, so that only the scope check can refuse it."""
    if path == "/compute/tasks/{task}/results":
        return {"compute_service_id": "svc-scope", "pdr_key": keys["pdr_key"], "ok": "true"}
    if path == "/compute/tasks/{task}/files/{pdr_key}/manifest":
        return {"compute_service_id": "svc-scope"}
    if path == "/compute/tasks/{task}/files/{pdr_key}/{path}":
        return {"compute_service_id": "svc-scope", "sha256": "0" * 64, "size": 0}
    return {}


def _call(api_server, method: str, path: str, keys: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.request(
        method,
        _url(api_server, path, keys),
        headers=headers or {},
        params=_params(path, keys),
        json=_body(path, keys) if method != "GET" else None,
        timeout=30,
    )


def _claims(kind: str = "user", **extra) -> dict:
    now = int(time.time())
    return {"sub": "test-user", "kind": kind, "scopes": ["*-*-*"], "iat": now, "exp": now + 600, **extra}


def test_route_inventory():
    assert len(ROUTES) > 50
    assert len(COMPUTE_ROUTES) >= 8
    assert ("POST", "/networks") in USER_ROUTES
    # every compute route that takes a task key is in the compute scope matrix
    assert {p for _, p in KEYED_COMPUTE_ROUTES} >= {
        "/compute/tasks/{task}/transformation",
        "/compute/tasks/{task}/inputs",
        "/compute/tasks/{task}/extends/result",
        "/compute/tasks/{task}/results",
    }


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_token_or_bad_token_is_401(api_server, keys, method, path):
    bad_tokens = [
        None,
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer " + api_server.sign(_claims(exp=int(time.time()) - 30)),  # expired
        "Bearer " + api_server.sign(_claims(), secret="another-secret-another-secret-00"),
        "Bearer " + api_server.sign({k: v for k, v in _claims().items() if k != "exp"}),  # no expiry
        "Bearer " + api_server.sign(_claims(scopes=["not a scope"])),
    ]
    for auth in bad_tokens:
        resp = _call(api_server, method, path, keys, {"Authorization": auth} if auth else None)
        assert resp.status_code == 401, (auth, resp.text)
        assert resp.json()["detail"]


@pytest.mark.parametrize(("method", "path"), COMPUTE_ROUTES)
def test_user_token_on_compute_route_is_403(api_server, keys, method, path):
    resp = _call(api_server, method, path, keys, api_server.headers("user"))
    assert resp.status_code == 403 and "user identity cannot use compute routes" in resp.json()["detail"]


@pytest.mark.parametrize(("method", "path"), USER_ROUTES)
def test_compute_token_on_user_route_is_403(api_server, keys, method, path):
    resp = _call(api_server, method, path, keys, api_server.headers("compute"))
    assert resp.status_code == 403 and "compute identity cannot use user routes" in resp.json()["detail"]


@pytest.mark.parametrize(("method", "path"), KEYED_USER_ROUTES)
def test_out_of_scope_key_is_403(api_server, keys, method, path):
    resp = _call(api_server, method, path, keys, api_server.headers("limited"))
    assert resp.status_code == 403, resp.text
    assert "no access to scope org2-auth-proj" in resp.json()["detail"]


@pytest.fixture(scope="module")
def limited_compute_headers(api_server) -> dict[str, str]:
    """Bearer header of a compute identity whose only scope is org1-*-*."""
    ident, key = LIMITED_COMPUTE
    api_server.store.add_identity(ident, "compute", key=key, scopes=["org1-*-*"], replace=True)
    resp = httpx.post(f"{api_server.url}/token", json={"identifier": ident, "key": key}, timeout=30)
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


@pytest.mark.parametrize(("method", "path"), KEYED_COMPUTE_ROUTES)
def test_out_of_scope_key_on_compute_route_is_403(api_server, keys, limited_compute_headers, method, path):
    """Compute task routes run the scoped key check: an org1 service cannot touch an org2 task."""
    resp = _call(api_server, method, path, keys, limited_compute_headers)
    assert resp.status_code == 403, resp.text
    assert "test-compute-org1 has no access to scope org2-auth-proj" in resp.json()["detail"]
    # The same request with an all-scopes compute token gets past the scope check (not a 403).
    resp = _call(api_server, method, path, keys, api_server.headers("compute"))
    assert resp.status_code != 403, resp.text


def test_out_of_scope_in_bodies_and_queries(api_server, keys, limited_client):
    with pytest.raises(AuthError) as info:
        limited_client.set_tasks_status([keys["task"]], "invalid")
    assert info.value.status == 403
    with pytest.raises(AuthError):
        limited_client.create_network([["x", {}]], "org2-auth-proj", visualize=False)
    # Bulk getters hide what is out of scope instead of failing.
    assert limited_client.get_tasks_status([keys["task"]]) == [None]
    assert limited_client.get_tasks_priority([keys["task"]]) == [None]
    assert limited_client.query_tasks(scope="org2-*-*") == []
    assert all(t.org == "org1" for t in limited_client.query_transformations())
    assert limited_client.get_scope_status("org2-auth-proj", visualize=False) == {}


def test_identity_scopes_route(api_server):
    resp = httpx.get(f"{api_server.url}/identities/test-user/scopes", headers=api_server.headers("limited"))
    assert resp.status_code == 403
    resp = httpx.get(
        f"{api_server.url}/identities/test-limited/scopes", headers=api_server.headers("limited")
    )
    assert resp.json() == ["org1-*-*"]
    resp = httpx.get(
        f"{api_server.url}/identities/test-compute/scopes", headers=api_server.headers("compute")
    )
    assert resp.json() == ["*-*-*"]


def test_token_endpoint(api_server):
    ident, key = api_server.credentials["user"]
    form = httpx.post(f"{api_server.url}/token", data={"username": ident, "password": key})
    assert form.status_code == 200 and form.json()["token_type"] == "bearer" and form.json()["kind"] == "user"
    js = httpx.post(f"{api_server.url}/token", json={"identifier": ident, "key": key})
    assert js.status_code == 200 and js.json()["expires_in"] == api_server.settings.api.token_ttl_s
    for body in ({"identifier": ident, "key": key + "x"}, {"identifier": "nobody", "key": key}):
        resp = httpx.post(f"{api_server.url}/token", json=body)
        assert resp.status_code == 401 and "wrong identifier or key" in resp.json()["detail"]
    for kwargs in (
        {"json": {"identifier": ident}},
        {"json": {}},
        {"json": [1, 2]},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"content": b"\xff\xfe", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"json": {"identifier": 5, "key": ["x"]}},
        {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"Content-Type": "application/json"}},
    ):
        resp = httpx.post(f"{api_server.url}/token", **kwargs)
        assert resp.status_code == 400, (kwargs, resp.text)
        assert resp.json()["detail"]


def test_disabled_identity_cannot_get_a_token(api_server):
    api_server.store.add_identity(
        "test-disabled", "user", key="disabled-key-0123456789", scopes=["*-*-*"], replace=True
    )
    client = AlchemiscaleLocalClient(
        api_server.url, "test-disabled", "disabled-key-0123456789", **CLIENT_OPTIONS
    )
    assert client.get_scopes()
    api_server.store.set_identity_disabled("test-disabled", True)
    fresh = AlchemiscaleLocalClient(
        api_server.url, "test-disabled", "disabled-key-0123456789", **CLIENT_OPTIONS
    )
    with pytest.raises(AuthError) as info:
        fresh.get_scopes()
    assert info.value.status == 401


def test_client_refreshes_an_expired_token_once(api_server):
    client = api_server.client()
    client.get_scopes()
    expired = api_server.sign(_claims(exp=int(time.time()) - 5))
    client._token = expired
    assert [str(s) for s in client.get_scopes()] == ["*-*-*"]
    assert client._token != expired


def test_wrong_key_and_wrong_kind_clients(api_server):
    ident, _ = api_server.credentials["user"]
    with pytest.raises(AuthError, match="wrong identifier or key"):
        AlchemiscaleLocalClient(
            api_server.url, ident, "wrong-key-0123456789abc", **CLIENT_OPTIONS
        ).get_scopes()
    # A user identity in a compute client: its token is refused on compute routes.
    cident, ckey = api_server.credentials["user"]
    compute = ComputeClient(api_server.url, cident, ckey, **CLIENT_OPTIONS)
    with pytest.raises(AuthError) as info:
        compute.register("svc-wrong-kind")
    assert info.value.status == 403


def test_limited_compute_identity_claims_only_in_scope(api_server, user_client):
    api_server.store.add_identity(
        LIMITED_COMPUTE[0], "compute", key=LIMITED_COMPUTE[1], scopes=["org1-*-*"], replace=True
    )
    net2, _, tfs2 = submit_toy(user_client, "org2-claim-proj", n=1)
    user_client.action_tasks(user_client.create_tasks(tfs2[0]), net2)
    net1, _, tfs1 = submit_toy(user_client, "org1-claim-proj", n=1)
    mine = user_client.create_tasks(tfs1[0])
    user_client.action_tasks(mine, net1)
    compute = ComputeClient(api_server.url, *LIMITED_COMPUTE, **CLIENT_OPTIONS)
    compute.register("svc-org1")
    got = compute.claim_tasks("svc-org1", count=5, scopes=["*-*-*"])
    claimed = [t for t in got if t is not None]
    assert claimed and all(t.org == "org1" for t in claimed)
    assert compute.claim_tasks("svc-org1", scopes=["org2-*-*"]) == [None]
    compute.deregister("svc-org1")


def test_token_of_disabled_or_removed_identity_stops_working(api_server):
    store = api_server.store
    key = store.add_identity("short-lived", "user", scopes=["*-*-*"], replace=True)
    token = httpx.post(f"{api_server.url}/token", json={"identifier": "short-lived", "key": key}).json()[
        "access_token"
    ]
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api_server.url}/networks", headers=auth).status_code == 200
    store.set_identity_disabled("short-lived", True)
    gate = api_server.app.state.identity_gate
    time.sleep(gate.recheck_s + 0.2)
    resp = httpx.get(f"{api_server.url}/networks", headers=auth)
    assert resp.status_code == 401 and "disabled" in resp.json()["detail"]
    store.set_identity_disabled("short-lived", False)
    assert httpx.get(f"{api_server.url}/networks", headers=auth).status_code == 200
    store.remove_identity("short-lived")
    time.sleep(gate.recheck_s + 0.2)
    assert httpx.get(f"{api_server.url}/networks", headers=auth).status_code == 401
    # a fresh token for it cannot be had either
    assert (
        httpx.post(f"{api_server.url}/token", json={"identifier": "short-lived", "key": key}).status_code
        == 401
    )
