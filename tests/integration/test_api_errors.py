"""Bad input is a 4xx with a message, never a 5xx; body limits and request compression."""

from __future__ import annotations

import gzip
import json
import re
import zlib

import httpx
import pytest
import zstandard
from api_helpers import alchemiscale_compute_routes, api_routes, submit_toy, toy_network

from tests.plugins.api_server import running_api

SCOPE = "org1-errors-proj"


@pytest.fixture(scope="module")
def http(api_server):
    """An httpx client with a user token."""
    with httpx.Client(base_url=api_server.url, headers=api_server.headers("user"), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def known(api_server, user_client):
    net, chain, tfs = submit_toy(user_client, SCOPE, n=2)
    tasks = user_client.create_tasks(tfs[0], count=2)
    return {"net": str(net), "tf": str(tfs[0]), "tasks": [str(t) for t in tasks], "chain": chain}


def assert_4xx(resp: httpx.Response, *statuses: int) -> str:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    if statuses:
        assert resp.status_code in statuses, (resp.status_code, resp.text[:500])
    detail = resp.json()["detail"]
    assert detail, resp.text
    return json.dumps(detail) if not isinstance(detail, str) else detail


def test_malformed_network_submissions(http, known):
    post = lambda **kw: http.post("/networks", **kw)  # noqa: E731
    ctype = {"Content-Type": "application/json"}
    assert "not valid JSON" in assert_4xx(post(content=b"{not json", headers=ctype), 400)
    assert_4xx(post(content=b'{"network": NaN, "scope": "a-b-c"}', headers=ctype), 400)
    assert_4xx(post(content=b"\xff\xfe\x00", headers=ctype), 400)
    assert_4xx(post(json=[1, 2, 3]), 422)
    assert_4xx(post(json={"network": []}), 422)
    assert_4xx(post(json={"network": [], "scope": SCOPE}), 400)
    assert_4xx(post(json={"network": "text", "scope": SCOPE}), 400)
    assert_4xx(post(json={"network": [[1, 2, 3]], "scope": SCOPE}), 400)
    assert_4xx(post(json={"network": [["Foo-1", "not a dict"]], "scope": SCOPE}), 400)
    assert_4xx(post(json={"network": known["chain"], "scope": 5}), 400)
    assert_4xx(post(json={"network": known["chain"], "scope": "a-*-c"}), 400)
    assert_4xx(post(json={"network": known["chain"], "scope": "1org-b-c"}), 400)
    assert_4xx(post(json={"network": known["chain"], "scope": SCOPE, "state": 7}), 400)
    # A tampered document: its content no longer matches its key.
    chain = toy_network(1)
    chain[0][1]["smiles"] = "CCO"
    assert_4xx(post(json={"network": chain, "scope": SCOPE}), 400)
    # Deep nesting is refused, not a RecursionError.
    deep = "[" * 5000 + "1" + "]" * 5000
    body = (
        '{"network": [["Foo-1", {"x": ' + deep + ', "__qualname__": "Foo", "__module__": "m"}]], '
        '"scope": "' + SCOPE + '"}'
    )
    assert_4xx(post(content=body.encode(), headers=ctype), 400, 413, 422)


def test_bad_scopes_and_queries(http):
    for params in (
        {"scope": "bad"},
        {"scope": "a-*-c"},
        {"scope": "a-b-c-d"},
        {"org": "1x"},
        {"org": "*", "campaign": "c"},
        {"name": "("},
        {"state": "("},  # the state filter is a regex (as alchemiscale's): a bad one is a 400
    ):
        assert_4xx(http.get("/networks", params=params), 400)
    # ... and one that matches no state finds nothing, as alchemiscale's
    assert http.get("/networks", params={"state": "bogus"}).json() == []
    assert_4xx(http.get("/tasks", params={"status": "sleeping"}), 400)
    assert_4xx(http.get("/tasks", params={"scope": "x-y"}), 400)
    assert_4xx(http.get("/scopes/not-a/status"), 400)
    assert_4xx(http.get("/scopes/a-*-c/status"), 400)
    assert_4xx(http.get("/transformations", params={"scope": "-"}), 400)


def test_bad_and_unknown_keys(http, known):
    net = known["net"]
    unknown_net = re.sub(r"-[0-9a-f]{32}-", "-" + "e" * 32 + "-", net, count=1)
    unknown_task = f"Task-{'0' * 32}-{SCOPE}"
    assert_4xx(http.get("/networks/garbage"), 400)
    assert_4xx(http.get("/networks/Foo-abc-org-cam-pro!"), 400)
    assert_4xx(http.get(f"/networks/{known['tf']}/transformations"), 400)  # a transformation key
    assert "no object" in assert_4xx(http.get(f"/networks/{unknown_net}"), 404)
    assert_4xx(http.get(f"/networks/{unknown_net}/transformations"), 404)
    assert_4xx(http.get(f"/networks/{unknown_net}/status"), 404)
    assert_4xx(http.get(f"/tasks/{unknown_task}/status"), 404)
    assert_4xx(http.get(f"/tasks/{unknown_task}/transformation"), 404)
    assert_4xx(http.post(f"/networks/{unknown_net}/tasks/actioned"), 404)
    assert_4xx(http.post(f"/transformations/{known['tf']}/tasks", json={"extends": unknown_task}), 404)
    assert_4xx(http.get(f"/transformations/{known['tf']}/results/ProtocolDAGResult-{'0' * 32}"), 404)
    assert_4xx(http.get(f"/transformations/{known['tf']}/results/..%2F..%2Fetc"), 400, 404)
    assert_4xx(http.post("/bulk/tasks/status/get", json={"tasks": "not a list"}), 422)
    assert_4xx(http.post("/bulk/tasks/status/get", json={"tasks": [1, 2]}), 422)
    assert_4xx(http.post("/bulk/tasks/status/get", json={"tasks": [], "extra": 1}), 422)
    # a malformed key in a body fails validation: 422, as alchemiscale's
    assert_4xx(http.post("/bulk/tasks/status/set", json={"tasks": ["nope"], "status": "waiting"}), 422)
    assert_4xx(http.post("/bulk/networks/state/set", json={"networks": [net], "states": []}), 400)
    assert_4xx(http.post("/bulk/networks/weight/set", json={"networks": [net], "weights": [0.1, 0.2]}), 400)
    assert_4xx(
        http.post(f"/networks/{net}/tasks/action", json={"tasks": known["tasks"], "weight": [0.5]}), 400
    )
    assert http.post("/bulk/tasks/status/get", json={"tasks": ["nope", unknown_task]}).json() == [None, None]


def test_wrong_transitions_are_409(http, known):
    task = known["tasks"][1]
    assert http.post("/bulk/tasks/status/set", json={"tasks": [task], "status": "deleted"}).status_code == 200
    # a status the task cannot take: None for it (alchemiscale's answer), nothing changes
    assert http.post("/bulk/tasks/status/set", json={"tasks": [task], "status": "waiting"}).json() == [None]
    assert http.post("/bulk/tasks/status/set", json={"tasks": [task], "status": "invalid"}).json() == [None]
    assert http.post("/bulk/tasks/status/get", json={"tasks": [task]}).json() == ["deleted"]
    assert_4xx(http.post(f"/transformations/{known['tf']}/tasks", json={"extends": task}), 409)
    assert_4xx(http.post("/bulk/tasks/status/set", json={"tasks": [task], "status": "running"}), 400)


def test_bad_compute_requests(api_server, known):
    with httpx.Client(base_url=api_server.url, headers=api_server.headers("compute"), timeout=60) as http:
        task = known["tasks"][0]
        assert_4xx(http.post("/compute/claim", json={"count": 1}), 422)
        assert_4xx(http.post("/compute/claim", json={"compute_service_id": "x", "count": 10**6}), 422)
        assert_4xx(
            http.post(
                "/compute/computeservice/a/register", json={"identifier": "b", "hostname": "h", "pid": 1}
            ),
            400,
        )
        assert_4xx(http.post("/compute/computeservice/a/register", json={"identifier": "a"}), 422)
        assert_4xx(http.post(f"/compute/tasks/{task}/results", content=b"x"), 422)  # query params missing
        assert_4xx(
            http.post(
                f"/compute/tasks/{task}/results",
                params={"compute_service_id": "x", "pdr_key": "p", "ok": "maybe"},
                content=b"x",
            ),
            422,
        )
        # Not claimed by this (unregistered) service.
        assert_4xx(
            http.post(
                f"/compute/tasks/{task}/results",
                params={"compute_service_id": "x", "pdr_key": "p", "ok": "true"},
                content=zstandard.ZstdCompressor().compress(b"[]"),
            ),
            409,
        )
        assert_4xx(http.post("/compute/computeservice/nobody/heartbeat"), 404)
        assert_4xx(http.get("/compute/tasks/garbage/inputs"), 400)


GARBAGE = ["Task-0-a-b-c", "A-b-c-d-e", "%00", "Ω-1-a-b-c", "a" * 3000]


@pytest.mark.parametrize(("method", "path"), [r for r in api_routes() if "{" in r[1]])
def test_garbage_path_parameters_never_5xx(api_server, method, path):
    compute = path.startswith("/compute") or (method, path) in alchemiscale_compute_routes()
    role = "compute" if compute else "user"
    with httpx.Client(base_url=api_server.url, headers=api_server.headers(role), timeout=60) as http:
        for value in GARBAGE:
            url = re.sub(r"\{\w+\}", value, path)
            for body in (None, {"tasks": value}):
                resp = http.request(method, url, json=body if method != "GET" else None)
                assert resp.status_code < 500, (method, url, body, resp.status_code, resp.text[:300])


def test_gzip_and_zstd_request_bodies(http, known, user_client):
    payload = json.dumps({"tasks": known["tasks"]}).encode()
    for encoding, data in (
        ("gzip", gzip.compress(payload)),
        ("zstd", zstandard.ZstdCompressor().compress(payload)),
    ):
        resp = http.post(
            "/bulk/tasks/status/get",
            content=data,
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert resp.status_code == 200 and len(resp.json()) == 2, resp.text
    chain = toy_network(2)
    body = json.dumps({"network": chain, "scope": SCOPE}).encode()
    resp = http.post(
        "/networks",
        content=zstandard.ZstdCompressor().compress(body),
        headers={"Content-Type": "application/json", "Content-Encoding": "zstd"},
    )
    assert resp.status_code == 200 and resp.json()["network"].startswith(chain[-1][0])
    resp = http.post(
        "/bulk/tasks/status/get",
        content=b"\x1f\x8bnot gzip at all",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert "not valid gzip" in assert_4xx(resp, 400)
    resp = http.post(
        "/bulk/tasks/status/get",
        content=b"\x28\xb5\x2f\xfd\x00garbage",
        headers={"Content-Type": "application/json", "Content-Encoding": "zstd"},
    )
    assert_4xx(resp, 400)
    resp = http.post(
        "/bulk/tasks/status/get",
        content=payload,
        headers={"Content-Type": "application/json", "Content-Encoding": "br"},
    )
    assert "unsupported Content-Encoding" in assert_4xx(resp, 415)
    # Responses are gzipped for clients that accept it.
    resp = http.get(f"/networks/{known['net']}", headers={"Accept-Encoding": "gzip"})
    assert resp.headers.get("content-encoding") == "gzip"
    assert resp.json()[-1][0] == known["net"].rsplit("-", 3)[0]


def test_oversized_bodies_are_413(neo4j_connection, tmp_path):
    with running_api(neo4j_connection, tmp_path, reset=False, max_body_bytes=4096) as small:
        with httpx.Client(base_url=small.url, headers=small.headers("user"), timeout=60) as http:
            big = json.dumps({"tasks": ["Task-" + "0" * 32 + "-a-b-c"] * 200}).encode()
            ctype = {"Content-Type": "application/json"}
            resp = http.post("/bulk/tasks/status/get", content=big, headers=ctype)
            assert "exceeds the limit" in assert_4xx(resp, 413)
            # Streamed (chunked, no Content-Length): counted as it arrives.
            resp = http.post("/bulk/tasks/status/get", content=iter([big[:1000], big[1000:]]), headers=ctype)
            assert_4xx(resp, 413)
            # A compression bomb stops at the same limit, after decompression.
            bomb = gzip.compress(b'{"tasks": ["' + b"A" * 1_000_000 + b'"]}')
            assert len(bomb) < 4096
            resp = http.post(
                "/bulk/tasks/status/get", content=bomb, headers={**ctype, "Content-Encoding": "gzip"}
            )
            assert_4xx(resp, 413)
            resp = http.post("/networks", content=big, headers=ctype)
            assert_4xx(resp, 413)
            # Small bodies still work.
            ok = http.post("/bulk/tasks/status/get", json={"tasks": []})
            assert ok.status_code == 200 and ok.json() == []
        # An upload over the limit is refused while it streams in; the task keeps its claim.
        user, compute = small.client(), small.compute()
        net = user.create_network(toy_network(1), "org1-small-proj", visualize=False)
        task = user.create_tasks(user.get_network_transformations(net)[0])[0]
        user.action_tasks([task], net)
        compute.register("svc-small")
        assert compute.claim_tasks("svc-small", scopes=["org1-small-proj"]) == [task]
        big_result = b"\x28\xb5\x2f\xfd" + b"\x00" * 8000
        for content in (big_result, iter([big_result[:1000], big_result[1000:]])):
            with httpx.Client(base_url=small.url, headers=small.headers("compute"), timeout=60) as http:
                resp = http.post(
                    f"/compute/tasks/{task}/results",
                    content=content,
                    params={
                        "compute_service_id": "svc-small",
                        "pdr_key": "ProtocolDAGResult-1",
                        "ok": "true",
                    },
                )
            assert "exceeds the limit" in assert_4xx(resp, 413)
        assert user.get_tasks_status([task]) == ["running"]
        assert user.get_transformation_results(user.get_task_transformation(task), return_as="refs") == []
        compute.deregister("svc-small")


def test_zlib_raw_deflate_is_not_gzip(http, known):
    payload = json.dumps({"tasks": known["tasks"]}).encode()
    resp = http.post(
        "/bulk/tasks/status/get",
        content=zlib.compress(payload),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert_4xx(resp, 400)
