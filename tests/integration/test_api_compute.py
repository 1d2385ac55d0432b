"""Compute API through the ComputeClient, and results read back through the user client."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import httpx
import pytest
import zstandard
from api_helpers import fixture_path, pdr_document, run_task, submit_toy

from alchemiscale_local.client import ConflictError, NotFoundError, ValidationError
from alchemiscale_local.models import ScopedKey


@pytest.fixture
def setup(user_client, compute_client):
    """A network in its own project, one actioned task per transformation, a registered service."""
    scope = f"org1-compute-p{uuid.uuid4().hex[:8]}"
    net, chain, tfs = submit_toy(user_client, scope, n=2)
    tasks = [user_client.create_tasks(tf)[0] for tf in tfs]
    user_client.action_tasks(tasks, net)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    assert compute_client.register(service, gpu="0", runtimes=["toy"]) == service
    yield {"scope": scope, "net": net, "chain": chain, "tfs": tfs, "tasks": tasks, "service": service}
    try:
        compute_client.deregister(service)
    except NotFoundError:
        pass


def test_register_heartbeat_deregister(compute_client):
    service = f"svc-{uuid.uuid4().hex[:8]}"
    assert compute_client.register(service, hostname="h", pid=1) == service
    assert compute_client.register(service) == service  # re-registering is fine
    assert compute_client.heartbeat(service) == service
    assert compute_client.deregister(service) == service
    with pytest.raises(NotFoundError, match="expired or never registered"):
        compute_client.heartbeat(service)
    with pytest.raises(NotFoundError):
        compute_client.deregister(service)
    with pytest.raises(ValidationError):  # identifier outside the allowed pattern
        compute_client.register("bad id with space")


def test_claim_inputs_and_result_round_trip(api_server, chain_client, compute_client, setup):
    s = setup
    claimed = compute_client.claim_tasks(s["service"], count=3, scopes=[s["scope"]])
    assert len(claimed) == 3 and claimed[2] is None
    assert set(claimed[:2]) == set(s["tasks"])
    assert chain_client.get_tasks_status(s["tasks"]) == ["running", "running"]
    # Nothing is left to claim; a service that asks again while holding tasks gets a held one
    # back (its earlier claim response may have been lost), never a new one.
    again = compute_client.claim_tasks(s["service"], count=1, scopes=[s["scope"]])
    assert len(again) == 1 and again[0] in claimed[:2]
    assert chain_client.get_tasks_status(s["tasks"]) == ["running", "running"]

    task = claimed[0]
    inputs = compute_client.get_task_inputs(task)
    tf = compute_client.get_task_transformation(task)
    assert inputs["task"] == str(task)
    assert inputs["transformation_key"] == str(tf)
    assert inputs["protocol"] == "ToyProtocolA" and inputs["protocol_module"] == "tests.toyprotocols"
    assert inputs["extends"] is None and inputs["extends_result"] is None
    assert inputs["transformation"][-1][0] == tf.gufe_key
    assert inputs["transformation"] == json.loads(
        json.dumps(chain_client.get_transformation(tf, visualize=False))
    )
    with pytest.raises(NotFoundError):
        compute_client.get_extends_result(task)

    pdr_key, chain, data = pdr_document(str(task))
    out = compute_client.push_result(task, s["service"], pdr_key, True, data)
    assert out["status"] == "complete" and out["size"] == len(data)
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert chain_client.get_tasks_status([task]) == ["complete"]
    # Completed tasks leave the hub.
    assert task not in chain_client.get_network_actioned_tasks(s["net"])

    refs = chain_client.get_transformation_results(tf, return_as="refs")
    assert len(refs) == 1 and refs[0]["sha256"] == out["sha256"] and refs[0]["pdr_key"] == pdr_key
    assert refs[0]["task"] == str(task)
    docs = chain_client.get_transformation_results(tf, return_as="ProtocolDAGResults", visualize=False)
    assert docs == [chain]
    assert chain_client.get_task_results(task, visualize=False) == [chain]
    assert chain_client.get_task_results(task, return_as="refs")[0]["location"] == out["location"]
    assert chain_client.get_transformation_failures(tf, visualize=False) == []
    assert chain_client.get_task_failures(task) == []
    network_docs = chain_client.get_network_results(s["net"], return_as="ProtocolDAGResults", visualize=False)
    assert network_docs == {tf: [chain], next(t for t in s["tfs"] if t != tf): []}

    # The raw route (Accept: application/zstd): bytes as stored, with their checksum, plain or
    # gzipped on the wire; without that Accept, alchemiscale's ["<bytes as latin-1>"] JSON.
    for accept in ("identity", "gzip"):
        resp = httpx.get(
            f"{api_server.url}/transformations/{tf}/results/{pdr_key}",
            headers={**api_server.headers("user"), "Accept-Encoding": accept, "Accept": "application/zstd"},
        )
        assert resp.status_code == 200 and resp.content == data
        plain = httpx.get(
            f"{api_server.url}/transformations/{tf}/results/{pdr_key}",
            headers={**api_server.headers("user"), "Accept-Encoding": accept},
        )
        assert plain.json() == [data.decode("latin-1")]
        assert resp.headers["X-Content-SHA256"] == out["sha256"]
    resp = httpx.get(f"{api_server.url}/tasks/{task}/status", headers=api_server.headers("user"))
    assert resp.json() == "complete"

    # The claim is gone: a second result for the same task is refused.
    with pytest.raises(ConflictError):
        compute_client.push_result(task, s["service"], pdr_key, True, data)


def test_failures_tracebacks_and_restart_patterns(chain_client, compute_client, setup):
    s = setup
    chain_client.add_task_restart_patterns(s["net"], ["CUDA_ERROR_OUT_OF_MEMORY"], 1)
    claimed = [t for t in compute_client.claim_tasks(s["service"], count=2, scopes=[s["scope"]]) if t]
    task_a, task_b = claimed
    tb = "Traceback (most recent call last):\nRuntimeError: CUDA_ERROR_OUT_OF_MEMORY"
    out = run_task(compute_client, s["service"], task_a, ok=False, traceback=tb)
    assert out["status"] == "waiting"  # the pattern matched: restarted
    out = run_task(
        compute_client, s["service"], task_b, ok=False, traceback="Traceback\nValueError: bad input"
    )
    assert out["status"] == "error"
    assert chain_client.get_tasks_status([task_a, task_b]) == ["waiting", "error"]
    # A non-matching failure cancels the task from the hub (alchemiscale's rule).
    assert task_b not in chain_client.get_network_actioned_tasks(s["net"])

    tf_a = chain_client.get_task_transformation(task_a)
    refs = chain_client.get_transformation_failures(tf_a, return_as="refs")
    assert len(refs) == 1 and refs[0]["tracebacks"] == [tb]
    docs = chain_client.get_task_failures(task_a, visualize=False)
    assert len(docs) == 1 and docs[0][-1][1]["__qualname__"] == "ProtocolDAGResult"
    failures = chain_client.get_network_failures(s["net"], visualize=False)
    assert sum(len(v) for v in failures.values()) == 2

    # Second failure of task_a: the pattern's allowance (1) is used up.
    again = compute_client.claim_tasks(s["service"], count=1, scopes=[s["scope"]])
    assert again == [task_a]
    out = run_task(compute_client, s["service"], task_a, ok=False, traceback=tb)
    assert out["status"] == "error"


def test_denied_after_too_many_failures(user_client, compute_client):
    scope = f"org1-deny-p{uuid.uuid4().hex[:8]}"
    net, _, tfs = submit_toy(user_client, scope, n=1)
    tasks = user_client.create_tasks(tfs[0], count=6)
    user_client.action_tasks(tasks, net)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    for _ in range(4):  # max_failures = 3: the fourth failure tips it over
        task = compute_client.claim_tasks(service, scopes=[scope])[0]
        run_task(compute_client, service, task, ok=False)
    assert compute_client.claim_tasks(service, scopes=[scope]) is None
    compute_client.deregister(service)


def test_claim_filters(user_client, compute_client):
    scope = f"org1-filter-p{uuid.uuid4().hex[:8]}"
    net, _, tfs = submit_toy(user_client, scope, n=2, protocols=("ProtoA", "ProtoB"))
    tasks = [user_client.create_tasks(tf)[0] for tf in tfs]
    user_client.action_tasks(tasks, net)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    assert compute_client.claim_tasks(service, scopes=["org9-*-*"]) == [None]
    got = compute_client.claim_tasks(service, count=2, scopes=[scope], protocols=["ProtoB"])
    assert got[1] is None
    assert compute_client.get_task_inputs(got[0])["protocol"] == "ProtoB"
    with pytest.raises(ValidationError):
        compute_client.claim_tasks(service, count=0)
    with pytest.raises(ValidationError):
        compute_client.claim_tasks(service, scopes=["bad scope"])
    with pytest.raises(NotFoundError):
        compute_client.claim_tasks("never-registered", scopes=[scope])
    # Deregistering returns the running task to waiting.
    compute_client.deregister(service)
    assert user_client.get_tasks_status([got[0]]) == ["waiting"]


def test_extends_result_and_streamed_uploads(user_client, compute_client, setup, tmp_path):
    s = setup
    first = [t for t in compute_client.claim_tasks(s["service"], count=2, scopes=[s["scope"]]) if t]
    tf = compute_client.get_task_transformation(first[0])
    pdr_key, chain, data = pdr_document(str(first[0]))
    path = tmp_path / "result.json.zst"
    path.write_bytes(data)
    assert compute_client.push_result(first[0], s["service"], pdr_key, True, path)["status"] == "complete"
    other_key, _, other = pdr_document(str(first[1]))
    buf = io.BytesIO(b"junk" + other)
    buf.seek(4)  # uploads start at the file's current position
    assert compute_client.push_result(first[1], s["service"], other_key, True, buf)["status"] == "complete"

    ext = user_client.create_tasks(tf, extends=first[0])[0]
    user_client.action_tasks([ext], s["net"])
    assert compute_client.claim_tasks(s["service"], scopes=[s["scope"]]) == [ext]
    inputs = compute_client.get_task_inputs(ext)
    assert inputs["extends"] == str(first[0])
    assert inputs["extends_result"]["pdr_key"] == pdr_key
    got = compute_client.get_extends_result(ext)
    assert got == data and json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(got)) == chain


def test_bad_uploads_are_4xx(user_client, compute_client, setup):
    """Each bad upload is refused with a 4xx, and a permanent refusal fails the task it was for
    (issue 12 F3: no service loops on a result that can never be stored)."""
    s = setup
    tasks = user_client.create_tasks(s["tfs"][0], count=6)
    user_client.action_tasks(tasks, s["net"])
    pdr_key, _, data = pdr_document("any")
    deep = zstandard.ZstdCompressor().compress(b"[" * 100_000 + b"]" * 100_000)
    cases = [
        ("zstd", pdr_key, True, b'{"not": "zstd"}'),
        ("empty", pdr_key, True, b""),
        (None, pdr_key, False, zstandard.ZstdCompressor().compress(b"not json")),  # failures must parse
        (None, pdr_key, False, deep),  # nested too deeply to parse
        (None, "../../etc", True, data),  # path traversal in the pdr key
    ]
    for match, key, ok, body in cases:
        # a service of its own per case: refusals count for the failure gate, which would deny
        # one service its claims after a few
        service = f"svc-{uuid.uuid4().hex[:8]}"
        compute_client.register(service)
        task = compute_client.claim_tasks(service, scopes=[s["scope"]])[0]
        with pytest.raises(ValidationError, match=match):
            compute_client.push_result(task, service, key, ok, body)
        assert user_client.get_tasks_status([task]) == ["error"], (match, key)
        compute_client.deregister(service)
    task = compute_client.claim_tasks(s["service"], scopes=[s["scope"]])[0]
    with pytest.raises(ConflictError):  # another service does not hold the claim: not a refusal of its
        compute_client.push_result(task, "someone-else", pdr_key, True, data)
    unknown = ScopedKey.from_str(f"Task-{'0' * 32}-{s['scope']}")
    with pytest.raises(NotFoundError):
        compute_client.push_result(unknown, s["service"], pdr_key, True, data)
    with pytest.raises(NotFoundError):
        compute_client.get_task_inputs(unknown)
    # Still running and claimed: the good upload works afterwards.
    assert compute_client.push_result(task, s["service"], pdr_key, True, data)["status"] == "complete"


def test_real_result_document_round_trip(chain_client, compute_client, setup):
    """A real gufe ProtocolDAGResult (failed, with tracebacks) goes up and comes back unchanged."""
    path = fixture_path("gufe-generated_protocol_dag_result_failed.json")
    s = setup
    task = compute_client.claim_tasks(s["service"], scopes=[s["scope"]])[0]
    chain = json.loads(path.read_text())
    # uploads are checked against the claimed task's transformation (issue 12 F7); the fixture,
    # made by gufe for another transformation, is pointed at this one
    tf_key = str(compute_client.get_task_transformation(task)).rsplit("-", 3)[0]
    chain[-1][1]["transformation_key"] = tf_key
    data = zstandard.ZstdCompressor().compress(json.dumps(chain).encode())
    out = compute_client.push_result(task, s["service"], chain[-1][0], False, data)
    assert out["status"] == "error"
    refs = chain_client.get_task_failures(task, return_as="refs")
    expected_tbs = [d["traceback"] for _, d in chain if d.get("__qualname__") == "ProtocolUnitFailure"]
    assert refs[0]["tracebacks"] == expected_tbs and expected_tbs
    assert chain_client.get_task_failures(task, visualize=False) == [chain]


def test_protocol_result_is_gathered_by_the_runtime(api_server, compute_client, tmp_path):
    """Real toy-runtime results go up; without gufe objects, 'ProtocolResult' comes back gathered by
    that runtime as a dict (the gufe shapes: test_results_gufe.py)."""
    toy = pytest.importorskip("alchemiscale_local.runtimes.toy")
    user_client = api_server.client("user", return_gufe=False)
    from alchemiscale_local.runtimes.base import ExecutionRequest

    scope = f"org1-gather-p{uuid.uuid4().hex[:8]}"
    chain = toy.build_toy_network(2, name=f"gather {scope}", settings={"duration_s": 0.0, "repeats": 1})
    net = user_client.create_network(chain, scope, visualize=False)
    tf = user_client.get_network_transformations(net)[0]
    tasks = user_client.create_tasks(tf, count=2)
    user_client.action_tasks(tasks, net)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    runtime = toy.ToyRuntime()
    claimed = compute_client.claim_tasks(service, count=len(tasks), scopes=[scope])
    assert set(claimed) == set(tasks)
    for task in tasks:
        inputs = compute_client.get_task_inputs(task)
        outcome = runtime.execute(
            ExecutionRequest(
                task_key=str(task),
                transformation=inputs["transformation"],
                extends=None,
                workdir=tmp_path / task.gufe_key,
            )
        )
        assert outcome.ok
        compute_client.push_result(task, service, outcome.pdr_key, True, outcome.result)
    compute_client.deregister(service)

    assert (
        user_client.get_transformation_results(
            user_client.get_network_transformations(net)[1], visualize=False
        )
        is None
    )
    estimate = user_client.get_transformation_results(tf, visualize=False)
    assert estimate["n_results"] == 2 and "estimate" in estimate and "units" in estimate
    each = user_client.get_transformation_results(tf, return_as="ProtocolResults", visualize=False)
    assert [e["n_results"] for e in each] == [1, 1]
    by_tf = user_client.get_network_results(net, visualize=False)
    assert by_tf[tf] == estimate
    docs = user_client.get_network_results(net, return_as="ProtocolDAGResults", visualize=False)
    assert len(docs[tf]) == 2 and all(d[-1][1]["__qualname__"] == "ProtocolDAGResult" for d in docs[tf])
    refs = user_client.get_network_results(net, return_as="refs", visualize=False)
    assert sorted(r["task"] for r in refs[tf]) == sorted(str(t) for t in tasks)
    assert user_client.get_network_failures(net, return_as="refs", visualize=False)[tf] == []


def test_bulk_result_routes_check_scope_and_existence(api_server, user_client, compute_client, setup):
    net = setup["net"]
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    task = compute_client.claim_tasks(service, scopes=[str(ScopedKey.from_str(str(net)).scope)])[0]
    run_task(compute_client, service, task)
    tf = str(compute_client.get_task_transformation(task))
    refs = httpx.post(
        f"{api_server.url}/bulk/transformations/results",
        headers=api_server.headers("user"),
        json={"transformations": [tf]},
    ).json()[tf]
    location = refs[0]["location"]
    ok = httpx.post(
        f"{api_server.url}/bulk/results/download",
        headers=api_server.headers("user"),
        json={"locations": [location]},
    )
    header, _, body = ok.content.partition(b"\n")
    assert json.loads(header)[0]["sha256"] == hashlib.sha256(body).hexdigest() == refs[0]["sha256"]
    missing = location.replace("/obj.json.zst", "x/obj.json.zst")
    assert (
        httpx.post(
            f"{api_server.url}/bulk/results/download",
            headers=api_server.headers("user"),
            json={"locations": [missing]},
        ).status_code
        == 404
    )
    # the limited identity sees org1 only: a location in another org is refused before any lookup
    assert (
        httpx.post(
            f"{api_server.url}/bulk/results/download",
            headers=api_server.headers("limited"),
            json={"locations": [location]},
        ).status_code
        == 200
    )
    elsewhere = "/".join(["protocoldagresult", "org2", *location.split("/")[2:]])
    assert (
        httpx.post(
            f"{api_server.url}/bulk/results/download",
            headers=api_server.headers("limited"),
            json={"locations": [elsewhere]},
        ).status_code
        == 403
    )
    assert (
        httpx.post(
            f"{api_server.url}/bulk/results/download",
            headers=api_server.headers("user"),
            json={"locations": ["../etc/passwd"]},
        ).status_code
        == 400
    )
