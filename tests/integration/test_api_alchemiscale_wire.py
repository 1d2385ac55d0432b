"""The user API's alchemiscale 0.8 wire format, spoken raw (no gufe, no alchemiscale needed).

Each body and answer is the one alchemiscale 0.8's own client sends and expects (its
interface/client.py and interface/api.py); tests/science/test_alchemiscale_client.py runs its
real client. Our extensions stay reachable by ``Accept``.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import zstandard

from tests.integration.api_helpers import pdr_document, toy_network


@pytest.fixture
def http(api_server):
    with httpx.Client(base_url=api_server.url, headers=api_server.headers("user"), timeout=120) as c:
        yield c


@pytest.fixture
def net(http):
    """A network submitted the way alchemiscale's client does: scope as an object."""
    project = f"p{uuid.uuid4().hex[:8]}"
    body = {
        "network": toy_network(2),
        "scope": {"org": "org1", "campaign": "wire", "project": project},
        "state": "active",
    }
    resp = http.post("/networks", json=body)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert {k: got[k] for k in ("org", "campaign", "project")} == body["scope"]
    assert got["gufe_key"].startswith("AlchemicalNetwork-")
    key = f"{got['gufe_key']}-org1-wire-{project}"
    assert got["network"] == key  # our client's field, ignored by alchemiscale's ScopedKey
    return key


def _obj(key: str) -> dict:
    gufe_key, org, campaign, project = key.rsplit("-", 3)
    return {"gufe_key": gufe_key, "org": org, "campaign": campaign, "project": project}


def test_scope_object_must_be_specific(http):
    resp = http.post(
        "/networks", json={"network": toy_network(1), "scope": {"org": "org1"}, "state": "active"}
    )
    assert resp.status_code == 400 and "specific" in resp.text


def test_weights_take_a_bare_number_and_return_keys(http, net):
    assert http.post(f"/networks/{net}/weight", json=0.25).json() == net
    assert http.get(f"/networks/{net}/weight").json() == 0.25
    assert http.post(f"/networks/{net}/weight", json={"weight": 0.5}).json() == net  # our form
    assert http.post(f"/networks/{net}/weight", json=2).status_code == 422
    got = http.post("/bulk/networks/weight/set", json={"networks": [net], "weights": [0.75]})
    assert got.json() == [net]


def test_task_keys_as_objects_and_actioned_shapes(http, net):
    tfs = http.get(f"/networks/{net}/transformations").json()
    tasks = http.post(f"/transformations/{tfs[0]}/tasks", json={"count": 2, "extends": None}).json()
    (ext,) = http.post(
        f"/transformations/{tfs[0]}/tasks", json={"count": 1, "extends": _obj(tasks[0])}
    ).json()
    graph = http.get(f"/transformations/{tfs[0]}/tasks", params={"return_as": "graph"}).json()
    assert graph == {tasks[0]: None, tasks[1]: None, ext: tasks[0]}
    assert http.get(f"/transformations/{tfs[0]}/tasks", params={"return_as": "tree"}).status_code == 400

    objs = [_obj(t) for t in tasks]
    assert http.post(f"/networks/{net}/tasks/action", json={"tasks": objs, "weight": None}).json() == tasks
    # a network's actioned tasks are a set (alchemiscale gives no order either)
    actioned = http.post(f"/networks/{net}/tasks/actioned", json={"task_weights": False}).json()
    assert sorted(actioned) == sorted(tasks)
    assert http.post(f"/networks/{net}/tasks/actioned", json={"task_weights": True}).json() == {
        t: 0.5 for t in tasks
    }
    bulk = http.post("/bulk/networks/tasks/actioned", json={"networks": [net], "task_weights": False})
    assert [sorted(one) for one in bulk.json()] == [sorted(tasks)]
    assert http.post(f"/tasks/{tasks[0]}/networks/actioned", json={"task_weights": False}).json() == [net]
    assert http.post("/bulk/tasks/status/get", json={"tasks": objs}).json() == ["waiting", "waiting"]
    assert http.post("/bulk/tasks/priority/set", json={"tasks": objs, "priority": 3}).json() == tasks
    assert http.post("/bulk/tasks/priority/get", json={"tasks": objs}).json() == [3, 3]
    assert http.post(f"/networks/{net}/tasks/cancel", json={"tasks": objs[1:]}).json() == tasks[1:]
    # alchemiscale's per-task semantics: None for the task that cannot change, the rest set
    assert http.post("/bulk/tasks/status/set", json={"tasks": [objs[1]], "status": "invalid"}).json() == [
        tasks[1]
    ]
    got = http.post("/bulk/tasks/status/set", json={"tasks": objs, "status": "waiting"})
    assert got.json() == [tasks[0], None]
    assert http.post(f"/tasks/{ext}/status", json="deleted").json() == ext
    assert http.post(f"/tasks/{ext}/status", json="waiting").json() is None
    bad = http.post("/bulk/tasks/status/get", json={"tasks": [{"gufe_key": "Task-1"}]})
    assert bad.json() == [None]  # getters answer None for a key they cannot read
    assert http.post(f"/networks/{net}/tasks/action", json={"tasks": [{"gufe_key": "x"}]}).status_code == 422


def test_query_tasks_by_scope_parts(http, net):
    org, campaign, project = net.rsplit("-", 3)[1:]
    tfs = http.get(f"/networks/{net}/transformations").json()
    tasks = http.post(f"/transformations/{tfs[1]}/tasks", json={"count": 1}).json()
    got = http.get("/tasks", params={"org": org, "campaign": campaign, "project": project}).json()
    assert got == tasks


def test_network_state_filter_is_a_regex(http, net):
    project = net.rsplit("-", 1)[1]
    params = {"org": "org1", "campaign": "wire", "project": project}
    assert http.get("/networks", params={**params, "state": "act.*"}).json() == [net]
    assert http.get("/networks", params={**params, "state": "in.*"}).json() == []
    assert http.get("/networks", params=params).json() == [net]  # no state: any
    assert http.get("/networks", params={**params, "state": "("}).status_code == 400


def test_restart_patterns_wire(http, net):
    body = {"patterns": ["boom", "bang"], "num_allowed_restarts": 2}
    assert http.post(f"/networks/{net}/restartpatterns/add", json=body).status_code == 200
    http.post(f"/networks/{net}/restartpatterns/maxretries", json={"patterns": ["boom"], "max_retries": 4})
    got = http.post("/bulk/networks/restartpatterns/get", json={"networks": [net]}).json()
    assert got == {net: [["bang", 2], ["boom", 4]]}
    both = {"patterns": ["boom"], "max_retries": 1, "num_allowed_restarts": 1}
    assert http.post(f"/networks/{net}/restartpatterns/maxretries", json=both).status_code == 422
    assert http.get(f"/networks/{net}/restartpatterns/clear").json() == [net]
    assert http.post("/bulk/networks/restartpatterns/get", json={"networks": [net]}).json() == {net: []}


def test_results_as_ref_keys_and_latin1_json_or_raw_zstd(api_server, http, compute_client, net):
    tfs = http.get(f"/networks/{net}/transformations").json()
    (task,) = http.post(f"/transformations/{tfs[0]}/tasks", json={"count": 1}).json()
    http.post(f"/networks/{net}/tasks/action", json={"tasks": [task]})
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    (claimed,) = compute_client.claim_tasks(service, count=1, scopes=[net.split("-", 2)[2]])
    # a real gufe-made result document, made to name this task's transformation
    pdr_key, chain, _ = pdr_document(str(claimed))
    chain[-1][1]["transformation_key"] = tfs[0].rsplit("-", 3)[0]
    data = zstandard.ZstdCompressor().compress(json.dumps(chain).encode())
    pushed = compute_client.push_result(claimed, service, pdr_key, True, data)
    compute_client.deregister(service)

    refs = http.get(f"/transformations/{tfs[0]}/results").json()
    (ref,) = refs
    assert ref.startswith("ProtocolDAGResultRef-") and ref.endswith(net.split("-", 2)[2])
    assert http.get(f"/tasks/{task}/results").json() == refs
    assert http.get(f"/transformations/{tfs[0]}/failures").json() == []
    objects = http.get(
        f"/transformations/{tfs[0]}/results",
        headers={"Accept": "application/vnd.alchemiscale-local.refs+json"},
    ).json()
    assert objects[0]["sha256"] == pushed["sha256"]

    as_json = http.get(f"/transformations/{tfs[0]}/results/{ref}").json()
    data = as_json[0].encode("latin-1")
    raw = http.get(f"/transformations/{tfs[0]}/results/{ref}", headers={"Accept": "application/zstd"})
    assert raw.headers["content-type"] == "application/zstd" and raw.content == data
    assert raw.headers["X-Content-SHA256"] == pushed["sha256"]
    assert zstandard.ZstdDecompressor().decompress(data).startswith(b"[")
    by_pdr = http.get(
        f"/transformations/{tfs[0]}/results/{objects[0]['pdr_key']}", headers={"Accept": "application/zstd"}
    )
    assert by_pdr.content == data
    missing = ref.replace(ref.split("-")[1], "0" * 32)
    assert http.get(f"/transformations/{tfs[0]}/results/{missing}").status_code == 404
