"""``wait()`` counts every task of the network, also those that finished before it was called."""

from __future__ import annotations

import time
import uuid

from api_helpers import run_task, submit_toy

from alchemiscale_local.client import user as user_module


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"wait() slept {seconds} s on a network that had already finished")


def _finish(user_client, compute_client, network, tasks, oks) -> None:
    """Claim and push a result for every task (ok or failed as ``oks`` says), without waiting."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    left = dict(zip(map(str, tasks), oks, strict=True))
    deadline = time.monotonic() + 60
    while left and time.monotonic() < deadline:
        for task in compute_client.claim_tasks(service, count=len(left), scopes=[str(network.scope)]) or []:
            if task is not None:
                run_task(compute_client, service, task, ok=left.pop(str(task)))
    compute_client.deregister(service)
    assert not left, f"tasks never claimed: {left}"


def test_wait_on_a_finished_network_returns_its_counts_at_once(user_client, compute_client, monkeypatch):
    network, _, tfs = submit_toy(user_client, f"org1-wait-p{uuid.uuid4().hex[:8]}", n=3)
    tasks = user_client.create_transformations_tasks(tfs)
    user_client.action_tasks(tasks, network)
    _finish(user_client, compute_client, network, tasks, [True, True, False])
    # finished tasks have left the hub's actioned set; wait() still counts them
    assert user_client.get_network_actioned_tasks(network) == [tasks[2]]  # errored stays actioned
    # it is done on the first look: wait() must return without ever sleeping for a poll
    monkeypatch.setattr(user_module.time, "sleep", _no_sleep)
    counts = user_client.wait(network, timeout=30, poll=5.0, visualize=False)
    assert counts == {"complete": 2, "error": 1}


def test_wait_ignores_tasks_never_actioned_and_counts_invalid_ones(user_client, compute_client):
    network, _, tfs = submit_toy(user_client, f"org1-wait-p{uuid.uuid4().hex[:8]}", n=3)
    run, idle, dropped = user_client.create_transformations_tasks(tfs)
    user_client.action_tasks([run], network)
    user_client.set_tasks_status([dropped], "invalid")
    _finish(user_client, compute_client, network, [run], [True])
    # `idle` was never actioned: it waits forever and must not block wait()
    counts = user_client.wait(network, timeout=30, poll=0.1, visualize=False)
    assert counts == {"complete": 1, "invalid": 1}
    assert user_client.get_tasks_status([idle]) == ["waiting"]
