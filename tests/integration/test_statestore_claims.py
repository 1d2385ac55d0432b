"""State store: claim order and filters, and many concurrent claimers on shared hubs."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from alchemiscale_local.backends.statestore import InvalidInput, NotFound
from statestore_helpers import (
    OTHER_SCOPE,
    SCOPE,
    keys_of,
    network_of,
    register,
    result_ref,
    toy_chain,
)

TF_QUALNAMES = ("Transformation", "NonTransformation")


def make_network(store, n, *, salt, scope=SCOPE, name="toy", protocols=("ToyProtocolA",)):
    chain = toy_chain(n, salt=salt, name=name, protocols=protocols)
    sk, _ = store.assemble_network(chain, scope)
    return str(sk), [f"{k}-{scope}" for k in keys_of(chain, TF_QUALNAMES)]


def drain(store, svc, **kw):
    """Claim one at a time until nothing is left; return the claims in order."""
    out = []
    while True:
        got = store.claim_tasks(svc, 1, **kw)
        if not got:
            return out
        assert len(got) == 1
        out.extend(got)


def test_priority_order_lower_first(store):
    network, tfs = make_network(store, 5, salt="p")
    tasks = store.create_tasks(tfs)
    store.action_tasks(tasks, network)
    store.set_task_priority([tasks[3]], 1)
    store.set_task_priority([tasks[1]], 2)
    store.set_task_priority([tasks[4]], 5)
    store.set_task_priority([tasks[0], tasks[2]], 7)
    svc = register(store)
    order = drain(store, svc)
    assert order[:3] == [tasks[3], tasks[1], tasks[4]]
    assert set(order[3:]) == {tasks[0], tasks[2]} and len(order) == 5
    assert store.get_task_status(tasks) == ["running"] * 5
    assert all(r["claimed_by"] == svc for r in store.get_tasks(tasks))


def test_claim_count_several_at_once(store):
    network, tfs = make_network(store, 6, salt="n")
    tasks = store.create_tasks(tfs)
    store.action_tasks(tasks, network)
    svc = register(store)
    first = store.claim_tasks(svc, 4)
    assert len(first) == len(set(first)) == 4
    rest = store.claim_tasks(svc, 10)
    assert sorted(first + rest) == sorted(tasks)
    assert store.claim_tasks(svc, 3) == []


def test_zero_weight_hub_and_zero_weight_actions_never_claimed(store):
    a, a_tfs = make_network(store, 3, salt="h0", name="a")
    b, b_tfs = make_network(store, 3, salt="h1", name="b")
    a_tasks = store.create_tasks(a_tfs)
    b_tasks = store.create_tasks(b_tfs)
    store.action_tasks(a_tasks, a)
    store.action_tasks(b_tasks[:2], b)
    store.action_tasks(b_tasks[2:], b, weight=0.0)
    store.set_network_weight([a, b], [0.0, 0.7])
    assert store.get_network_weight([b, a]) == [0.7, 0.0]
    svc = register(store)
    assert sorted(drain(store, svc)) == sorted(b_tasks[:2])
    assert store.get_task_status(a_tasks + b_tasks[2:]) == ["waiting"] * 4
    # Weight back up: now the hub's tasks are claimable.
    store.set_network_weight([a], [0.1])
    assert sorted(drain(store, svc)) == sorted(a_tasks)
    assert store.get_task_status(b_tasks[2:]) == ["waiting"]


def test_action_weights_bias_the_choice(store):
    network, tfs = make_network(store, 2, salt="bias")
    heavy, light = store.create_tasks(tfs)
    store.action_tasks([heavy], network, weight=1.0)
    store.action_tasks([light], network, weight=0.01)
    svc = register(store)
    first = Counter()
    for _ in range(40):
        (got,) = store.claim_tasks(svc, 1)
        first[got] += 1
        store.set_task_status([got], "waiting")
    assert first[heavy] > first[light]
    assert first[heavy] >= 30


def test_unactioned_tasks_are_not_claimed(store):
    network, tfs = make_network(store, 2, salt="u")
    t0, t1 = store.create_tasks(tfs)
    store.action_tasks([t0], network)
    svc = register(store)
    assert drain(store, svc) == [t0]
    assert store.get_task_status([t1]) == ["waiting"]


def test_protocol_filter(store):
    network, tfs = make_network(store, 6, salt="pf", protocols=("ToyProtocolA", "ToyProtocolB"))
    tasks = store.create_tasks(tfs)
    store.action_tasks(tasks, network)
    protos = {t: store.get_tasks([t])[0]["protocol"] for t in tasks}
    svc = register(store)
    got_b = drain(store, svc, protocols=["ToyProtocolB"])
    assert sorted(got_b) == sorted(t for t in tasks if protos[t] == "ToyProtocolB") and len(got_b) == 3
    assert drain(store, svc, protocols=["NoSuchProtocol"]) == []
    got_a = drain(store, svc, protocols=["ToyProtocolA", "ToyProtocolB"])
    assert sorted(got_a) == sorted(t for t in tasks if protos[t] == "ToyProtocolA")


def test_extending_task_waits_for_the_extended_one(store):
    network, tfs = make_network(store, 1, salt="x")
    (base,) = store.create_tasks(tfs)
    (ext,) = store.create_tasks(tfs, extends=[base])
    (ext2,) = store.create_tasks(tfs, extends=[ext])
    store.action_tasks([base, ext, ext2], network)
    store.set_task_priority([ext, ext2], 1)  # would go first if it were claimable
    svc = register(store)
    assert store.claim_tasks(svc, 5) == [base]
    assert store.claim_tasks(svc, 5) == []
    # A failed base keeps the extension blocked.
    store.set_task_result(base, result_ref(base, False), identifier=svc)
    assert store.claim_tasks(svc, 5) == []
    store.set_task_status([base], "waiting")
    assert store.claim_tasks(svc, 5) == [base]
    store.set_task_result(base, result_ref(base, True), identifier=svc)
    assert store.claim_tasks(svc, 5) == [ext]
    store.set_task_result(ext, result_ref(ext, True), identifier=svc)
    assert store.claim_tasks(svc, 5) == [ext2]


def test_scope_filter(store):
    mine, mine_tfs = make_network(store, 3, salt="s1", scope=SCOPE)
    theirs, their_tfs = make_network(store, 3, salt="s2", scope=OTHER_SCOPE)
    far, far_tfs = make_network(store, 2, salt="s3", scope="zorg-camp-proj")
    m = store.create_tasks(mine_tfs)
    t = store.create_tasks(their_tfs)
    f = store.create_tasks(far_tfs)
    store.action_tasks(m, mine)
    store.action_tasks(t, theirs)
    store.action_tasks(f, far)
    svc = register(store)
    assert sorted(drain(store, svc, scopes=[SCOPE])) == sorted(m)
    assert drain(store, svc, scopes=["org-camp-nothere", "nobody-*-*"]) == []
    assert drain(store, svc, scopes=[]) == []
    assert sorted(drain(store, svc, scopes=["org-*-*"])) == sorted(t)
    assert sorted(drain(store, svc, scopes=["*-*-*"])) == sorted(f)


def test_claim_requires_registered_service_and_sane_count(store):
    network, tfs = make_network(store, 1, salt="r")
    tasks = store.create_tasks(tfs)
    store.action_tasks(tasks, network)
    with pytest.raises(NotFound):
        store.claim_tasks("nobody-0123", 1)
    svc = register(store)
    for bad in (0, -1, 1001, 1.0):
        with pytest.raises(InvalidInput):
            store.claim_tasks(svc, bad)
    assert store.get_task_status(tasks) == ["waiting"]


def test_claimed_task_is_not_claimed_again(store):
    network, tfs = make_network(store, 1, salt="again")
    (task,) = store.create_tasks(tfs)
    store.action_tasks([task], network)
    one, two = register(store, "one"), register(store, "two")
    assert store.claim_tasks(one, 1) == [task]
    assert store.claim_tasks(two, 1) == []
    assert store.driver.execute_query("MATCH ()-[c:CLAIMS]->() RETURN count(c) AS n").records[0]["n"] == 1


# -- concurrency -------------------------------------------------------------------------------
def _setup_hubs(store, n_networks: int, per_network: int, salt: str) -> list[str]:
    """n networks over disjoint transformations of one chain, one task each, all actioned."""
    chain = toy_chain(n_networks * per_network, salt=salt)
    tfs = keys_of(chain, TF_QUALNAMES)
    tasks: list[str] = []
    for i in range(n_networks):
        part = tfs[i * per_network : (i + 1) * per_network]
        sk, _ = store.assemble_network(network_of(chain, part, f"hub{i}"), SCOPE)
        created = store.create_tasks([f"{k}-{SCOPE}" for k in part])
        assert store.action_tasks(created, str(sk)) == created
        tasks.extend(created)
    return tasks


def _run_claimers(store, n_claimers: int, *, complete: bool) -> tuple[dict[str, list[str]], float, list]:
    services = [register(store, f"c{i}") for i in range(n_claimers)]
    claims: dict[str, list[str]] = {s: [] for s in services}
    errors: list[BaseException] = []
    start = threading.Barrier(n_claimers + 1)

    def claimer(svc: str) -> None:
        try:
            start.wait()
            empty = 0
            while empty < 3:  # a claim can come back empty while others are mid-claim
                got = store.claim_tasks(svc, 1)
                if not got:
                    empty += 1
                    continue
                empty = 0
                claims[svc].extend(got)
                if complete:
                    for t in got:
                        store.set_task_result(t, result_ref(t, True), identifier=svc)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(s,)) for s in services]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join(timeout=240)
    elapsed = time.perf_counter() - t0
    assert not any(th.is_alive() for th in threads), "a claimer hung"
    return claims, elapsed, errors


def test_concurrent_claimers_claim_every_task_exactly_once(store, capsys):
    tasks = _setup_hubs(store, 3, 200, salt="cc")
    assert len(tasks) == 600
    claims, elapsed, errors = _run_claimers(store, 16, complete=False)
    assert not errors, errors
    every = [t for got in claims.values() for t in got]
    dupes = [t for t, n in Counter(every).items() if n > 1]
    assert not dupes, f"{len(dupes)} tasks claimed twice"
    assert sorted(every) == sorted(tasks)
    assert sum(1 for got in claims.values() if got) >= 8, "work was not spread over the claimers"
    # The graph agrees: one CLAIMS per task, from the service that was told it won.
    rows = store.driver.execute_query(
        "MATCH (cs:ComputeServiceRegistration)-[:CLAIMS]->(t:Task) RETURN t._scoped_key AS t, cs.identifier AS cs"
    ).records
    assert len(rows) == 600
    holder = {r["t"]: r["cs"] for r in rows}
    for svc, got in claims.items():
        assert all(holder[t] == svc for t in got)
    assert store.get_scope_status(SCOPE) == {"running": 600}
    with capsys.disabled():
        print(
            f"\n[statestore] 16 claimers claimed 600 tasks in {elapsed:.2f} s ({600 / elapsed:.0f} claims/s)"
        )


@pytest.mark.parametrize("n_claimers", [1, 16])
def test_claim_and_complete_throughput(store, capsys, n_claimers):
    n_tasks = 150 if n_claimers == 1 else 300  # a rate: the single claimer needs fewer
    tasks = _setup_hubs(store, 3, n_tasks // 3, salt=f"tp{n_claimers}")
    claims, elapsed, errors = _run_claimers(store, n_claimers, complete=True)
    assert not errors, errors
    every = [t for got in claims.values() for t in got]
    assert len(every) == len(set(every)) == n_tasks
    assert sorted(every) == sorted(tasks)
    assert store.get_scope_status(SCOPE) == {"complete": n_tasks}
    # Claims are released; completed tasks leave the queue (their ACTIONS stay, filtered by status).
    assert store.driver.execute_query("MATCH ()-[r:CLAIMS]->() RETURN count(r) AS n").records[0]["n"] == 0
    assert all(store.get_network_actioned_tasks(n) == {} for n in store.query_networks(scope=SCOPE))
    with capsys.disabled():
        print(
            f"\n[statestore] claim+complete, {n_claimers} claimer(s): {n_tasks} tasks in {elapsed:.2f} s "
            f"= {n_tasks / elapsed:.0f} tasks/s"
        )


def test_a_lost_claim_response_is_handed_over_again(store):
    """If the claim's response never reached the service, its next claim returns the same task."""
    tasks = _setup_hubs(store, 1, 3, salt="lostclaim")
    svc = register(store, "svc-lost")
    first = store.claim_tasks(svc, 1, [SCOPE], include_held=True)
    assert len(first) == 1 and first[0] in tasks
    # the service never saw `first` and asks again: it gets the same task, nothing new is claimed
    assert store.claim_tasks(svc, 1, [SCOPE], include_held=True) == first
    assert store.get_task_status(tasks).count("running") == 1
