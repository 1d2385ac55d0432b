"""alchemiscale 0.8's own compute client and ``SynchronousComputeService`` against a live API.

The official service (PyPI ``alchemiscale==0.8.0``, installed ``--no-deps`` in the science env)
is pointed at the deployment's URL; it registers, claims, fetches transformations, runs real gufe
ProtocolDAGs (the toy, a real gufe Protocol here) and pushes results, which our client then reads
as gufe ProtocolResults. Skips without gufe or alchemiscale.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

gufe = pytest.importorskip("gufe", reason="needs the science env (real gufe)")
pytest.importorskip(
    "alchemiscale.compute.service", reason="needs alchemiscale 0.8 (--no-deps) and its client deps"
)

from alchemiscale.compute.client import (  # noqa: E402
    AlchemiscaleComputeClient,
    AlchemiscaleComputeClientError,
)
from alchemiscale.compute.service import SynchronousComputeService  # noqa: E402
from alchemiscale.compute.settings import ComputeServiceSettings  # noqa: E402
from alchemiscale.models import Scope as AScope  # noqa: E402
from alchemiscale.models import ScopedKey as AScopedKey  # noqa: E402
from alchemiscale.storage.models import ComputeServiceID  # noqa: E402

from alchemiscale_local.runtimes.toy import ToyProtocolResult, build_toy_network  # noqa: E402


def _official_client(api_server, tmp_path, role: str = "compute") -> AlchemiscaleComputeClient:
    ident, key = api_server.credentials[role]
    return AlchemiscaleComputeClient(
        api_server.url, ident, key, cache_directory=tmp_path / "acache", max_retries=1, retry_base_seconds=1.1
    )


@pytest.fixture
def toy_network(user_client):
    """A submitted toy network of 2 transformations with 2 actioned tasks each."""
    scope = f"org1-acompute-p{uuid.uuid4().hex[:8]}"
    chain = build_toy_network(2, name=f"alch compute {scope}", settings={"repeats": 2})
    net = user_client.create_network(chain, scope, visualize=False)
    tfs = user_client.get_network_transformations(net)
    tasks = [t for tf in tfs for t in user_client.create_tasks(tf, count=2)]
    user_client.action_tasks(tasks, net)
    return scope, net, tfs, tasks


def test_official_compute_client_calls(api_server, user_client, toy_network, tmp_path):
    """Every call the service makes, one by one, with alchemiscale's own client."""
    scope, _net, tfs, tasks = toy_network
    client = _official_client(api_server, tmp_path)
    sid = ComputeServiceID.new_from_name("officialcalls")
    assert client.register(sid) == sid
    assert client.heartbeat(sid) == sid
    assert AScope.from_str("*-*-*") in client.list_scopes()
    assert isinstance(client.get_info(), dict)
    client._api_check()  # raises unless /check answers 2xx
    claimed = client.claim_tasks([AScope.from_str(scope)], sid, count=1)
    assert len(claimed) == 1 and isinstance(claimed[0], AScopedKey) and str(claimed[0]) in map(str, tasks)
    task = claimed[0]
    transformation, extends = client.retrieve_task_transformation(task)
    assert str(client.get_task_transformation(task)) == str(transformation.key) + "-" + scope
    assert isinstance(transformation, gufe.Transformation) and extends is None
    assert transformation.key in {tf.gufe_key for tf in tfs}
    dag = transformation.create(name=str(task))
    pdr = gufe.protocols.execute_DAG(dag, shared_basedir=tmp_path, scratch_basedir=tmp_path)
    assert pdr.ok()
    ref = client.set_task_result(task, pdr, sid)
    assert isinstance(ref, AScopedKey) and ref.qualname == "ProtocolDAGResultRef"
    assert str(ref.scope) == scope
    assert user_client.get_tasks_status([str(task)]) == ["complete"]
    # A task extending it gets that ProtocolDAGResult back with its transformation.
    tf = next(t for t in tfs if t.gufe_key == transformation.key)
    (ext,) = user_client.create_tasks(tf, extends=str(task))
    user_client.action_tasks([ext], _net)
    rest = [t for t in client.claim_tasks([AScope.from_str(scope)], sid, count=10) if t is not None]
    assert str(ext) in map(str, rest)
    ext_sk = next(t for t in rest if str(t) == str(ext))
    _, extended = client.retrieve_task_transformation(ext_sk)
    assert isinstance(extended, gufe.ProtocolDAGResult) and extended.key == pdr.key
    assert client.deregister(sid) == sid


def test_official_client_bad_result_is_refused(api_server, user_client, toy_network, tmp_path):
    """A result that is not the task's (another transformation's DAG) is refused with 400; the task fails."""
    scope, _net, tfs, tasks = toy_network
    client = _official_client(api_server, tmp_path)
    sid = ComputeServiceID.new_from_name("officialbad")
    client.register(sid)
    (task,) = client.claim_tasks([AScope.from_str(scope)], sid, count=1)
    transformation, _ = client.retrieve_task_transformation(task)
    other_tf = next(t for t in tfs if t.gufe_key != transformation.key)
    other = user_client.get_transformation(other_tf, visualize=False)
    pdr = gufe.protocols.execute_DAG(other.create(), shared_basedir=tmp_path, scratch_basedir=tmp_path)
    with pytest.raises(AlchemiscaleComputeClientError, match="400"):
        client.set_task_result(task, pdr, sid)
    assert user_client.get_tasks_status([str(task)]) == ["error"]
    client.deregister(sid)


def test_official_synchronous_compute_service_completes_tasks(api_server, user_client, toy_network, tmp_path):
    """alchemiscale's SynchronousComputeService runs all 4 tasks; our client reads gufe results."""
    scope, _net, tfs, tasks = toy_network
    ident, key = api_server.credentials["compute"]
    settings = ComputeServiceSettings(
        api_url=api_server.url,
        identifier=ident,
        key=key,
        name="officialsync",
        shared_basedir=tmp_path / "shared",
        scratch_basedir=tmp_path / "scratch",
        heartbeat_interval=5,
        sleep_interval=1,
        deep_sleep_interval=1,
        scopes=[AScope.from_str(scope)],
        claim_limit=2,
        client_cache_directory=tmp_path / "svc-cache",
        client_max_retries=2,
        client_retry_base_seconds=1.1,
        loglevel="WARNING",
        max_tasks=4,
    )
    service = SynchronousComputeService(settings)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.start()
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(timeout=300)
    if thread.is_alive():
        service.stop()
        thread.join(timeout=30)
    elapsed = time.monotonic() - start
    assert not errors, errors
    assert user_client.get_tasks_status([str(t) for t in tasks]) == ["complete"] * len(tasks)
    print(f"official SynchronousComputeService: {len(tasks)} tasks complete in {elapsed:.1f} s")
    for tf in tfs:
        result = user_client.get_transformation_results(tf, visualize=False)
        assert isinstance(result, ToyProtocolResult) and isinstance(result, gufe.ProtocolResult)
        assert result.n_protocol_dag_results == 2
    # The service deregistered on the way out: its registration is gone.
    rows = api_server.store._read(
        "MATCH (cs:ComputeServiceRegistration {identifier: $id}) RETURN count(cs) AS n",
        id=str(service.compute_service_id),
    )
    assert rows[0]["n"] == 0
