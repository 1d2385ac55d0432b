"""Claim exclusivity with two transactions interleaved on purpose (no luck involved).

The claim is two steps (``_CANDIDATES`` read, then ``_CLAIM`` write: lock each task, re-check
it is still free, claim it). These tests run those very queries in explicit transactions
of two services, in the orders that would hand one task to both if the lock or the
in-transaction re-check were missing.
"""

from __future__ import annotations

import threading
import time

from alchemiscale_local.backends.statestore import compute as claims
from statestore_helpers import SCOPE, keys_of, register, toy_chain

TF_QUALNAMES = ("Transformation", "NonTransformation")
SCOPE_ROW = [{"org": "org", "campaign": "camp", "project": "proj"}]


def one_actioned_task(store) -> str:
    chain = toy_chain(1, salt="interleave")
    net, _ = store.assemble_network(chain, SCOPE)
    (task,) = store.create_tasks([f"{k}-{SCOPE}" for k in keys_of(chain, TF_QUALNAMES)])
    store.action_tasks([task], str(net))
    return task


def candidates(tx) -> list[str]:
    rows = tx.run(
        claims._CANDIDATES,
        scopes=SCOPE_ROW,
        protocols=None,
        exclude=[],
        limit=claims.CANDIDATE_MIN,
        skip=[],
        r=0.0,
    ).data()
    return [c["k"] for r in rows for c in r["candidates"]]


def claim(tx, service: str, keys: list[str]) -> list[str]:
    return [r["k"] for r in tx.run(claims._CLAIM, id=service, keys=keys, now=time.time()).data()]


def holders(store, task: str) -> list[str]:
    rows = store.driver.execute_query(
        "MATCH (cs:ComputeServiceRegistration)-[:CLAIMS]->(:Task {_scoped_key: $k}) RETURN cs.identifier AS i",
        k=task,
        database_=store.database,
    ).records
    return [r["i"] for r in rows]


def test_claim_after_the_other_committed_rechecks_the_stale_candidate(store):
    """A and B both read the task as a candidate; A claims and commits; B's claim must get nothing."""
    task = one_actioned_task(store)
    a, b = register(store, "a"), register(store, "b")
    with (
        store.driver.session(database=store.database) as sa,
        store.driver.session(database=store.database) as sb,
    ):
        tx_a, tx_b = sa.begin_transaction(), sb.begin_transaction()
        try:
            assert candidates(tx_a) == [task] and candidates(tx_b) == [task]
            assert claim(tx_a, a, [task]) == [task]
            tx_a.commit()
            assert claim(tx_b, b, [task]) == []  # B's candidate list is stale
            tx_b.commit()
        finally:
            for tx in (tx_a, tx_b):
                if not tx.closed():
                    tx.rollback()
    assert holders(store, task) == [a]
    assert store.get_tasks([task])[0]["claimed_by"] == a


def test_claim_while_the_other_is_uncommitted_waits_on_the_lock(store):
    """A claims but has not committed; B's claim of the same task waits for A's lock and then gets nothing."""
    task = one_actioned_task(store)
    a, b = register(store, "a"), register(store, "b")
    got_b: list[list[str]] = []
    errors: list[BaseException] = []
    with (
        store.driver.session(database=store.database) as sa,
        store.driver.session(database=store.database) as sb,
    ):
        tx_a, tx_b = sa.begin_transaction(), sb.begin_transaction()
        try:
            assert candidates(tx_a) == [task] and candidates(tx_b) == [task]
            assert claim(tx_a, a, [task]) == [task]

            def b_claims() -> None:
                try:
                    got_b.append(claim(tx_b, b, [task]))
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

            thread = threading.Thread(target=b_claims, daemon=True)
            thread.start()
            wait_until_blocked(store, deadline_s=60)
            assert thread.is_alive() and not got_b  # B is held by A's lock, not done
            tx_a.commit()
            thread.join(timeout=60)
            assert not thread.is_alive() and not errors, errors
            assert got_b == [[]]
            tx_b.commit()
        finally:
            for tx in (tx_a, tx_b):
                if not tx.closed():
                    tx.rollback()
    assert holders(store, task) == [a]
    assert store.get_tasks([task])[0]["claimed_by"] == a


def wait_until_blocked(store, deadline_s: float) -> None:
    """Poll Neo4j until some transaction reports that it waits on a lock."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        rows = store.driver.execute_query("SHOW TRANSACTIONS YIELD status", database_=store.database).records
        if any(str(r["status"]).startswith("Blocked") for r in rows):
            return
        time.sleep(0.05)
    raise AssertionError("no transaction waited on the task lock")
