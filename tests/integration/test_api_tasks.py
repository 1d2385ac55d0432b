"""User API through the client: tasks, actioning, status, priority, status summaries, wait()."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from api_helpers import run_task, submit_toy

from alchemiscale_local.client import NotFoundError, ValidationError
from alchemiscale_local.models import ScopedKey

SCOPE = "org1-tasks-proj"


@pytest.fixture
def net(user_client):
    """A fresh network in its own project: (network, transformations)."""
    project = "p" + uuid.uuid4().hex[:8]
    net, _, tfs = submit_toy(user_client, f"org1-tasks-{project}", n=3)
    return net, tfs


def test_create_tasks_and_lookups(user_client, net):
    network, tfs = net
    tasks = user_client.create_tasks(tfs[0], count=3)
    assert len(tasks) == 3 and all(isinstance(t, ScopedKey) and t.qualname == "Task" for t in tasks)
    assert tasks[0].scope == network.scope
    ext = user_client.create_tasks(tfs[0], extends=tasks[0])
    bulk = user_client.create_transformations_tasks([tfs[1], tfs[1], tfs[2]], extends=None)
    assert len(bulk) == 3
    assert set(user_client.get_transformation_tasks(tfs[0])) == set(tasks + ext)
    assert user_client.get_transformation_tasks(tfs[0], extends=tasks[0]) == ext
    assert set(user_client.get_transformation_tasks(tfs[1])) == set(bulk[:2])
    assert set(user_client.get_network_tasks(network)) == set(tasks + ext + bulk)
    assert user_client.get_network_tasks(network, status="complete") == []
    assert user_client.get_task_transformation(bulk[2]) == tfs[2]
    assert user_client.get_task_networks(tasks[0]) == [network]
    assert set(user_client.query_tasks(scope=network.scope)) == set(tasks + ext + bulk)
    assert set(user_client.query_tasks(scope=network.scope, status="waiting")) == set(tasks + ext + bulk)
    assert user_client.query_tasks(scope=network.scope, status="error") == []
    for t in tasks:
        assert user_client.check_exists(t)

    graph = user_client.get_transformation_tasks(tfs[0], return_as="graph")
    assert set(graph.nodes) == set(tasks + ext)
    assert list(graph.edges) == [(ext[0], tasks[0])]

    with pytest.raises(ValidationError):
        user_client.query_tasks(status="bogus")
    with pytest.raises(ValidationError):
        user_client.create_tasks(tfs[0], count=0)
    with pytest.raises(ValidationError):  # extends a task of another transformation
        user_client.create_tasks(tfs[1], extends=tasks[0])
    with pytest.raises(NotFoundError):
        user_client.create_tasks(str(tfs[0]).replace(tfs[0].gufe_key.split("-")[1], "0" * 32))
    with pytest.raises(ValueError):
        user_client.create_transformations_tasks([tfs[0]], extends=[None, None])


def test_action_cancel_and_weights(user_client, net):
    network, tfs = net
    tasks = user_client.create_tasks(tfs[0], count=3)
    assert user_client.get_network_actioned_tasks(network) == []
    assert user_client.action_tasks(tasks[:2], network) == tasks[:2]
    assert set(user_client.get_network_actioned_tasks(network)) == set(tasks[:2])
    weights = user_client.get_network_actioned_tasks(network, task_weights=True)
    assert weights == {tasks[0]: 0.5, tasks[1]: 0.5}
    assert user_client.action_tasks(tasks, network, weight=[0.1, 0.2, 0.3]) == tasks
    assert user_client.get_network_actioned_tasks(network, task_weights=True) == {
        tasks[0]: pytest.approx(0.1),
        tasks[1]: pytest.approx(0.2),
        tasks[2]: pytest.approx(0.3),
    }
    assert user_client.get_task_actioned_networks(tasks[0]) == [network]
    assert user_client.get_task_actioned_networks(tasks[0], task_weights=True) == {
        network: pytest.approx(0.1)
    }
    both = user_client.get_networks_actioned_tasks([network, network], task_weights=False)
    assert len(both) == 2 and set(both[0]) == set(tasks)

    # A task of another network's transformation is not actionable here.
    other, _, other_tfs = submit_toy(user_client, network.scope.__str__(), n=1)
    foreign = user_client.create_tasks(other_tfs[0])[0]
    assert user_client.action_tasks([foreign, tasks[0]], network) == [None, tasks[0]]

    assert user_client.cancel_tasks([tasks[0], foreign], network) == [tasks[0], None]
    assert set(user_client.get_network_actioned_tasks(network)) == set(tasks[1:])
    with pytest.raises(ValidationError):
        user_client.action_tasks(tasks, network, weight=2.0)
    with pytest.raises(ValueError):
        user_client.action_tasks(tasks, network, weight=[0.5])
    missing = f"AlchemicalNetwork-{'0' * 32}-{network.scope}"
    with pytest.raises(NotFoundError):
        user_client.action_tasks(tasks, missing)


def test_status_and_priority(user_client, net):
    network, tfs = net
    tasks = user_client.create_tasks(tfs[1], count=3)
    missing = ScopedKey.from_str(f"Task-{'0' * 32}-{network.scope}")
    assert user_client.get_tasks_status(tasks + [missing]) == ["waiting"] * 3 + [None]
    assert user_client.set_tasks_status(tasks[:1], "invalid") == tasks[:1]
    assert user_client.get_tasks_status(tasks) == ["invalid", "waiting", "waiting"]
    # invalid -> waiting is not a transition the state machine allows: as alchemiscale, None for
    # that task (unchanged), the others are set.
    assert user_client.set_tasks_status(tasks, "waiting") == [None, tasks[1], tasks[2]]
    assert user_client.get_tasks_status(tasks) == ["invalid", "waiting", "waiting"]
    with pytest.raises(ValidationError):
        user_client.set_tasks_status(tasks, "complete")  # not a user transition
    assert user_client.set_tasks_status([missing], "deleted") == [None]
    assert user_client.set_tasks_status(tasks[2:], "deleted") == tasks[2:]

    assert user_client.get_tasks_priority(tasks + [missing]) == [10, 10, 10, None]
    assert user_client.set_tasks_priority(tasks[:2] + [missing], 3) == tasks[:2] + [None]
    assert user_client.get_tasks_priority(tasks) == [3, 3, 10]
    with pytest.raises(ValidationError):
        user_client.set_tasks_priority(tasks, 0)
    # Batching: many small batches give the same answer.
    assert user_client.get_tasks_priority(tasks, batch_size=1) == [3, 3, 10]
    assert user_client.get_tasks_status(tasks, batch_size=2) == ["invalid", "waiting", "deleted"]


def test_status_summaries(user_client, net, capsys):
    network, tfs = net
    tasks = user_client.create_tasks(tfs[0], count=2) + user_client.create_tasks(tfs[1])
    user_client.set_tasks_status(tasks[:1], "invalid")
    assert user_client.get_network_status(network, visualize=False) == {"waiting": 2, "invalid": 1}
    assert user_client.get_networks_status([network, network]) == [{"waiting": 2, "invalid": 1}] * 2
    assert user_client.get_transformation_status(tfs[0], visualize=False) == {"waiting": 1, "invalid": 1}
    assert user_client.get_transformation_status(tfs[2], visualize=False) == {}
    assert user_client.get_scope_status(network.scope, visualize=False) == {"waiting": 2, "invalid": 1}
    assert user_client.get_scope_status(network.scope, visualize=False, network_state=None) == {
        "waiting": 2,
        "invalid": 1,
    }
    user_client.set_network_state(network, "inactive")
    assert user_client.get_scope_status(network.scope, visualize=False) == {}
    assert user_client.get_scope_status(network.scope, visualize=False, network_state="inactive") == {
        "waiting": 2,
        "invalid": 1,
    }
    user_client.set_network_state(network, "active")

    capsys.readouterr()
    user_client.get_network_status(network, visualize=True)
    out = capsys.readouterr().out
    assert "waiting" in out and "invalid" in out and "total" in out
    with pytest.raises(ValidationError):
        user_client.get_scope_status("bad scope", visualize=False)


def test_wait_until_actioned_tasks_finish(api_server, user_client, compute_client, net):
    network, tfs = net
    tasks = user_client.create_tasks(tfs[0], count=3)
    user_client.action_tasks(tasks, network)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            done = 0
            while done < 3:
                claimed = compute_client.claim_tasks(service, count=1, scopes=[str(network.scope)])
                for task in claimed or []:
                    if task is not None:
                        time.sleep(0.2)
                        run_task(compute_client, service, task, ok=done != 1)
                        done += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    counts = user_client.wait(network, timeout=60, poll=0.1, visualize=False)
    worker.join(10)
    assert not errors
    assert counts == {"complete": 2, "error": 1}
    compute_client.deregister(service)


def test_wait_times_out_and_returns_at_once_when_nothing_is_actioned(user_client, net):
    network, tfs = net
    assert user_client.wait(network, timeout=5, poll=0.1, visualize=False) == {}
    tasks = user_client.create_tasks(tfs[2])
    user_client.action_tasks(tasks, network)
    with pytest.raises(TimeoutError, match="1 of 1"):  # it gives up (pytest-timeout catches a hang)
        user_client.wait(network, timeout=0.5, poll=0.1, visualize=False)
