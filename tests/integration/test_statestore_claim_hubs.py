"""State store: a claim reads ONE hub's candidates, chosen by hub weight in the read itself.

Before, the first read expanded every hub in scope (up to 32 ordered candidates each) and
Python chose a hub afterwards, so the Neo4j work and the rows per claim grew with the number of
hubs. These tests pin the new shape (one hub per read, its db hits bounded by that hub) and the
semantics it must keep: hubs in proportion to weight, hubs without a claimable task never
chosen, ``count`` spilling over to other hubs.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from alchemiscale_local.backends.statestore import compute as claims
from statestore_helpers import SCOPE, keys_of, register, toy_chain

TF_QUALNAMES = ("Transformation", "NonTransformation")


def make_hubs(store, weights: list[float], tfs_per: int, reps: int, salt: str) -> dict[str, str]:
    """One network per weight (``tfs_per`` transformations, ``reps`` tasks each), all actioned.

    Returns {task: hub scoped key}.
    """
    hub_of: dict[str, str] = {}
    networks = []
    for i, _ in enumerate(weights):
        chain = toy_chain(tfs_per, salt=f"{salt}{i}", name=f"{salt}{i}")
        sk, _ = store.assemble_network(chain, SCOPE)
        tasks = store.create_tasks([f"{k}-{SCOPE}" for k in keys_of(chain, TF_QUALNAMES)] * reps)
        store.action_tasks(tasks, str(sk))
        networks.append(str(sk))
        hub = store.driver.execute_query(
            "MATCH (th:TaskHub {network: $n}) RETURN th._scoped_key AS h", n=str(sk), database_=store.database
        ).records[0]["h"]
        hub_of.update(dict.fromkeys(tasks, hub))  # dicts keep order: hubs in creation order
    store.set_network_weight(networks, weights)
    return hub_of


class ReadSpy:
    """Records every read of the store (query, parameters, rows) while installed."""

    def __init__(self, store: Any) -> None:
        self.store, self.calls = store, []
        self._orig = store._read

    def __enter__(self) -> ReadSpy:
        def spy(query: str, **params: Any) -> list[dict[str, Any]]:
            rows = self._orig(query, **params)
            self.calls.append((query, params, rows))
            return rows

        self.store._read = spy
        return self

    def __exit__(self, *exc: object) -> None:
        del self.store._read


def db_hits(plan: dict[str, Any]) -> int:
    return plan.get("dbHits", 0) + sum(db_hits(c) for c in plan.get("children", []))


def test_first_read_returns_candidates_of_exactly_one_hub(store):
    make_hubs(store, [0.5, 0.5, 0.5, 0.5], tfs_per=3, reps=2, salt="one")
    svc = register(store)
    with ReadSpy(store) as spy:
        got = store.claim_for_service(svc, 1, ["*-*-*"], include_held=True, max_failures=3, window_s=60.0)
    assert len(got) == 1
    (query, _params, rows), *more = spy.calls
    assert query == claims._CLAIM_START and not more, "one read in the common case"
    (hub,) = rows[0]["hubs"]  # the old read returned all four hubs here
    assert got[0] in {c["k"] for c in hub["candidates"]}
    assert len(hub["candidates"]) == 6


def test_hubs_are_chosen_in_proportion_to_weight(store):
    weights = [0.1, 0.3, 0.6]
    hub_of = make_hubs(store, weights, tfs_per=2, reps=2, salt="w")
    hubs = list(dict.fromkeys(hub_of.values()))  # in creation order, as the weights
    weight_of = dict(zip(hubs, weights, strict=True))
    assert Counter(hub_of.values()) == dict.fromkeys(hubs, 4)
    store.rng = random.Random(20261201)  # this store only: a fixed sequence, no flaky runs
    svc = register(store)
    n = 300
    chosen: Counter[str] = Counter()
    for _ in range(n):
        (got,) = store.claim_tasks(svc, 1)
        chosen[hub_of[got]] += 1
        store.set_task_status([got], "waiting")
    for h in hubs:
        # Binomial sd <= 0.029 at n=300; 0.1 is a wide margin either way.
        assert abs(chosen[h] / n - weight_of[h]) < 0.1, (chosen, weight_of)
    assert chosen.most_common(1)[0][0] == max(hubs, key=weight_of.__getitem__)


def test_a_hub_without_claimable_tasks_is_never_chosen(store):
    """A heavy hub whose only waiting task extends a running one: the light hub is chosen, in one read."""
    heavy = toy_chain(1, salt="blocked", name="heavy")
    heavy_sk, _ = store.assemble_network(heavy, SCOPE)
    (tf,) = [f"{k}-{SCOPE}" for k in keys_of(heavy, TF_QUALNAMES)]
    (base,) = store.create_tasks([tf])
    (ext,) = store.create_tasks([tf], extends=[base])
    store.action_tasks([base, ext], str(heavy_sk))
    other = register(store, "other")
    assert store.claim_tasks(other, 1) == [base]  # base running: ext is blocked
    light = make_hubs(store, [0.001], tfs_per=1, reps=1, salt="light")
    store.set_network_weight([str(heavy_sk)], [1.0])
    svc = register(store)
    for _ in range(5):
        with ReadSpy(store) as spy:
            got = store.claim_tasks(svc, 1)
        assert got == list(light) and len(spy.calls) == 1
        store.set_task_status(got, "waiting")


def test_count_continues_on_other_hubs_when_the_chosen_one_runs_out(store):
    hub_of = make_hubs(store, [0.2, 0.3, 0.5], tfs_per=1, reps=2, salt="spill")
    svc = register(store)
    with ReadSpy(store) as spy:
        first = store.claim_tasks(svc, 5)
    assert len(first) == len(set(first)) == 5
    assert len({hub_of[t] for t in first}) == 3
    assert len(spy.calls) == 3  # the first read, then one per further hub: each read is one hub
    assert all(len(rows[0]["hubs"] if "hubs" in rows[0] else rows) == 1 for _q, _p, rows in spy.calls)
    rest = store.claim_tasks(svc, 5)
    assert sorted(first + rest) == sorted(hub_of)
    assert store.claim_tasks(svc, 5) == []


def test_first_read_work_is_bounded_by_the_chosen_hub(store):
    """10 hubs of 60 tasks: the read touches one hub's tasks, not all 600 (the old read: ~5800 db hits).

    Planned first with ONE hub in the graph, as a deployment that grows does: a plan cached then
    must not start from the Task(status) index and join every waiting task to every hub.
    """
    make_hubs(store, [0.5], tfs_per=6, reps=10, salt="solo")
    svc, idle = register(store), register(store, "idle")
    with ReadSpy(store) as spy:
        store.claim_for_service(svc, 1, ["*-*-*"], include_held=True, max_failures=3, window_s=60.0)
    query, params, _ = spy.calls[0]
    make_hubs(store, [0.5] * 9, tfs_per=6, reps=10, salt="many")
    hits = []
    for r in (0.05, 0.5, 0.95):  # different hubs chosen
        with store.driver.session(database=store.database) as session:
            result = session.run("PROFILE " + query, dict(params, id=idle, r=r))
            (row,) = result.data()
            hits.append(db_hits(result.consume().profile))
        assert len(row["hubs"]) == 1
    # One hub's 60 tasks cost ~10 db hits each with their checks; every hub's first task a few more.
    assert max(hits) < 2000, hits
