"""State store: networks of real gufe documents in, the same keyed chains out."""

from __future__ import annotations

import copy
import json
import threading
import time

import pytest
from alchemiscale_local.backends.statestore import InvalidInput, NotFound, hub_key
from statestore_helpers import (
    NETWORK_FIXTURES,
    OTHER_SCOPE,
    SCOPE,
    assert_dependencies_first,
    count_label,
    entry_set,
    fixture_text,
    generated_network,
    graph_counts,
    graph_snapshot,
    keys_of,
    network_of,
    toy_chain,
)

from alchemiscale_local import keyedchain
from alchemiscale_local.models import ScopedKey

TF_QUALNAMES = ("Transformation", "NonTransformation")


@pytest.mark.parametrize("name", NETWORK_FIXTURES)
def test_fixture_network_round_trips(store, name):
    text = fixture_text(name)
    chain = json.loads(text)
    kc = keyedchain.parse_chain(text)
    assert kc.root["__qualname__"] == "AlchemicalNetwork"

    sk, counts = store.assemble_network(text, SCOPE)
    assert str(sk) == f"{kc.root_key}-{SCOPE}"
    assert counts["objects"] == len(chain) == counts["created"]
    assert count_label(store.driver, "GufeTokenizable") == len(chain)

    fetched_text = store.get_keyed_chain_json(sk)
    fetched = json.loads(fetched_text)
    # Same entries, each dict byte-identical (key order included).
    assert entry_set(fetched) == entry_set(chain)
    assert len(fetched) == len(chain)
    assert fetched[-1][0] == kc.root_key
    assert_dependencies_first(fetched)
    # The fetched text is itself a valid chain whose keys all verify.
    report = keyedchain.verify_keys(keyedchain.parse_chain(fetched_text))
    assert report.ok and report.verified == report.total == len(chain)
    # Deterministic.
    assert store.get_keyed_chain_json(str(sk)) == fetched_text
    assert store.get_keyed_chain(sk) == fetched

    # Transformations and chemical systems are found.
    tfs = keys_of(chain, TF_QUALNAMES)
    systems = keys_of(chain, ("ChemicalSystem",))
    assert len(kc.root["edges"]) == len(tfs)
    assert store.get_network_transformations(str(sk)) == sorted(f"{k}-{SCOPE}" for k in tfs)
    assert store.get_network_chemicalsystems(str(sk)) == sorted(f"{k}-{SCOPE}" for k in systems)
    assert store.query_transformations(scope=SCOPE) == sorted(f"{k}-{SCOPE}" for k in tfs)
    assert store.query_chemicalsystems(scope=SCOPE) == sorted(f"{k}-{SCOPE}" for k in systems)
    assert store.query_networks(scope=SCOPE) == [str(sk)]
    assert store.query_networks(scope=OTHER_SCOPE) == []

    # Sub-chains of a transformation and of a chemical system.
    for key in (tfs[0], tfs[-1], systems[0]):
        sub = store.get_keyed_chain(f"{key}-{SCOPE}")
        assert entry_set(sub) == entry_set(kc.subchain(key))
        assert sub[-1][0] == key
        assert_dependencies_first(sub)

    # A transformation's systems and protocol, and the way back.
    tf_sk = f"{tfs[0]}-{SCOPE}"
    tf_doc = kc[tfs[0]]
    expected_systems = sorted(
        f"{ref}-{SCOPE}" for path, ref in kc.references(tfs[0]) if path[0] in ("stateA", "stateB", "system")
    )
    assert store.get_transformation_chemicalsystems(tf_sk) == expected_systems
    assert store.get_transformation_networks(tf_sk) == [str(sk)]
    assert tf_sk in store.get_chemicalsystem_transformations(expected_systems[0])
    assert store.get_chemicalsystem_networks(expected_systems[0]) == [str(sk)]
    proto_key = tf_doc["protocol"][":gufe-key:"]
    assert store.transformation_protocol(tf_sk) == (
        kc[proto_key]["__qualname__"],
        kc[proto_key]["__module__"],
    )


def test_resubmission_creates_nothing(store):
    text = fixture_text("rbfe-tyk2/rbfe-small.json")
    sk, first = store.assemble_network(text, SCOPE)
    store.set_network_weight([str(sk)], [0.9])
    before = graph_snapshot(store.driver)
    sk2, second = store.assemble_network(text, SCOPE)
    assert sk2 == sk
    assert second["created"] == 0 and second["relations"] == 0
    assert graph_snapshot(store.driver) == before
    # The hub keeps its weight (alchemiscale resets it to 0.5; we do not).
    assert store.get_network_weight([str(sk)]) == [0.9]
    assert count_label(store.driver, "TaskHub") == 1


def test_networks_share_transformation_nodes(store):
    small = json.loads(fixture_text("rbfe-tyk2/rbfe-small.json"))
    medium = json.loads(fixture_text("rbfe-tyk2/rbfe-medium.json"))
    small_sk, _ = store.assemble_network(small, SCOPE)
    medium_sk, counts = store.assemble_network(medium, SCOPE)
    union = {k for k, _ in small} | {k for k, _ in medium}
    assert count_label(store.driver, "GufeTokenizable") == len(union)
    assert counts["created"] == len({k for k, _ in medium} - {k for k, _ in small})
    shared = set(keys_of(small, TF_QUALNAMES)) & set(keys_of(medium, TF_QUALNAMES))
    assert shared, "small is meant to be inside medium"
    for key in sorted(shared)[:3]:
        sk = f"{key}-{SCOPE}"
        assert count_label(store.driver, "Transformation", _scoped_key=sk) == 1
        assert store.get_transformation_networks(sk) == sorted([str(small_sk), str(medium_sk)])
    # Both fetch back exactly.
    assert entry_set(store.get_keyed_chain(small_sk)) == entry_set(small)
    assert entry_set(store.get_keyed_chain(medium_sk)) == entry_set(medium)
    assert count_label(store.driver, "TaskHub") == 2


def test_network_of_helper_builds_a_valid_chain():
    """(Pure helper check, no store) network_of keeps shared keys and makes a valid chain."""
    chain = toy_chain(6, salt="d")
    tfs = keys_of(chain, TF_QUALNAMES)
    sub = network_of(chain, tfs[:3], "first")
    kc = keyedchain.parse_chain(sub)
    assert keyedchain.verify_keys(kc).ok
    assert set(keys_of(sub, TF_QUALNAMES)) == set(tfs[:3])


def test_same_network_in_two_scopes_is_duplicated(store):
    chain = toy_chain(4, salt="s")
    a, _ = store.assemble_network(chain, SCOPE)
    b, counts = store.assemble_network(chain, OTHER_SCOPE)
    assert a.gufe_key == b.gufe_key and a != b
    assert counts["created"] == len(chain)
    assert count_label(store.driver, "GufeTokenizable") == 2 * len(chain)
    tf = keys_of(chain, TF_QUALNAMES)[0]
    assert store.get_transformation_networks(f"{tf}-{SCOPE}") == [str(a)]
    assert store.get_transformation_networks(f"{tf}-{OTHER_SCOPE}") == [str(b)]
    assert store.query_networks(scope="org-camp-*") == sorted([str(a), str(b)])
    assert store.query_networks(scope="org-*-*") == sorted([str(a), str(b)])
    assert store.query_networks(scope="other-*-*") == []


def test_overlapping_toy_networks_share_nodes(store):
    chain = toy_chain(8, salt="o")
    tfs = keys_of(chain, TF_QUALNAMES)
    one = network_of(chain, tfs[:5], "one")
    two = network_of(chain, tfs[3:], "two")
    one_sk, _ = store.assemble_network(one, SCOPE)
    two_sk, _ = store.assemble_network(two, SCOPE)
    for key in tfs[3:5]:
        assert count_label(store.driver, "GufeTokenizable", _scoped_key=f"{key}-{SCOPE}") == 1
        assert store.get_transformation_networks(f"{key}-{SCOPE}") == sorted([str(one_sk), str(two_sk)])
    assert store.get_transformation_networks(f"{tfs[0]}-{SCOPE}") == [str(one_sk)]
    assert entry_set(store.get_keyed_chain(two_sk)) == entry_set(two)


def test_concurrent_overlapping_submissions(store):
    """Six networks over overlapping transformations submitted at once: each object once,
    each DEPENDS_ON once, every network fetches back exactly."""
    chain = toy_chain(200, salt="conc")
    tfs = keys_of(chain, TF_QUALNAMES)
    nets = [network_of(chain, tfs[i * 20 : i * 20 + 100], f"n{i}") for i in range(6)]
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(nets))

    def submit(i: int) -> None:
        try:
            barrier.wait()
            results[i] = store.assemble_network(nets[i], SCOPE)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(nets))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    entries = {k: d for net in nets for k, d in net}
    assert count_label(store.driver, "GufeTokenizable") == len(entries)
    assert sum(r[1]["created"] for r in results.values()) == len(entries)
    expected_rels = sum(len(keyedchain.references(d)) for d in entries.values())
    assert (
        store.driver.execute_query("MATCH ()-[r:DEPENDS_ON]->() RETURN count(r) AS n").records[0]["n"]
        == expected_rels
    )
    assert count_label(store.driver, "TaskHub") == len(nets)
    for i, net in enumerate(nets):
        assert entry_set(store.get_keyed_chain(results[i][0])) == entry_set(net)


def test_tampered_content_is_rejected_and_nothing_stored(store):
    chain = json.loads(fixture_text("gufe-generated_alchemical_network.json"))
    store.assemble_network(toy_chain(2, salt="keep"), SCOPE)
    before = graph_snapshot(store.driver)

    tampered = copy.deepcopy(chain)
    idx = next(i for i, (k, d) in enumerate(tampered) if d["__qualname__"] == "Transformation")
    tampered[idx][1]["name"] = tampered[idx][1]["name"] + "-tampered"
    with pytest.raises(InvalidInput, match="does not match"):
        store.assemble_network(tampered, SCOPE)
    assert graph_snapshot(store.driver) == before

    # A changed key (consistently renamed everywhere) does not verify either.
    old = tampered[idx][0] = chain[idx][0]
    tampered[idx][1] = copy.deepcopy(chain[idx][1])
    new = old[:-4] + ("0000" if not old.endswith("0000") else "1111")
    renamed = json.loads(json.dumps(tampered).replace(old, new))
    with pytest.raises(InvalidInput):
        store.assemble_network(renamed, SCOPE)
    assert graph_snapshot(store.driver) == before

    # The untouched document is accepted.
    store.assemble_network(chain, SCOPE)
    assert graph_counts(store.driver)[0] > before["nodes"]


def test_ligand_network_is_not_an_alchemical_network(store):
    text = fixture_text("openfe-benchmarks_jacs_set_tyk2_industry_benchmarks_network.json")
    kc = keyedchain.parse_chain(text)
    assert kc.root["__qualname__"] == "LigandNetwork"
    with pytest.raises(InvalidInput, match="not an AlchemicalNetwork"):
        store.assemble_network(text, SCOPE)
    assert graph_counts(store.driver) == (0, 0)


def test_network_state_and_weight(store):
    sk, _ = store.assemble_network(toy_chain(2, salt="w"), SCOPE, state="inactive")
    n = str(sk)
    assert store.get_network_state([n]) == ["inactive"]
    assert store.query_networks(scope=SCOPE) == []
    assert store.query_networks(scope=SCOPE, state=None) == [n]
    assert store.query_networks(scope=SCOPE, state="inactive", name="^toy$") == [n]
    assert store.query_networks(scope=SCOPE, state=None, name="^nomatch") == []
    missing = f"AlchemicalNetwork-{'0' * 32}-{SCOPE}"
    assert store.set_network_state([n, missing], ["active", "active"]) == [n, None]
    assert store.get_network_state([n, missing]) == ["active", None]
    assert store.get_network_weight([n]) == [0.5]
    store.set_network_weight([n], [0])
    assert store.get_network_weight([n, missing]) == [0.0, None]
    with pytest.raises(NotFound):
        store.set_network_weight([missing], [0.3])
    with pytest.raises(InvalidInput):
        store.set_network_weight([n], [1.5])
    assert store.get_network_weight([n]) == [0.0]
    # Re-submitting sets the state it is given.
    store.assemble_network(toy_chain(2, salt="w"), SCOPE, state="invalid")
    assert store.get_network_state([n]) == ["invalid"]
    assert (
        store.driver.execute_query(
            "MATCH (th:TaskHub {_scoped_key: $h})-[:PERFORMS]->(an) RETURN an._scoped_key AS n", h=hub_key(sk)
        ).records[0]["n"]
        == n
    )


def test_fetch_unknown_object_is_not_found(store):
    with pytest.raises(NotFound):
        store.get_keyed_chain_json(f"AlchemicalNetwork-{'a' * 32}-{SCOPE}")
    with pytest.raises(NotFound):
        store.get_network_transformations(f"AlchemicalNetwork-{'a' * 32}-{SCOPE}")
    with pytest.raises(NotFound):
        store.transformation_protocol(f"Transformation-{'a' * 32}-{SCOPE}")
    assert store.object_exists(f"Transformation-{'a' * 32}-{SCOPE}") is False


def test_generated_2000_transformation_network(store, capsys):
    text, n_tfs = generated_network(2000)
    assert n_tfs == 2000
    chain = json.loads(text)

    t0 = time.perf_counter()
    sk, counts = store.assemble_network(text, SCOPE)
    submit_s = time.perf_counter() - t0
    assert counts["created"] == len(chain)

    t0 = time.perf_counter()
    fetched_text = store.get_keyed_chain_json(sk)
    fetch_s = time.perf_counter() - t0

    fetched = json.loads(fetched_text)
    assert entry_set(fetched) == entry_set(chain)
    assert_dependencies_first(fetched)
    assert len(store.get_network_transformations(str(sk))) == 2000

    t0 = time.perf_counter()
    _, again = store.assemble_network(text, SCOPE)
    resubmit_s = time.perf_counter() - t0
    assert again["created"] == 0

    with capsys.disabled():
        print(
            f"\n[statestore] 2,000-transformation network ({len(chain)} entries, "
            f"{len(text) / 1e6:.1f} MB): submit {submit_s:.2f} s, fetch {fetch_s:.2f} s, "
            f"re-submit {resubmit_s:.2f} s"
        )


def test_scoped_key_of_network_is_parseable(store):
    sk, _ = store.assemble_network(toy_chain(1, salt="p"), SCOPE)
    assert ScopedKey.from_str(str(sk)) == sk
    assert sk.qualname == "AlchemicalNetwork"
