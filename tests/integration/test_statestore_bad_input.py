"""State store: bad input gives a typed error (InvalidInput / NotFound / InvalidTransition)
and leaves the graph exactly as it was."""

from __future__ import annotations

import copy

import pytest
from alchemiscale_local.backends.statestore import (
    InvalidInput,
    InvalidTransition,
    NotFound,
    StateStoreError,
)
from statestore_helpers import (
    SCOPE,
    fixture_text,
    graph_snapshot,
    keys_of,
    register,
    result_ref,
    toy_chain,
)

TF_QUALNAMES = ("Transformation", "NonTransformation")
BAD_SCOPES = [
    "..",
    "a/b",
    "a-b",
    "*-x-y",
    "a-*-c",
    "a-b-c-d",
    "",
    "1a-b-c",
    "a-b-c d",
    "a-b-c/../x",
    "a-b-c\n",
]
MISSING_TASK = f"Task-{'0' * 32}-{SCOPE}"
MISSING_NET = f"AlchemicalNetwork-{'0' * 32}-{SCOPE}"


@pytest.fixture
def populated(store):
    """A network with tasks in every interesting state, and a service holding a claim."""
    chain = toy_chain(3, salt="bad")
    sk, _ = store.assemble_network(chain, SCOPE)
    tfs = [f"{k}-{SCOPE}" for k in keys_of(chain, TF_QUALNAMES)]
    waiting, running, invalid = store.create_tasks(tfs)
    store.action_tasks([waiting, running], str(sk))
    store.set_task_priority([running], 1)
    svc = register(store)
    assert store.claim_tasks(svc, 1) == [running]
    store.set_task_status([invalid], "invalid")
    return {
        "store": store,
        "chain": chain,
        "network": str(sk),
        "tfs": tfs,
        "waiting": waiting,
        "running": running,
        "invalid": invalid,
        "svc": svc,
    }


@pytest.fixture
def unchanged(populated):
    """Yields the populated world; afterwards asserts the graph is exactly as before the test."""
    store = populated["store"]
    before = graph_snapshot(store.driver)
    yield populated
    assert graph_snapshot(store.driver) == before, "bad input changed the graph"


def _malformed_chains() -> dict:
    from alchemiscale_local import keyedchain

    good = toy_chain(3, salt="mal")
    kc = keyedchain.parse_chain(good)
    tf = kc.keys_of("Transformation")[0]
    cases: dict = {}
    cases["not json"] = '[["AlchemicalNetwork-abc", {'
    cases["empty list"] = []
    cases["object"] = {"nodes": [], "edges": []}
    cases["scalar"] = 42
    cases["entry not a pair"] = [["AlchemicalNetwork-abc"]]
    cases["dependencies last"] = good[::-1]
    cases["root not a network"] = [list(e) for e in kc.subchain(tf)]
    bad = copy.deepcopy(good)
    bad[-1][1]["edges"].append({":gufe-key:": "Transformation-" + "f" * 32})
    cases["dangling reference"] = bad
    bad = copy.deepcopy(good)
    bad.insert(1, copy.deepcopy(bad[0]))
    cases["duplicate key"] = bad
    bad = copy.deepcopy(good)
    bad[-1][1]["nodes"][0] = {":gufe-key:": 12}
    cases["malformed reference"] = bad
    bad = copy.deepcopy(good)
    bad[-1][1]["name"] = float("nan")
    cases["nan"] = bad
    bad = copy.deepcopy(good)
    bad[-1][1]["__qualname__"] = "Transformation"
    cases["qualname differs from key"] = bad
    bad = copy.deepcopy(good)
    bad[-1][0] = "AlchemicalNetwork-not/hex"
    cases["malformed key"] = bad
    bad = copy.deepcopy(good)
    bad.insert(
        0, ["SolventComponent-" + "e" * 32, {"__qualname__": "SolventComponent", "__module__": "gufe"}]
    )
    cases["unreachable entry"] = bad
    bad = copy.deepcopy(good)
    bad[-1][1]["nodes"][0] = copy.deepcopy(kc[kc.keys_of("ChemicalSystem")[0]])
    cases["nested object"] = bad
    bad = copy.deepcopy(good)
    bad[-1][1]["name"] = "tampered"
    cases["key does not match content"] = bad
    return cases


MALFORMED = _malformed_chains()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_chain_rejected(unchanged, case):
    with pytest.raises(InvalidInput):
        unchanged["store"].assemble_network(MALFORMED[case], SCOPE)


def test_nested_to_dict_document_rejected(unchanged):
    text = fixture_text("openfe_transformation.json")
    with pytest.raises(InvalidInput, match="keyed chain"):
        unchanged["store"].assemble_network(text, SCOPE)


@pytest.mark.parametrize("scope", BAD_SCOPES + ["*-*-*", "org-camp-*", None, 123])
def test_bad_scope_on_submit(unchanged, scope):
    with pytest.raises(InvalidInput):
        unchanged["store"].assemble_network(toy_chain(1, salt="bad"), scope)


@pytest.mark.parametrize("scope", BAD_SCOPES)
def test_bad_scope_on_queries_and_claims(unchanged, scope):
    store = unchanged["store"]
    calls = [
        lambda: store.query_networks(scope=scope),
        lambda: store.query_transformations(scope=scope),
        lambda: store.query_chemicalsystems(scope=scope),
        lambda: store.query_tasks(scope=scope),
        lambda: store.get_scope_status(scope),
        lambda: store.claim_tasks(unchanged["svc"], 1, scopes=[scope]),
        lambda: store.claim_tasks(unchanged["svc"], 1, scopes=["*-*-*", scope]),
        lambda: store.add_identity("someone", "user", scopes=[scope]),
    ]
    for call in calls:
        with pytest.raises(InvalidInput):
            call()


@pytest.mark.parametrize(
    "key",
    [
        "garbage",
        "Task-abc",
        "Task-abc-org-camp",
        "Task-abc-org-camp-proj-extra",
        "Task-abc-org-camp-pr oj",
        "Task-ab c-org-camp-proj",
        "Task-abc-*-camp-proj",
        "Task-abc'})DETACH DELETE n//-org-camp-proj",
        "Task-abc-org-camp-../x",
        "Task-abc-org-camp-proj\n",
        "Task-abc\n-org-camp-proj",
        "",
    ],
)
def test_malformed_task_keys(unchanged, key):
    store = unchanged["store"]
    for call in (
        lambda: store.get_task_status([key]),
        lambda: store.set_task_status([key], "waiting"),
        lambda: store.set_task_priority([key], 2),
        lambda: store.action_tasks([key], unchanged["network"]),
        lambda: store.cancel_tasks([key], unchanged["network"]),
        lambda: store.get_task_transformation(key),
        lambda: store.get_keyed_chain_json(key),
    ):
        with pytest.raises(InvalidInput):
            call()


def test_wrong_kind_of_key(unchanged):
    store = unchanged["store"]
    tf, network, task = unchanged["tfs"][0], unchanged["network"], unchanged["waiting"]
    with pytest.raises(InvalidInput):
        store.get_task_status([tf])
    with pytest.raises(InvalidInput):
        store.create_tasks([network])
    with pytest.raises(InvalidInput):
        store.create_tasks([task])
    with pytest.raises(InvalidInput):
        store.action_tasks([task], tf)
    with pytest.raises(InvalidInput):
        store.get_network_transformations(tf)
    with pytest.raises(InvalidInput):
        store.create_tasks([tf], extends=[tf])


def test_unknown_keys(unchanged):
    store = unchanged["store"]
    waiting = unchanged["waiting"]
    for call in (
        lambda: store.set_task_status([waiting, MISSING_TASK], "invalid"),
        lambda: store.create_tasks([f"Transformation-{'0' * 32}-{SCOPE}"]),
        lambda: store.create_tasks(unchanged["tfs"][:1], extends=[MISSING_TASK]),
        lambda: store.action_tasks([waiting], MISSING_NET),
        lambda: store.set_network_weight([MISSING_NET], [0.1]),
        lambda: store.get_keyed_chain_json(MISSING_NET),
        lambda: store.get_task_networks(MISSING_TASK),
        lambda: store.get_network_status([MISSING_NET]),
        lambda: store.get_transformation_status(f"Transformation-{'0' * 32}-{SCOPE}"),
        lambda: store.claim_tasks("unregistered-1", 1),
        lambda: store.deregister_computeservice("unregistered-1"),
        lambda: store.add_task_restart_patterns(MISSING_NET, ["x"], 1),
        lambda: store.set_task_result(
            MISSING_TASK, result_ref(MISSING_TASK, True), identifier=unchanged["svc"]
        ),
        lambda: store.remove_identity("nobody"),
    ):
        with pytest.raises(NotFound):
            call()
    # Lookups that answer per item say None instead.
    assert store.get_task_status([MISSING_TASK]) == [None]
    assert store.set_task_priority([MISSING_TASK], 3) == [None]
    assert store.action_tasks([MISSING_TASK], unchanged["network"]) == [None]
    assert store.get_network_weight([MISSING_NET]) == [None]


def test_wrong_transitions(unchanged):
    store = unchanged["store"]
    w, r, i = unchanged["waiting"], unchanged["running"], unchanged["invalid"]
    for tasks, target in (([i], "waiting"), ([w, i], "waiting"), ([i], "deleted"), ([w, r, i], "deleted")):
        with pytest.raises(InvalidTransition):
            store.set_task_status(tasks, target)
    for target in ("running", "complete", "error", "WAITING", "", None):
        with pytest.raises(InvalidInput):
            store.set_task_status([w], target)
    with pytest.raises(InvalidTransition):
        store.create_tasks(unchanged["tfs"][2:3], extends=[i])
    assert store.get_task_status([w, r, i]) == ["waiting", "running", "invalid"]


def test_bad_values(unchanged):
    store = unchanged["store"]
    w, network = unchanged["waiting"], unchanged["network"]
    calls = [
        lambda: store.set_task_priority([w], 0),
        lambda: store.set_task_priority([w], 2**64),
        lambda: store.set_task_priority([w], "1"),
        lambda: store.action_tasks([w], network, weight=-0.1),
        lambda: store.action_tasks([w], network, weight=float("nan")),
        lambda: store.action_tasks([w], network, weight=[0.5, 0.5]),
        lambda: store.set_network_weight([network], [float("inf")]),
        lambda: store.set_network_weight([network], [0.1, 0.2]),
        lambda: store.set_network_state([network], ["bogus"]),
        lambda: store.assemble_network(toy_chain(1, salt="bad"), SCOPE, state="bogus"),
        lambda: store.query_networks(state="bogus"),
        lambda: store.query_networks(name="("),
        lambda: store.query_networks(name="(?P<x>toy)"),  # Python syntax Neo4j's regex refuses
        lambda: store.query_transformations(name="["),
        lambda: store.query_chemicalsystems(name="(?<"),
        lambda: store.query_tasks(status="bogus"),
        lambda: store.get_network_tasks(network, status="bogus"),
        lambda: store.get_scope_status("*-*-*", network_state="bogus"),
        lambda: store.create_tasks(unchanged["tfs"][:2], extends=[None]),
        lambda: store.claim_tasks(unchanged["svc"], 0),
        lambda: store.expire_computeservices(-1),
        lambda: store.add_task_restart_patterns(network, "boom", 2),
        lambda: store.add_task_restart_patterns(network, ["("], 2),
    ]
    for n, call in enumerate(calls):
        with pytest.raises(InvalidInput):
            call()
            pytest.fail(f"call {n} did not raise")


def test_errors_are_typed(unchanged):
    """Every error above derives from StateStoreError, which the API maps to a status."""
    store = unchanged["store"]
    for call in (
        lambda: store.assemble_network("nope", SCOPE),
        lambda: store.get_task_status(["nope"]),
        lambda: store.set_task_status([MISSING_TASK], "waiting"),
        lambda: store.set_task_status([unchanged["invalid"]], "waiting"),
    ):
        with pytest.raises(StateStoreError):
            call()
