"""State store: results (ok and failed) and task restart patterns."""

from __future__ import annotations

import pytest
from alchemiscale_local.backends.statestore import InvalidInput, NotFound
from statestore_helpers import SCOPE, graph_snapshot, keys_of, network_of, register, result_ref, toy_chain

TF_QUALNAMES = ("Transformation", "NonTransformation")
BOOM = (
    'Traceback (most recent call last):\n  File "unit.py", line 3\nRuntimeError: boom: the integrator blew up'
)
OTHER = 'Traceback (most recent call last):\n  File "unit.py", line 9\nValueError: bad input geometry'


@pytest.fixture
def net(store):
    chain = toy_chain(3, salt="res")
    sk, _ = store.assemble_network(chain, SCOPE)
    return str(sk), [f"{k}-{SCOPE}" for k in keys_of(chain, TF_QUALNAMES)]


def fail(store, svc, task, tracebacks=(BOOM,)):
    """Claim ``task`` (it must be the only claimable one) and post a failure."""
    assert store.claim_tasks(svc, 1) == [task]
    return store.set_task_result(task, result_ref(task, False), identifier=svc, tracebacks=list(tracebacks))


def applies(store, task):
    return {
        r["p"]: r["n"]
        for r in store.driver.execute_query(
            "MATCH (p:TaskRestartPattern)-[a:APPLIES]->(:Task {_scoped_key: $k}) RETURN p.pattern AS p, a.num_retries AS n",
            k=task,
        ).records
    }


def test_ok_result_completes_and_unqueues(store, net):
    network, tfs = net
    (t,) = store.create_tasks([tfs[0]])
    store.action_tasks([t], network)
    store.add_task_restart_patterns(network, ["boom"], 3)
    assert applies(store, t) == {"boom": 0}
    svc = register(store)
    assert store.claim_tasks(svc, 1) == [t]
    ref = result_ref(t, True)
    assert store.set_task_result(t, ref, identifier=svc) == "complete"
    assert store.get_task_status([t]) == ["complete"]
    assert store.get_network_actioned_tasks(network) == {}
    assert applies(store, t) == {}
    assert store.driver.execute_query("MATCH ()-[c:CLAIMS]->() RETURN count(c) AS n").records[0]["n"] == 0
    (got,) = store.get_task_results(t)
    assert got["location"] == ref.location and got["size"] == 123 and got["tracebacks"] == []
    assert store.list_computeservices()[0]["failures"] == 0


def test_failure_keeps_tracebacks_and_actions(store, net):
    network, tfs = net
    (t,) = store.create_tasks([tfs[0]])
    store.action_tasks([t], network)
    svc = register(store)
    assert fail(store, svc, t, [BOOM, OTHER]) == "error"
    assert store.get_task_status([t]) == ["error"]
    assert store.get_task_results(t) == []
    (failure,) = store.get_task_results(t, ok=False)
    assert failure["ok"] is False and failure["tracebacks"] == [BOOM, OTHER]
    assert [r["location"] for r in store.get_transformation_results(tfs[0], ok=False)] == [
        failure["location"]
    ]
    # No patterns: it stays actioned, so the user can re-queue it.
    assert store.get_network_actioned_tasks(network) == {t: 0.5}
    store.set_task_status([t], "waiting")
    assert fail(store, svc, t, [OTHER]) == "error"
    assert len(store.get_task_results(t, ok=False)) == 2
    assert len(store.get_task_results(t, ok=None)) == 2


def test_matching_pattern_restarts_until_retries_used_up(store, net):
    network, tfs = net
    (t,) = store.create_tasks([tfs[0]])
    store.action_tasks([t], network)
    store.add_task_restart_patterns(network, [r"RuntimeError: boom"], 2)
    svc = register(store)
    assert fail(store, svc, t) == "waiting"
    assert store.get_task_status([t]) == ["waiting"] and applies(store, t) == {r"RuntimeError: boom": 1}
    assert fail(store, svc, t) == "waiting"
    assert applies(store, t) == {r"RuntimeError: boom": 2}
    # Third failure: max_retries (2) used up -> cancelled from the hub, stays error.
    assert fail(store, svc, t) == "error"
    assert store.get_task_status([t]) == ["error"]
    assert store.get_network_actioned_tasks(network) == {}
    assert applies(store, t) == {}
    assert len(store.get_task_results(t, ok=False)) == 3
    assert store.claim_tasks(svc, 1) == []


def test_non_matching_failure_is_cancelled_from_the_hub(store, net):
    network, tfs = net
    t, u = store.create_tasks([tfs[0], tfs[1]])
    store.action_tasks([t, u], network)
    store.add_task_restart_patterns(network, ["RuntimeError"], 5)
    svc = register(store)
    store.set_task_priority([t], 1)
    assert fail(store, svc, t, [OTHER]) == "error"
    assert store.get_network_actioned_tasks(network) == {u: 0.5}
    # No tracebacks at all: cancelled too.
    assert fail(store, svc, u, []) == "error"
    assert store.get_network_actioned_tasks(network) == {}


def test_latest_failure_decides(store, net):
    network, tfs = net
    (t,) = store.create_tasks([tfs[0]])
    store.action_tasks([t], network)
    store.add_task_restart_patterns(network, ["boom"], 5)
    svc = register(store)
    assert fail(store, svc, t, [BOOM]) == "waiting"
    # The earlier matching traceback does not rescue a later, different failure.
    assert fail(store, svc, t, [OTHER]) == "error"
    assert store.get_network_actioned_tasks(network) == {}


def test_pattern_on_one_network_only(store):
    chain = toy_chain(2, salt="two")
    tfs = keys_of(chain, TF_QUALNAMES)
    with_p, _ = store.assemble_network(network_of(chain, tfs, "with"), SCOPE)
    without, _ = store.assemble_network(network_of(chain, tfs, "without"), SCOPE)
    nonmatch, _ = store.assemble_network(network_of(chain, tfs, "nonmatch"), SCOPE)
    (t,) = store.create_tasks([f"{tfs[0]}-{SCOPE}"])
    for n in (with_p, without, nonmatch):
        store.action_tasks([t], str(n))
    store.add_task_restart_patterns(str(with_p), ["boom"], 1)
    store.add_task_restart_patterns(str(nonmatch), ["nothing like it"], 1)
    svc = register(store)
    assert fail(store, svc, t, [BOOM]) == "waiting"
    assert set(store.get_task_actioned_networks(t)) == {str(with_p), str(without)}
    # Second failure: with_p's allowance is used up; 'without' has no patterns and keeps it.
    assert fail(store, svc, t, [BOOM]) == "error"
    assert set(store.get_task_actioned_networks(t)) == {str(without)}


def test_same_pattern_text_on_two_networks_is_not_shared(store):
    """Each network's hub owns its patterns: the same text on two networks is two patterns."""
    chain = toy_chain(2, salt="shared-text")
    tfs = keys_of(chain, TF_QUALNAMES)
    a, _ = store.assemble_network(network_of(chain, tfs, "a"), SCOPE)
    b, _ = store.assemble_network(network_of(chain, tfs, "b"), SCOPE)
    (t,) = store.create_tasks([f"{tfs[0]}-{SCOPE}"])
    for n in (a, b):
        store.action_tasks([t], str(n))
    store.add_task_restart_patterns(str(a), ["boom"], 1)
    store.add_task_restart_patterns(str(b), ["boom"], 3)
    assert store.get_task_restart_patterns(str(a)) == {"boom": 1}
    assert store.get_task_restart_patterns(str(b)) == {"boom": 3}
    assert (
        store.driver.execute_query("MATCH (p:TaskRestartPattern) RETURN count(p) AS n").records[0]["n"] == 2
    )
    # Changing or removing it on one network leaves the other's alone.
    store.set_task_restart_patterns_max_retries(str(a), ["boom"], 2)
    assert store.get_task_restart_patterns(str(b)) == {"boom": 3}
    store.remove_task_restart_patterns(str(a), ["boom"])
    assert store.get_task_restart_patterns(str(a)) == {}
    assert store.get_task_restart_patterns(str(b)) == {"boom": 3}
    # b's pattern still applies to the task: a matching failure sends it back to waiting.
    svc = register(store)
    assert fail(store, svc, t, [BOOM]) == "waiting"
    assert applies(store, t) == {"boom": 1}


def test_adding_patterns_resolves_already_errored_tasks(store, net):
    network, tfs = net
    a, b = store.create_tasks([tfs[0], tfs[1]])
    store.action_tasks([a, b], network)
    svc = register(store)
    store.set_task_priority([a], 1)
    assert fail(store, svc, a, [BOOM]) == "error"
    assert fail(store, svc, b, [OTHER]) == "error"
    store.add_task_restart_patterns(network, ["boom"], 3)
    assert store.get_task_status([a, b]) == ["waiting", "error"]
    assert store.get_network_actioned_tasks(network) == {a: 0.5}
    assert applies(store, a) == {"boom": 1}


def test_tasks_actioned_after_the_pattern_get_it(store, net):
    network, tfs = net
    store.add_task_restart_patterns(network, ["boom"], 1)
    (t,) = store.create_tasks([tfs[2]])
    store.action_tasks([t], network)
    assert applies(store, t) == {"boom": 0}
    svc = register(store)
    assert fail(store, svc, t) == "waiting"


def test_get_set_remove_clear_patterns(store, net):
    network, tfs = net
    (t,) = store.create_tasks([tfs[0]])
    store.action_tasks([t], network)
    assert store.get_task_restart_patterns(network) == {}
    store.add_task_restart_patterns(network, ["boom", "ValueError"], 2)
    store.add_task_restart_patterns(network, ["timeout"], 4)
    assert store.get_task_restart_patterns(network) == {"boom": 2, "ValueError": 2, "timeout": 4}
    assert applies(store, t) == {"boom": 0, "ValueError": 0, "timeout": 0}
    # Adding an existing pattern again sets its max_retries, no duplicate.
    store.add_task_restart_patterns(network, ["boom"], 7)
    assert store.get_task_restart_patterns(network) == {"boom": 7, "ValueError": 2, "timeout": 4}
    store.set_task_restart_patterns_max_retries(network, ["ValueError", "timeout"], 9)
    assert store.get_task_restart_patterns(network) == {"boom": 7, "ValueError": 9, "timeout": 9}
    store.remove_task_restart_patterns(network, ["ValueError", "not there"])
    assert store.get_task_restart_patterns(network) == {"boom": 7, "timeout": 9}
    assert applies(store, t) == {"boom": 0, "timeout": 0}
    store.clear_task_restart_patterns(network)
    assert store.get_task_restart_patterns(network) == {}
    assert applies(store, t) == {}
    assert (
        store.driver.execute_query("MATCH (p:TaskRestartPattern) RETURN count(p) AS n").records[0]["n"] == 0
    )


def test_pattern_bad_input(store, net):
    network, _ = net
    before = graph_snapshot(store.driver)
    for patterns, retries in (
        (["("], 2),
        ([""], 2),
        (["x" * 1001], 2),
        (["ok"], 0),
        (["ok"], -1),
        (["ok"], 1.5),
    ):
        with pytest.raises(InvalidInput):
            store.add_task_restart_patterns(network, patterns, retries)
    with pytest.raises(InvalidInput):
        store.set_task_restart_patterns_max_retries(network, ["ok"], 0)
    missing = f"AlchemicalNetwork-{'0' * 32}-{SCOPE}"
    for call in (
        lambda: store.add_task_restart_patterns(missing, ["ok"], 1),
        lambda: store.get_task_restart_patterns(missing),
        lambda: store.clear_task_restart_patterns(missing),
        lambda: store.remove_task_restart_patterns(missing, ["ok"]),
    ):
        with pytest.raises(NotFound):
            call()
    assert graph_snapshot(store.driver) == before
