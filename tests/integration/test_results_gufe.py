"""With gufe installed, results come back as alchemiscale 0.8 returns them: gufe ProtocolResults.

The toy is then a real gufe Protocol: its Tasks run under gufe's ``execute_DAG`` (through the toy
runtime, as a compute service runs them) and ``get_transformation_results`` gives the protocol's
own ``ToyProtocolResult``. These tests run in the science environment; without gufe they skip.
"""

from __future__ import annotations

import uuid
import warnings

import pytest

gufe = pytest.importorskip("gufe", reason="the gufe result shapes need gufe (the science env)")

from alchemiscale_local.client import ResultFormat  # noqa: E402
from alchemiscale_local.runtimes.base import ExecutionRequest  # noqa: E402
from alchemiscale_local.runtimes.toy import (  # noqa: E402
    ToyProtocol,
    ToyProtocolResult,
    ToyRuntime,
    build_toy_network,
    toy_value,
)


@pytest.fixture
def toy_results(user_client, compute_client, tmp_path):
    """Two toy Tasks of one transformation run (3 repeats each) and pushed; a second one has none."""
    scope = f"org1-gufe-p{uuid.uuid4().hex[:8]}"
    chain = build_toy_network(2, name=f"gufe {scope}", settings={"repeats": 3})
    net = user_client.create_network(chain, scope, visualize=False)
    tf, empty = user_client.get_network_transformations(net)
    tasks = user_client.create_tasks(tf, count=2)
    user_client.action_tasks(tasks, net)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    assert set(compute_client.claim_tasks(service, count=2, scopes=[scope])) == set(tasks)
    for task in tasks:
        inputs = compute_client.get_task_inputs(task)
        outcome = ToyRuntime().execute(
            ExecutionRequest(str(task), inputs["transformation"], None, tmp_path / task.gufe_key)
        )
        assert outcome.ok
        compute_client.push_result(task, service, outcome.pdr_key, True, outcome.result)
    compute_client.deregister(service)
    return net, tf, empty, tasks


def test_documents_load_as_gufe_objects_with_the_toy_protocol(user_client, toy_results):
    net, tf, _, _ = toy_results
    network = user_client.get_network(net, visualize=False)
    assert isinstance(network, gufe.AlchemicalNetwork) and network.key == net.gufe_key
    transformation = user_client.get_transformation(tf, visualize=False)
    assert isinstance(transformation, gufe.Transformation) and transformation.key == tf.gufe_key
    assert isinstance(transformation.protocol, ToyProtocol) and isinstance(
        transformation.protocol, gufe.Protocol
    )
    assert transformation.protocol.settings.repeats == 3


def test_transformation_results_are_the_protocols_result_class(user_client, toy_results):
    _, tf, empty, _ = toy_results
    result = user_client.get_transformation_results(tf, visualize=False)
    assert isinstance(result, ToyProtocolResult) and isinstance(result, gufe.ProtocolResult)
    assert result.n_protocol_dag_results == 2
    values = [toy_value(tf.gufe_key, r) for r in range(3)]  # both tasks ran repeats 0..2
    estimate = result.get_estimate()
    assert str(estimate.units) == "kilocalorie_per_mole"
    assert estimate.magnitude == pytest.approx(sum(values) / 3)
    assert result.get_uncertainty().magnitude > 0
    assert user_client.get_transformation_results(empty, visualize=False) is None
    each = user_client.get_transformation_results(
        tf, return_as=ResultFormat.PROTOCOL_RESULTS, visualize=False
    )
    assert [type(r) for r in each] == [ToyProtocolResult] * 2
    assert [r.n_protocol_dag_results for r in each] == [1, 1]
    assert user_client.get_transformation_results(empty, return_as="ProtocolResults", visualize=False) == []
    pdrs = user_client.get_transformation_results(tf, return_as="ProtocolDAGResults", visualize=False)
    assert all(isinstance(p, gufe.ProtocolDAGResult) and p.ok() for p in pdrs) and len(pdrs) == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = user_client.get_transformation_results(tf, return_protocoldagresults=True, visualize=False)
    assert {p.key for p in old} == {p.key for p in pdrs}
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    with pytest.raises(ValueError, match="unknown return_as"):
        user_client.get_transformation_results(tf, return_as="estimates", visualize=False)


def test_network_results_map_each_transformation_to_a_protocol_result_or_none(user_client, toy_results):
    net, tf, empty, tasks = toy_results
    by_tf = user_client.get_network_results(net, visualize=False)
    assert set(by_tf) == {tf, empty} and by_tf[empty] is None
    single = user_client.get_transformation_results(tf, visualize=False)
    assert isinstance(by_tf[tf], ToyProtocolResult)
    assert by_tf[tf].get_estimate() == single.get_estimate()
    assert by_tf[tf].get_uncertainty() == single.get_uncertainty()
    each = user_client.get_network_results(net, return_as="ProtocolResults", visualize=False)
    assert len(each[tf]) == 2 and each[empty] == []
    docs = user_client.get_network_results(net, return_as="ProtocolDAGResults", visualize=False)
    assert all(isinstance(p, gufe.ProtocolDAGResult) for p in docs[tf]) and docs[empty] == []
    refs = user_client.get_network_results(net, return_as="refs", visualize=False)
    assert sorted(r["task"] for r in refs[tf]) == sorted(str(t) for t in tasks)


def test_without_gufe_objects_the_same_results_are_the_documented_dict(api_server, toy_results):
    _, tf, _, _ = toy_results
    with api_server.client("user", return_gufe=False) as plain:
        got = plain.get_transformation_results(tf, visualize=False)
        result = plain.get_network_results(toy_results[0], visualize=False)[tf]
    assert isinstance(got, dict) and got["n_results"] == 2 and got["units"] == "kcal/mol"
    assert got["estimate"] == pytest.approx(sum(toy_value(tf.gufe_key, r) for r in range(3)) / 3)
    assert result == got
