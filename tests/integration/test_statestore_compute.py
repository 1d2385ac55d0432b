"""State store: compute service registration, heartbeats, expiry, the failure gate, claim ownership."""

from __future__ import annotations

import time

import pytest
from alchemiscale_local.backends.statestore import Conflict, NotFound
from statestore_helpers import SCOPE, count_label, graph_snapshot, keys_of, register, result_ref, toy_chain

from alchemiscale_local.models import ComputeServiceRegistration

TF_QUALNAMES = ("Transformation", "NonTransformation")


class Clock:
    """The store's clock, moved by hand: expiry and failure windows without sleeps or races."""

    def __init__(self) -> None:
        self.now = time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(store, monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(store, "_now", lambda: c.now)
    return c


@pytest.fixture
def queued(store):
    """A network with 4 waiting tasks actioned on its hub: (network, tasks)."""
    chain = toy_chain(4, salt="cs")
    sk, _ = store.assemble_network(chain, SCOPE)
    tasks = store.create_tasks([f"{k}-{SCOPE}" for k in keys_of(chain, TF_QUALNAMES)])
    store.action_tasks(tasks, str(sk))
    return str(sk), tasks


def test_register_heartbeat_list(store, clock):
    reg = ComputeServiceRegistration(
        identifier="gpu0-abc", hostname="node1", pid=42, gpu="0", runtimes=["toy"]
    )
    assert store.register_computeservice(reg) == "gpu0-abc"
    (row,) = store.list_computeservices()
    assert row["identifier"] == "gpu0-abc" and row["hostname"] == "node1" and row["pid"] == 42
    assert row["gpu"] == "0" and row["failures"] == 0 and row["tasks"] == []
    first = row["heartbeat"]
    clock.advance(5)
    store.heartbeat_computeservice("gpu0-abc")
    (row,) = store.list_computeservices()
    assert row["heartbeat"] == first + 5 and row["registered"] == first
    # Registering again updates, never duplicates.
    store.register_computeservice(reg.model_copy(update={"pid": 43}))
    (row,) = store.list_computeservices()
    assert row["pid"] == 43
    assert count_label(store.driver, "ComputeServiceRegistration") == 1
    with pytest.raises(NotFound):
        store.heartbeat_computeservice("never-registered")


def test_deregister_returns_running_tasks_to_waiting(store, queued):
    _, tasks = queued
    svc, other = register(store, "a"), register(store, "b")
    mine = store.claim_tasks(svc, 2)
    theirs = store.claim_tasks(other, 1)
    done = store.claim_tasks(svc, 1)
    store.set_task_result(done[0], result_ref(done[0], True), identifier=svc)
    assert sorted(
        store.list_computeservices()[0]["tasks"] + store.list_computeservices()[1]["tasks"]
    ) == sorted(mine + theirs)

    store.deregister_computeservice(svc)
    assert store.get_task_status(mine) == ["waiting", "waiting"]
    assert store.get_task_status(theirs + done) == ["running", "complete"]
    assert [r["identifier"] for r in store.list_computeservices()] == [other]
    assert all(r["claimed_by"] is None for r in store.get_tasks(mine))
    # They are claimable again, by someone else.
    assert sorted(store.claim_tasks(other, 5)) == sorted(mine)
    with pytest.raises(NotFound):
        store.deregister_computeservice(svc)
    with pytest.raises(NotFound):
        store.claim_tasks(svc, 1)


def test_expire_returns_silent_services_tasks(store, queued, clock):
    _, tasks = queued
    silent, alive = register(store, "silent"), register(store, "alive")
    lost = store.claim_tasks(silent, 2)
    kept = store.claim_tasks(alive, 1)
    clock.advance(100)
    store.heartbeat_computeservice(alive)
    clock.advance(10)
    # silent: 110 s without a heartbeat, alive: 10 s; a 60 s TTL expires only silent
    assert store.expire_computeservices(60) == [silent]
    assert store.get_task_status(lost) == ["waiting", "waiting"]
    assert store.get_task_status(kept) == ["running"]
    assert [r["identifier"] for r in store.list_computeservices()] == [alive]
    assert store.expire_computeservices(60) == []
    assert store.expire_computeservices(9) == [alive]  # the TTL boundary: 10 s silent > 9 s
    # The expired service's late result is refused and stores nothing.
    before = graph_snapshot(store.driver)
    with pytest.raises(Conflict):
        store.set_task_result(lost[0], result_ref(lost[0], True), identifier=silent)
    assert graph_snapshot(store.driver) == before
    with pytest.raises(NotFound):
        store.heartbeat_computeservice(silent)


def test_failure_gate(store, clock):
    svc = register(store)
    assert store.computeservice_can_claim(svc, max_failures=2, window_s=60)
    for _ in range(2):
        store.log_failure_computeservice(svc)
    assert store.computeservice_can_claim(svc, max_failures=2, window_s=60)  # 2 is not more than 2
    store.log_failure_computeservice(svc)
    assert not store.computeservice_can_claim(svc, max_failures=2, window_s=60)
    assert store.list_computeservices()[0]["failures"] == 3
    # Old failures are forgiven (and pruned).
    clock.advance(30)
    assert not store.computeservice_can_claim(svc, max_failures=2, window_s=31)  # still inside
    assert store.computeservice_can_claim(svc, max_failures=2, window_s=29)
    assert store.list_computeservices()[0]["failures"] == 0
    with pytest.raises(NotFound):
        store.computeservice_can_claim("nobody-1", 3, 60)


def test_failed_results_count_as_service_failures(store, queued):
    _, tasks = queued
    svc = register(store)
    for _ in range(2):
        (t,) = store.claim_tasks(svc, 1)
        assert store.set_task_result(t, result_ref(t, False), identifier=svc) == "error"
    assert store.list_computeservices()[0]["failures"] == 2
    assert store.computeservice_can_claim(svc, max_failures=2, window_s=600)
    assert not store.computeservice_can_claim(svc, max_failures=1, window_s=600)


def test_result_from_service_without_the_claim_is_refused(store, queued):
    _, tasks = queued
    holder, intruder = register(store, "holder"), register(store, "intruder")
    (task,) = store.claim_tasks(holder, 1)
    before = graph_snapshot(store.driver)
    with pytest.raises(Conflict):
        store.set_task_result(task, result_ref(task, True), identifier=intruder)
    with pytest.raises(Conflict):
        store.assert_claim(intruder, task)
    assert graph_snapshot(store.driver) == before
    assert store.get_task_results(task, ok=None) == []
    assert store.list_computeservices()[0]["failures"] == 0
    store.assert_claim(holder, task)
    # A task that is not running takes no result at all.
    waiting = next(t for t in tasks if t != task)
    with pytest.raises(Conflict):
        store.set_task_result(waiting, result_ref(waiting, True), identifier=holder)
    assert graph_snapshot(store.driver) == before
    # The holder's result is taken.
    assert store.set_task_result(task, result_ref(task, True), identifier=holder) == "complete"
    # ... once.
    with pytest.raises(Conflict):
        store.set_task_result(task, result_ref(task, True), identifier=holder)
    assert len(store.get_task_results(task)) == 1


def test_claim_lost_to_user_reset_refuses_result(store, queued):
    _, tasks = queued
    svc = register(store)
    (task,) = store.claim_tasks(svc, 1)
    store.set_task_status([task], "waiting")
    other = register(store, "other")
    assert task in store.claim_tasks(other, 4)
    with pytest.raises(Conflict):
        store.set_task_result(task, result_ref(task, True), identifier=svc)
    assert store.get_task_status([task]) == ["running"]
    assert store.get_tasks([task])[0]["claimed_by"] == other


@pytest.mark.parametrize("terminal", ["invalid", "deleted"])
def test_terminating_a_running_task_drops_its_claim(store, queued, terminal):
    _, tasks = queued
    svc = register(store)
    (task,) = store.claim_tasks(svc, 1)
    store.set_task_status([task], terminal)
    assert store.get_tasks([task])[0]["claimed_by"] is None
    assert store.list_computeservices()[0]["tasks"] == []
    assert store.driver.execute_query("MATCH ()-[c:CLAIMS]->() RETURN count(c) AS n").records[0]["n"] == 0
    before = graph_snapshot(store.driver)
    with pytest.raises(Conflict):
        store.set_task_result(task, result_ref(task, True), identifier=svc)
    assert graph_snapshot(store.driver) == before
    assert store.get_task_status([task]) == [terminal]
