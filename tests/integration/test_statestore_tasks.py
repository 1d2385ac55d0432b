"""State store: task creation, the status machine, priorities, actioning, status counts, lookups."""

from __future__ import annotations

import pytest
from alchemiscale_local.backends.statestore import InvalidInput, InvalidTransition, NotFound
from statestore_helpers import (
    OTHER_SCOPE,
    SCOPE,
    count_label,
    graph_snapshot,
    keys_of,
    network_of,
    register,
    result_ref,
    toy_chain,
)

TF_QUALNAMES = ("Transformation", "NonTransformation")


@pytest.fixture
def net(store):
    """A 4-transformation network in SCOPE: (network sk, [transformation sks])."""
    chain = toy_chain(4, salt="t")
    sk, _ = store.assemble_network(chain, SCOPE)
    return str(sk), [f"{k}-{SCOPE}" for k in keys_of(chain, TF_QUALNAMES)]


def run_to(store, task: str, ok: bool) -> str:
    """Claim exactly ``task`` (the only waiting actioned one) and post a result."""
    svc = register(store)
    assert store.claim_tasks(svc, 1) == [task]
    return store.set_task_result(task, result_ref(task, ok), identifier=svc)


# -- creation ------------------------------------------------------------------------
def test_create_tasks_n_per_transformation(store, net):
    network, tfs = net
    tasks = store.create_tasks([tfs[0]] * 3 + [tfs[1]], creator="alice")
    assert len(tasks) == len(set(tasks)) == 4
    assert all(t.startswith("Task-") and t.endswith(f"-{SCOPE}") for t in tasks)
    assert store.get_task_status(tasks) == ["waiting"] * 4
    assert store.get_task_priority(tasks) == [10] * 4
    assert sorted(store.get_transformation_tasks(tfs[0])) == sorted(tasks[:3])
    assert store.get_transformation_tasks(tfs[1]) == [tasks[3]]
    assert store.get_transformation_tasks(tfs[2]) == []
    assert sorted(store.get_network_tasks(network)) == sorted(tasks)
    assert store.get_task_transformation(tasks[0]) == (tfs[0], None)
    assert store.get_task_networks(tasks[0]) == [network]
    rec = store.get_tasks([tasks[0]])[0]
    assert rec["status"] == "waiting" and rec["transformation"] == tfs[0]
    assert rec["protocol"] == "ToyProtocolA" and rec["protocol_module"] == "tests.toyprotocols"
    assert count_label(store.driver, "Task") == 4
    assert store.create_tasks([]) == []


def test_extends_same_transformation_only(store, net):
    _, tfs = net
    (base,) = store.create_tasks([tfs[0]])
    (ext,) = store.create_tasks([tfs[0]], extends=[base])
    assert store.get_task_transformation(ext) == (tfs[0], base)
    assert store.get_transformation_tasks(tfs[0], extends=base) == [ext]
    before = graph_snapshot(store.driver)
    with pytest.raises(InvalidInput, match="another transformation"):
        store.create_tasks([tfs[1]], extends=[base])
    with pytest.raises(NotFound):
        store.create_tasks([tfs[0]], extends=[f"Task-{'0' * 32}-{SCOPE}"])
    with pytest.raises(InvalidInput):
        store.create_tasks([tfs[0], tfs[0]], extends=[base])
    assert graph_snapshot(store.driver) == before


@pytest.mark.parametrize("terminal", ["invalid", "deleted"])
def test_cannot_extend_invalid_or_deleted(store, net, terminal):
    _, tfs = net
    (base,) = store.create_tasks([tfs[0]])
    store.set_task_status([base], terminal)
    before = graph_snapshot(store.driver)
    with pytest.raises(InvalidTransition):
        store.create_tasks([tfs[0]], extends=[base])
    assert graph_snapshot(store.driver) == before


# -- user transitions -------------------------------------------------------------------
def test_user_transitions(store, net):
    network, tfs = net
    w, r, c, e = store.create_tasks([tfs[0], tfs[1], tfs[2], tfs[3]])
    store.action_tasks([r], network)
    svc = register(store)
    assert store.claim_tasks(svc, 1) == [r]
    store.action_tasks([c], network)
    assert store.claim_tasks(svc, 1) == [c]
    store.set_task_result(c, result_ref(c, True), identifier=svc)
    store.action_tasks([e], network)
    assert store.claim_tasks(svc, 1) == [e]
    store.set_task_result(e, result_ref(e, False), identifier=svc)
    assert store.get_task_status([w, r, c, e]) == ["waiting", "running", "complete", "error"]

    # Only waiting / invalid / deleted may be asked for.
    for target in ("running", "complete", "error", "bogus"):
        with pytest.raises(InvalidInput):
            store.set_task_status([w], target)

    # complete -> waiting is refused, and the whole batch with it.
    before = graph_snapshot(store.driver)
    with pytest.raises(InvalidTransition):
        store.set_task_status([e, c], "waiting")
    assert graph_snapshot(store.driver) == before
    assert store.get_task_status([e, c]) == ["error", "complete"]

    # error -> waiting, running -> waiting (the claim goes), waiting -> waiting.
    assert store.set_task_status([e, r, w], "waiting") == [e, r, w]
    assert store.get_task_status([w, r, c, e]) == ["waiting", "waiting", "complete", "waiting"]
    assert store.driver.execute_query("MATCH ()-[c:CLAIMS]->() RETURN count(c) AS n").records[0]["n"] == 0
    assert store.get_tasks([r])[0]["claimed_by"] is None

    # invalid and deleted are terminal, and exclusive.
    store.set_task_status([w], "invalid")
    store.set_task_status([c], "deleted")
    assert store.set_task_status([w], "invalid") == [w]  # idempotent
    for task, target in ((w, "waiting"), (w, "deleted"), (c, "waiting"), (c, "invalid")):
        with pytest.raises(InvalidTransition):
            store.set_task_status([task], target)
    assert store.get_task_status([w, c]) == ["invalid", "deleted"]
    # complete -> invalid is allowed.
    (c2,) = store.create_tasks([tfs[2]])
    store.action_tasks([c2], network)
    store.set_task_priority([c2], 1)  # r and e are waiting on the hub too
    assert run_to(store, c2, True) == "complete"
    store.set_task_status([c2], "invalid")
    assert store.get_task_status([c2]) == ["invalid"]


def test_unknown_task_transition_changes_nothing(store, net):
    _, tfs = net
    (t,) = store.create_tasks([tfs[0]])
    before = graph_snapshot(store.driver)
    with pytest.raises(NotFound):
        store.set_task_status([t, f"Task-{'f' * 32}-{SCOPE}"], "invalid")
    assert graph_snapshot(store.driver) == before
    assert store.get_task_status([t, f"Task-{'f' * 32}-{SCOPE}"]) == ["waiting", None]


@pytest.mark.parametrize("terminal", ["invalid", "deleted"])
def test_terminal_status_propagates_to_extending_tasks(store, net, terminal):
    network, tfs = net
    (a,) = store.create_tasks([tfs[0]])
    b, b2 = store.create_tasks([tfs[0], tfs[0]], extends=[a, a])
    (c,) = store.create_tasks([tfs[0]], extends=[b])
    (d,) = store.create_tasks([tfs[0]], extends=[c])
    (other,) = store.create_tasks([tfs[0]])
    store.action_tasks([a, b, b2, c, d, other], network)
    # One extending task already in the other terminal state stays there.
    blocked = "deleted" if terminal == "invalid" else "invalid"
    store.set_task_status([b2], blocked)

    store.set_task_status([b], terminal)
    assert store.get_task_status([a, b, b2, c, d, other]) == [
        "waiting",
        terminal,
        blocked,
        terminal,
        terminal,
        "waiting",
    ]
    # Their ACTIONS are gone; the others' stay.
    assert set(store.get_network_actioned_tasks(network)) == {a, other}


# -- priorities -----------------------------------------------------------------------------
def test_priorities_bulk(store, net):
    _, tfs = net
    tasks = store.create_tasks(tfs)
    missing = f"Task-{'e' * 32}-{SCOPE}"
    assert store.set_task_priority(tasks[:2] + [missing], 3) == tasks[:2] + [None]
    assert store.get_task_priority(tasks + [missing]) == [3, 3, 10, 10, None]
    store.set_task_priority(tasks[1:2], 1)
    assert store.get_task_priority(tasks) == [3, 1, 10, 10]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidInput):
            store.set_task_priority(tasks, bad)
    assert store.get_task_priority(tasks) == [3, 1, 10, 10]


# -- actioning --------------------------------------------------------------------------------
def test_action_and_cancel_with_weights(store, net):
    network, tfs = net
    tasks = store.create_tasks(tfs)
    assert store.action_tasks(tasks[:2], network) == tasks[:2]
    assert store.action_tasks(tasks[2:], network, weight=[0.2, 1.0]) == tasks[2:]
    assert store.get_network_actioned_tasks(network) == {
        tasks[0]: 0.5,
        tasks[1]: 0.5,
        tasks[2]: 0.2,
        tasks[3]: 1.0,
    }
    # Re-actioning updates the weight; it adds no second ACTIONS.
    store.action_tasks([tasks[0]], network, weight=0.0)
    assert store.get_network_actioned_tasks(network)[tasks[0]] == 0.0
    assert store.driver.execute_query("MATCH ()-[a:ACTIONS]->() RETURN count(a) AS n").records[0]["n"] == 4
    assert store.get_task_actioned_networks(tasks[2]) == {network: 0.2}

    missing = f"Task-{'d' * 32}-{SCOPE}"
    assert store.cancel_tasks([tasks[0], missing], network) == [tasks[0], None]
    assert store.cancel_tasks([tasks[0]], network) == [None]
    assert set(store.get_network_actioned_tasks(network)) == set(tasks[1:])

    with pytest.raises(InvalidInput):
        store.action_tasks([tasks[0]], network, weight=1.5)
    with pytest.raises(InvalidInput):
        store.action_tasks([tasks[0]], network, weight=[0.1, 0.2])
    with pytest.raises(NotFound):
        store.action_tasks([tasks[0]], f"AlchemicalNetwork-{'0' * 32}-{SCOPE}")


def test_action_only_on_a_network_of_the_transformation_and_actionable_status(store):
    chain = toy_chain(4, salt="a")
    tfs = keys_of(chain, TF_QUALNAMES)
    one, _ = store.assemble_network(network_of(chain, tfs[:2], "one"), SCOPE)
    two, _ = store.assemble_network(network_of(chain, tfs[1:], "two"), SCOPE)
    t0, t1, t3 = store.create_tasks([f"{tfs[0]}-{SCOPE}", f"{tfs[1]}-{SCOPE}", f"{tfs[3]}-{SCOPE}"])
    # t0's transformation is not in network two.
    assert store.action_tasks([t0, t1, t3], str(two)) == [None, t1, t3]
    assert store.action_tasks([t1], str(one)) == [t1]
    assert store.get_task_actioned_networks(t1) == {str(one): 0.5, str(two): 0.5}
    assert store.get_task_networks(t1) == sorted([str(one), str(two)])
    # Complete tasks and terminal ones cannot be actioned.
    store.cancel_tasks([t1], str(two))
    store.set_task_status([t3], "deleted")
    assert run_to(store, t1, True) == "complete"
    assert store.action_tasks([t1, t3], str(two)) == [None, None]
    # A completed task is removed from every hub.
    assert store.get_task_actioned_networks(t1) == {}


# -- status counts -----------------------------------------------------------------------------
def test_status_counts(store):
    chain = toy_chain(3, salt="c")
    tfs = [f"{k}-{SCOPE}" for k in keys_of(chain, TF_QUALNAMES)]
    network, _ = store.assemble_network(chain, SCOPE)
    other_chain = toy_chain(2, salt="c2", name="other")
    other, _ = store.assemble_network(other_chain, OTHER_SCOPE, state="inactive")
    other_tfs = [f"{k}-{OTHER_SCOPE}" for k in keys_of(other_chain, TF_QUALNAMES)]
    tasks = store.create_tasks([tfs[0]] * 3 + [tfs[1]] * 2)
    other_tasks = store.create_tasks(other_tfs)
    store.action_tasks(tasks, str(network))
    svc = register(store)
    store.set_task_priority([tasks[0]], 1)
    (claimed,) = store.claim_tasks(svc, 1, scopes=[SCOPE])
    assert claimed == tasks[0]
    store.set_task_status([tasks[4]], "invalid")

    assert store.get_network_status([str(network), str(other)]) == [
        {"waiting": 3, "running": 1, "invalid": 1},
        {"waiting": 2},
    ]
    assert store.get_transformation_status(tfs[0]) == {"waiting": 2, "running": 1}
    assert store.get_transformation_status(tfs[1]) == {"waiting": 1, "invalid": 1}
    assert store.get_transformation_status(tfs[2]) == {}
    assert store.get_scope_status(SCOPE) == {"waiting": 3, "running": 1, "invalid": 1}
    assert store.get_scope_status("org-*-*") == {"waiting": 5, "running": 1, "invalid": 1}
    assert store.get_scope_status("org-camp-other") == {"waiting": 2}
    assert store.get_scope_status("x-*-*") == {}
    assert store.get_scope_status("*-*-*", network_state="inactive") == {"waiting": 2}
    assert store.get_scope_status("*-*-*", network_state="active") == {
        "waiting": 3,
        "running": 1,
        "invalid": 1,
    }
    assert sorted(store.query_tasks(scope=SCOPE, status="waiting")) == sorted(tasks[1:4])
    assert sorted(store.query_tasks(scope=OTHER_SCOPE)) == sorted(other_tasks)
    assert store.get_network_tasks(str(network), status="running") == [tasks[0]]
    assert store.get_transformation_tasks(tfs[1], status="invalid") == [tasks[4]]
    with pytest.raises(NotFound):
        store.get_network_status([str(network), f"AlchemicalNetwork-{'0' * 32}-{SCOPE}"])


# -- lookups -----------------------------------------------------------------------------------
def test_lookups_task_to_transformation_networks_results(store, net):
    network, tfs = net
    (t,) = store.create_tasks([tfs[2]])
    store.action_tasks([t], network)
    assert store.get_task_transformation(t) == (tfs[2], None)
    assert store.get_task_networks(t) == [network]
    assert store.get_task_results(t) == []
    svc = register(store)
    assert store.claim_tasks(svc, 1) == [t]
    ref = result_ref(t, True)
    store.set_task_result(t, ref, identifier=svc)
    (got,) = store.get_task_results(t)
    assert got["location"] == ref.location and got["ok"] is True and got["task"] == t
    assert got["sha256"] == ref.sha256 and got["creator"] == svc and got["pdr_key"] == ref.pdr_key
    assert store.get_task_results(t, ok=False) == []
    assert [r["location"] for r in store.get_transformation_results(tfs[2])] == [ref.location]
    rec = store.get_result_ref(ref.location)
    assert rec["task"] == t and rec["transformation"] == tfs[2] and rec["org"] == "org"
    missing = f"Task-{'c' * 32}-{SCOPE}"
    for call in (
        store.get_task_transformation,
        store.get_task_networks,
        store.get_task_results,
        store.get_task_actioned_networks,
    ):
        with pytest.raises(NotFound):
            call(missing)
    with pytest.raises(NotFound):
        store.get_result_ref("protocoldagresult/nowhere")
