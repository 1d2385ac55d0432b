"""alchemiscale 0.8's TaskHub and compute-manager routes, spoken as its clients do (raw HTTP,
no gufe): hub queries and one-hub claims through the checks of ``POST /claim``, and the
compute-manager cycle (register, link services, OK / SKIP / SHUTDOWN, status, expiry)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from alchemiscale_local.backends.statestore import Conflict, hub_key
from api_helpers import submit_toy

OTHER = ("test-compute-hubs-other", "compute-hubs-other-key-0123456789")
ORG1 = ("test-compute-hubs-org1", "compute-hubs-org1-key-0123456789")


def _http(api_server, headers: dict | None = None) -> httpx.Client:
    return httpx.Client(base_url=api_server.url, headers=headers or api_server.headers("compute"), timeout=60)


def _headers_of(api_server, ident: tuple[str, str], scopes: list[str]) -> dict[str, str]:
    api_server.store.add_identity(ident[0], "compute", key=ident[1], scopes=scopes, replace=True)
    resp = httpx.post(f"{api_server.url}/token", data={"username": ident[0], "password": ident[1]})
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _statuses(api_server, tasks: list[str]) -> list[str]:
    return [t["status"] for t in api_server.store.get_tasks(tasks)]


def _scope_params(scope: str) -> dict[str, str]:
    return dict(zip(("org", "campaign", "project"), scope.split("-"), strict=True))


@pytest.fixture
def hubs(api_server):
    """Two networks in one fresh scope: 3 actioned tasks on the first, 1 on the second."""
    scope = f"org1-hubs-p{uuid.uuid4().hex[:8]}"
    with api_server.client() as client:
        net_a, _c, tfs_a = submit_toy(client, scope, n=1, name="hub a")
        net_b, _c, tfs_b = submit_toy(client, scope, n=1, name="hub b")
        tasks_a = client.create_tasks(tfs_a[0], count=3)
        tasks_b = client.create_tasks(tfs_b[0], count=1)
        client.action_tasks(tasks_a, net_a)
        client.action_tasks(tasks_b, net_b)
        client.set_network_weight(net_b, 0.25)
    return {
        "scope": scope,
        "hub_a": hub_key(net_a),
        "hub_b": hub_key(net_b),
        "net_a": str(net_a),
        "net_b": str(net_b),
        "tasks_a": [str(t) for t in tasks_a],
        "tasks_b": [str(t) for t in tasks_b],
    }


def _register(http: httpx.Client, sid: str, manager: str | None = None) -> httpx.Response:
    return http.post(f"/computeservice/{sid}/register", json={"compute_manager_id": manager})


# -- TaskHubs --------------------------------------------------------------------------------
def test_query_taskhubs_lists_keys_or_gufe_dicts(api_server, hubs):
    with _http(api_server) as http:
        params = _scope_params(hubs["scope"])
        keys = http.get("/taskhubs", params={**params, "return_gufe": "False"}).json()
        assert keys == sorted([hubs["hub_a"], hubs["hub_b"]])
        as_gufe = http.get("/taskhubs", params={**params, "return_gufe": "True"}).json()
        assert set(as_gufe) == set(keys)
        doc = json.loads(as_gufe[hubs["hub_b"]])  # gufe JSON text, as alchemiscale sends it
        assert doc["__qualname__"] == "TaskHub" and doc["__module__"] == "alchemiscale.storage.models"
        assert (doc["network"], doc["weight"]) == (hubs["net_b"], 0.25)
        # No scope: every hub the token sees, these two among them.
        assert set(keys) <= set(http.get("/taskhubs").json())
        assert http.get("/taskhubs", params={"org": "nosuchorg"}).json() == []
        for bad in ({"org": "bad-org"}, {"campaign": "c"}, {"org": "1x"}):
            resp = http.get("/taskhubs", params=bad)
            assert resp.status_code == 400 and "scope" in resp.json()["detail"], (bad, resp.text)


def test_query_taskhubs_is_limited_to_the_tokens_scopes(api_server, hubs):
    org2 = f"org2-hubs-p{uuid.uuid4().hex[:8]}"
    with api_server.client() as client:
        net, _c, _tfs = submit_toy(client, org2, n=1)
    with _http(api_server, _headers_of(api_server, ORG1, ["org1-*-*"])) as http:
        seen = http.get("/taskhubs").json()
        assert hubs["hub_a"] in seen and hub_key(net) not in seen
        assert http.get("/taskhubs", params=_scope_params(org2)).json() == []
    with _http(api_server, api_server.headers("user")) as http:
        resp = http.get("/taskhubs")
        assert resp.status_code == 403 and "cannot use compute routes" in resp.json()["detail"]


def test_claim_from_one_hub_pads_with_null_and_stays_in_that_hub(api_server, hubs):
    sid = f"hubclaimer-{uuid.uuid4().hex}"
    with _http(api_server) as http:
        assert _register(http, sid).json() == sid
        body = {"compute_service_id": sid, "count": 2, "protocols": None}
        first = http.post(f"/taskhubs/{hubs['hub_a']}/claim", json=body).json()
        assert len(first) == 2 and None not in first and set(first) <= set(hubs["tasks_a"])
        rest = http.post(f"/taskhubs/{hubs['hub_a']}/claim", json=body).json()
        assert rest[1] is None and rest[0] in hubs["tasks_a"] and rest[0] not in first
        assert http.post(f"/taskhubs/{hubs['hub_a']}/claim", json=body).json() == [None, None]
        statuses = _statuses(api_server, hubs["tasks_a"] + hubs["tasks_b"])
        assert statuses == ["running"] * 3 + ["waiting"]  # hub b was never touched
        # protocols filters: none of the toy's tasks is of this protocol
        body = {"compute_service_id": sid, "count": 1, "protocols": ["NoSuchProtocol"]}
        assert http.post(f"/taskhubs/{hubs['hub_b']}/claim", json=body).json() == [None]
        body["protocols"] = None
        assert http.post(f"/taskhubs/{hubs['hub_b']}/claim", json=body).json() == hubs["tasks_b"]
        http.post(f"/computeservice/{sid}/deregister", json={})


def test_claim_from_a_hub_runs_the_checks_of_claim(api_server, hubs):
    sid = f"hubchecks-{uuid.uuid4().hex}"
    url = f"/taskhubs/{hubs['hub_a']}/claim"
    body = {"compute_service_id": sid, "count": 1}
    with _http(api_server) as http:
        _register(http, sid)
        # another identity cannot claim with this service id
        resp = httpx.post(api_server.url + url, json=body, headers=_headers_of(api_server, OTHER, ["*-*-*"]))
        assert resp.status_code == 403 and "another identity" in resp.json()["detail"]
        # a token without the hub's scope is refused before anything is claimed
        resp = httpx.post(
            api_server.url + url,
            json=body,
            headers=_headers_of(api_server, ORG1, ["org1-other-*"]),
        )
        assert resp.status_code == 403 and "no access to scope" in resp.json()["detail"]
        # the failure gate: a service over its failure limit gets nothing, as from POST /claim
        for _ in range(api_server.settings.api.max_failures + 1):
            api_server.store.log_failure_computeservice(sid)
        assert (
            http.post("/claim", json={"scopes": ["*-*-*"], "compute_service_id": sid, "count": 1}).json()
            is None
        )
        assert http.post(url, json=body).json() == [None]
        assert _statuses(api_server, hubs["tasks_a"]) == ["waiting"] * 3
        # an unregistered service learns it must register
        resp = http.post(url, json={**body, "compute_service_id": f"nobody-{uuid.uuid4().hex}"})
        assert resp.status_code == 404 and "register" in resp.json()["detail"]
        http.post(f"/computeservice/{sid}/deregister", json={})


@pytest.mark.parametrize(
    ("key", "body", "status"),
    [
        ("HUB", {"compute_service_id": "SID", "count": 0}, 422),
        ("HUB", {"compute_service_id": "SID", "count": 1001}, 422),
        ("HUB", {"compute_service_id": "SID", "count": 1, "protocols": []}, 422),
        ("HUB", {"compute_service_id": "SID", "count": 1, "protocols": "Toy"}, 422),
        ("HUB", {"count": 1}, 422),
        ("HUB", {"compute_service_id": "", "count": 1}, 422),
        ("NET", {"compute_service_id": "SID", "count": 1}, 400),
        ("not-a-key", {"compute_service_id": "SID", "count": 1}, 400),
        ("TaskHub-0123-org1-hubs-nosuchproject", {"compute_service_id": "SID", "count": 1}, 404),
    ],
)
def test_bad_hub_claims_are_4xx_and_claim_nothing(api_server, hubs, key, body, status):
    sid = f"hubbad-{uuid.uuid4().hex}"
    key = {"HUB": hubs["hub_a"], "NET": hubs["net_a"]}.get(key, key)
    with _http(api_server) as http:
        _register(http, sid)
        body = {k: (sid if v == "SID" else v) for k, v in body.items()}
        resp = http.post(f"/taskhubs/{key}/claim", json=body)
        assert resp.status_code == status, resp.text
        assert resp.json()["detail"]
        assert _statuses(api_server, hubs["tasks_a"]) == ["waiting"] * 3
        http.post(f"/computeservice/{sid}/deregister", json={})


# -- compute managers --------------------------------------------------------------------------
def _manager_id(name: str | None = None) -> str:
    return f"{name or 'mgr' + uuid.uuid4().hex[:8]}-{uuid.uuid4().hex}"


def _instruction(http: httpx.Client, manager: str, scopes: list | None = None, protocols: list | None = None):
    resp = http.post(
        f"/computemanager/{manager}/instruction", json={"scopes": scopes or [], "protocols": protocols or []}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_manager_cycle_ok_skip_shutdown(api_server, hubs):
    manager = _manager_id()
    scope = dict(zip(("org", "campaign", "project"), hubs["scope"].split("-"), strict=True))
    with _http(api_server) as http:
        assert http.post(f"/computemanager/{manager}/register", json={"steal": False}).json() == manager
        assert _instruction(http, manager, [scope]) == {
            "instruction": "OK",
            "compute_service_ids": [],
            "num_tasks": 4,
        }
        assert _instruction(http, manager, [scope], ["NoSuchProtocol"])["num_tasks"] == 0
        sids = sorted(f"managed{i}-{uuid.uuid4().hex}" for i in range(2))
        for sid in sids:
            assert _register(http, sid, manager).json() == sid
        ok = _instruction(http, manager, [scope])
        assert ok["compute_service_ids"] == sids and ok["num_tasks"] == 4
        claimed = http.post(
            f"/taskhubs/{hubs['hub_a']}/claim", json={"compute_service_id": sids[0], "count": 1}
        )
        assert _instruction(http, manager, [scope])["num_tasks"] == 3 and claimed.json()[0]
        # status OK with a saturation
        resp = http.post(f"/computemanager/{manager}/status", json={"status": "OK", "saturation": 0.5})
        assert resp.json() == manager
        # a managed service over its failure limit: SKIP
        for _ in range(api_server.settings.api.max_failures + 1):
            api_server.store.log_failure_computeservice(sids[1])
        assert _instruction(http, manager, [scope]) == {"instruction": "SKIP", "compute_service_ids": sids}
        # deregistered: SHUTDOWN; services stay registered and keep the manager's name
        assert http.post(f"/computemanager/{manager}/deregister", json={}).json() == manager
        shutdown = _instruction(http, manager, [scope])
        assert shutdown["instruction"] == "SHUTDOWN" and manager in shutdown["message"]
        # a new manager of the same name gets the orphaned services back
        again = _manager_id(manager.split("-")[0])
        assert http.post(f"/computemanager/{again}/register", json={}).json() == again
        assert _instruction(http, again, [scope])["compute_service_ids"] == sids
        for sid in sids:
            http.post(f"/computeservice/{sid}/deregister", json={})
        assert _instruction(http, again, [scope])["compute_service_ids"] == []
        http.post(f"/computemanager/{again}/deregister", json={})


def test_manager_instruction_counts_only_the_tokens_scopes(api_server, hubs):
    manager = _manager_id()
    with _http(api_server, _headers_of(api_server, ORG1, ["org1-nothing-*"])) as http:
        http.post(f"/computemanager/{manager}/register", json={})
        # asking for everything: only what the token sees, which holds none of these tasks
        assert _instruction(http, manager)["num_tasks"] == 0
        http.post(f"/computemanager/{manager}/deregister", json={})
    with _http(api_server) as http:
        http.post(f"/computemanager/{manager}/register", json={})
        assert _instruction(http, manager)["num_tasks"] >= 4
        http.post(f"/computemanager/{manager}/deregister", json={})


def test_manager_names_are_unique_steal_and_owners(api_server):
    name = "mgr" + uuid.uuid4().hex[:8]
    first, second = _manager_id(name), _manager_id(name)
    with _http(api_server) as http:
        http.post(f"/computemanager/{first}/register", json={})
        resp = http.post(f"/computemanager/{second}/register", json={"steal": False})
        assert resp.status_code == 409 and "already registered with status OK" in resp.json()["detail"]
        assert http.post(f"/computemanager/{second}/register", json={"steal": True}).json() == second
        assert _instruction(http, first)["instruction"] == "SHUTDOWN"
        other = _headers_of(api_server, OTHER, ["*-*-*"])
        third = _manager_id(name)
        for path, body in (
            (f"/computemanager/{third}/register", {"steal": True}),
            (f"/computemanager/{second}/deregister", {}),
            (f"/computemanager/{second}/instruction", {}),
            (f"/computemanager/{second}/status", {"status": "OK", "saturation": 0.1}),
            (f"/computemanager/{name}/clear_error", {}),
        ):
            resp = httpx.post(api_server.url + path, json=body, headers=other)
            assert resp.status_code == 403 and "another identity" in resp.json()["detail"], (path, resp.text)
        # and another identity's service cannot join this manager
        resp = httpx.post(
            f"{api_server.url}/computeservice/svc-{uuid.uuid4().hex}/register",
            json={"compute_manager_id": second},
            headers=other,
        )
        assert resp.status_code == 403
        assert _instruction(http, second)["instruction"] == "OK"
        http.post(f"/computemanager/{second}/deregister", json={})


def test_error_status_keeps_the_registration_until_cleared(api_server):
    name = "mgr" + uuid.uuid4().hex[:8]
    manager = _manager_id(name)
    with _http(api_server) as http:
        http.post(f"/computemanager/{manager}/register", json={})
        resp = http.post(f"/computemanager/{manager}/status", json={"status": "ERROR", "detail": "boom"})
        assert resp.json() == manager
        http.post(f"/computemanager/{manager}/deregister", json={})
        assert _instruction(http, manager)["instruction"] == "OK"  # ERROR ones are kept
        resp = http.post(f"/computemanager/{_manager_id(name)}/register", json={"steal": True})
        assert resp.status_code == 409 and "status ERROR" in resp.json()["detail"]
        assert http.post(f"/computemanager/{name}/clear_error", json={}).json() is None
        assert _instruction(http, manager)["instruction"] == "SHUTDOWN"
        resp = http.post(f"/computemanager/{name}/clear_error", json={})
        assert resp.status_code == 404 and name in resp.json()["detail"]
        fresh = _manager_id(name)
        http.post(f"/computemanager/{fresh}/register", json={})
        resp = http.post(f"/computemanager/{name}/clear_error", json={})
        assert resp.status_code == 409 and "not in the ERROR status" in resp.json()["detail"]
        http.post(f"/computemanager/{fresh}/deregister", json={})


def _age(api_server, manager: str, seconds: float) -> None:
    """Move a registration's last status update back in time (the test's clock)."""
    name = manager.split("-")[0]
    api_server.store._write(
        "MATCH (m:ComputeManagerRegistration {name: $name}) SET m.last_status_update = $t",
        name=name,
        t=time.time() - seconds,
    )


def test_status_reports_expire_silent_managers(api_server):
    ok_recent, ok_old, err_recent, err_old, reporter = (_manager_id() for _ in range(5))
    with _http(api_server) as http:
        for m in (ok_recent, ok_old, err_recent, err_old, reporter):
            http.post(f"/computemanager/{m}/register", json={})
        for m in (err_recent, err_old):
            http.post(f"/computemanager/{m}/status", json={"status": "ERROR", "detail": "down"})
        _age(api_server, ok_recent, 3000)
        _age(api_server, ok_old, 3700)
        _age(api_server, err_recent, 80000)
        _age(api_server, err_old, 90000)
        http.post(f"/computemanager/{reporter}/status", json={"status": "OK", "saturation": 0.0})
        alive = {m: _instruction(http, m)["instruction"] for m in (ok_recent, ok_old, err_recent, err_old)}
        assert alive == {ok_recent: "OK", ok_old: "SHUTDOWN", err_recent: "OK", err_old: "SHUTDOWN"}
        for m in (ok_recent, reporter):
            http.post(f"/computemanager/{m}/deregister", json={})
        http.post(f"/computemanager/{err_recent.split('-')[0]}/clear_error", json={})


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"status": "OK"}, "saturation is required"),
        ({"status": "OK", "saturation": 1.5}, "between 0 and 1"),
        ({"status": "OK", "saturation": 0.5, "detail": "x"}, "only be provided for the 'ERROR'"),
        ({"status": "ERROR"}, "detail is required"),
        ({"status": "ERROR", "detail": "x", "saturation": 0.1}, "only be provided for the 'OK'"),
        ({"status": "MAYBE", "saturation": 0.1}, "must be one of"),
    ],
)
def test_bad_status_reports_are_400_and_change_nothing(api_server, body, fragment):
    manager = _manager_id()
    with _http(api_server) as http:
        http.post(f"/computemanager/{manager}/register", json={})
        before = api_server.store.computemanager_by_name(manager.split("-")[0])
        resp = http.post(f"/computemanager/{manager}/status", json=body)
        assert resp.status_code == 400 and fragment in resp.json()["detail"], resp.text
        assert api_server.store.computemanager_by_name(manager.split("-")[0]) == before
        http.post(f"/computemanager/{manager}/deregister", json={})


def test_bad_manager_ids_and_links_are_4xx_and_write_nothing(api_server):
    with _http(api_server) as http:
        for bad in ("noseparator", "1abc-" + uuid.uuid4().hex, "mgr-nothex", "a-b-c"):
            resp = http.post(f"/computemanager/{bad}/register", json={})
            assert resp.status_code == 400 and resp.json()["detail"], (bad, resp.text)
        resp = http.post(f"/computemanager/{_manager_id()}/status", json={"status": "OK", "saturation": 0.1})
        assert resp.status_code == 400 and "no compute manager is registered" in resp.json()["detail"]
        assert (
            http.post(f"/computemanager/{_manager_id()}/register", json={"steal": "often"}).status_code == 422
        )
        # a service naming an unknown or malformed manager is not registered at all
        for manager in (_manager_id(), "garbage"):
            sid = f"orphan-{uuid.uuid4().hex}"
            resp = _register(http, sid, manager)
            assert resp.status_code == 422 and resp.json()["detail"], resp.text
            resp = http.post(f"/computeservice/{sid}/heartbeat", json={})
            assert resp.status_code == 404  # never registered


# -- concurrency (the store under the routes) ---------------------------------------------------
def test_concurrent_hub_claims_never_share_a_task(api_server):
    scope = f"org1-hubrace-p{uuid.uuid4().hex[:8]}"
    with api_server.client() as client:
        net, _c, tfs = submit_toy(client, scope, n=1)
        tasks = [str(t) for t in client.create_tasks(tfs[0], count=8)]
        client.action_tasks(tasks, net)
    store = api_server.store
    sids = [f"racer{i}-{uuid.uuid4().hex}" for i in range(4)]
    with _http(api_server) as http:
        for sid in sids:
            _register(http, sid)
    with ThreadPoolExecutor(len(sids)) as pool:
        results = list(pool.map(lambda sid: store.claim_taskhub_tasks(sid, hub_key(net), 3), sids))
    claimed = [t for r in results for t in r]
    assert len(claimed) == len(set(claimed)) == 8 and set(claimed) == set(tasks)
    holders = {key: t["claimed_by"] for key, t in zip(tasks, store.get_tasks(tasks), strict=True)}
    for sid, got in zip(sids, results, strict=True):
        assert all(holders[t] == sid for t in got)
        store.deregister_computeservice(sid)


def test_concurrent_manager_registrations_of_one_name_leave_one(api_server):
    name = "mgr" + uuid.uuid4().hex[:8]
    ids = [_manager_id(name) for _ in range(6)]

    def register(manager: str) -> str:
        try:
            return api_server.store.register_computemanager(manager, owner="test-compute")
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(len(ids)) as pool:
        outcomes = list(pool.map(register, ids))
    winners = [o for o in outcomes if o != "conflict"]
    assert len(winners) == 1 and winners[0] in ids
    assert api_server.store.computemanager_by_name(name)["uuid"] == winners[0].split("-")[1]
    api_server.store.deregister_computemanager(winners[0])
