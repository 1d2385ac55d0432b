"""User API through the client: networks, transformations, chemical systems, restart patterns."""

from __future__ import annotations

import json
import uuid

import pytest
from api_helpers import (
    API_NETWORK_FIXTURES,
    GUFE_FIXTURES,
    entries,
    fixture_text,
    subchain,
    submit_toy,
    toy_network,
)

from alchemiscale_local.client import ConflictError, NotFoundError, ValidationError
from alchemiscale_local.models import Scope, ScopedKey
from tests.gufe_compat import require_gufe_that_loads

SCOPE = "org1-camp-proj"


@pytest.mark.parametrize("name", API_NETWORK_FIXTURES)
def test_fixture_network_round_trip(chain_client, name):
    text = fixture_text(name)
    chain = json.loads(text)
    net = chain_client.create_network(text, SCOPE, visualize=False)
    assert isinstance(net, ScopedKey)
    assert net.gufe_key == chain[-1][0] and str(net.scope) == SCOPE
    fetched = chain_client.get_network(net, visualize=False)
    assert entries(fetched) == entries(chain)

    # Submitting again is idempotent.
    assert chain_client.create_network(chain, SCOPE, visualize=False) == net

    tfs = chain_client.get_network_transformations(net)
    expected_tfs = {k for k, d in chain if d["__qualname__"] in ("Transformation", "NonTransformation")}
    assert {t.gufe_key for t in tfs} == expected_tfs
    css = chain_client.get_network_chemicalsystems(net)
    assert {c.gufe_key for c in css} == {k for k, d in chain if d["__qualname__"] == "ChemicalSystem"}

    # Every transformation comes back as its own sub-chain; so does one chemical system.
    tf = tfs[0]
    assert entries(chain_client.get_transformation(tf, visualize=False)) == entries(
        subchain(chain, tf.gufe_key)
    )
    cs = css[0]
    assert entries(chain_client.get_chemicalsystem(cs, visualize=False)) == entries(
        subchain(chain, cs.gufe_key)
    )
    assert net in chain_client.get_transformation_networks(tf)
    assert net in chain_client.get_chemicalsystem_networks(cs)
    tf_systems = chain_client.get_transformation_chemicalsystems(tf)
    assert 1 <= len(tf_systems) <= 2
    assert tf in chain_client.get_chemicalsystem_transformations(tf_systems[0])


@pytest.mark.parametrize("name", API_NETWORK_FIXTURES)
def test_fixture_network_loads_as_gufe_objects(user_client, name):
    """With gufe, the client rebuilds the stored documents as gufe objects with the same keys."""
    chain = json.loads(fixture_text(name))
    gufe = require_gufe_that_loads(chain, name)
    net = user_client.create_network(chain, SCOPE, visualize=False)
    network = user_client.get_network(net, visualize=False)
    assert isinstance(network, gufe.AlchemicalNetwork) and network.key == net.gufe_key
    tf = user_client.get_network_transformations(net)[0]
    assert user_client.get_transformation(tf, visualize=False).key == tf.gufe_key


def test_document_input_forms(user_client, tmp_path):
    chain = toy_network(2)
    path = tmp_path / "net.json"
    path.write_text(json.dumps(chain))
    a = user_client.create_network(chain, SCOPE, visualize=False)
    b = user_client.create_network(json.dumps(chain), SCOPE, visualize=False)
    c = user_client.create_network(path, SCOPE, visualize=False)
    d = user_client.create_network(str(path), Scope.from_str(SCOPE), visualize=False)
    assert a == b == c == d
    with pytest.raises(ValidationError):
        user_client.create_network(str(tmp_path / "missing.json"), SCOPE, visualize=False)
    with pytest.raises(ValidationError):
        user_client.create_network({"not": "a chain"}, SCOPE, visualize=False)


def test_gzip_and_uncompressed_submission(chain_client):
    chain = toy_network(4)
    gz = chain_client.create_network(chain, SCOPE, compress=True, visualize=False)
    plain = chain_client.create_network(chain, SCOPE, compress=False, visualize=False)
    assert gz == plain
    assert entries(chain_client.get_network(gz, visualize=False)) == entries(chain)


def test_same_stateA_stateB_is_refused_client_side(user_client):
    chain = toy_network(1)
    tf = next(d for _, d in chain if d["__qualname__"] == "Transformation")
    tf["stateB"] = tf["stateA"]
    with pytest.raises(ValidationError, match="same stateA and stateB"):
        user_client.create_network(chain, SCOPE, visualize=False)


def test_bad_documents_are_4xx(user_client):
    chain = toy_network(1)
    chain[-1][1]["edges"].append({":gufe-key:": "Transformation-" + "0" * 32})  # dangling
    with pytest.raises(ValidationError) as info:
        user_client.create_network(chain, SCOPE, visualize=False)
    assert info.value.status == 400 and info.value.detail
    with pytest.raises(ValidationError):  # the root is not a network
        user_client.create_network(toy_network(1)[:-1], SCOPE, visualize=False)
    with pytest.raises(ValidationError):
        user_client.create_network(toy_network(1), "org1-*-*", visualize=False)
    with pytest.raises(ValidationError):
        user_client.create_network(toy_network(1), "not a scope", visualize=False)
    with pytest.raises(ValidationError):
        user_client.create_network(toy_network(1), SCOPE, state="bogus", visualize=False)


def test_query_networks_state_and_weights(user_client):
    tag = "qn" + uuid.uuid4().hex[:8]
    a, _, _ = submit_toy(user_client, "org1-camp-query", name=f"{tag}_alpha")
    b, _, _ = submit_toy(user_client, "org1-camp-query", name=f"{tag}_beta")
    c = user_client.create_network(
        toy_network(2, name=f"{tag}_gamma"), "org2-camp-query", state="inactive", visualize=False
    )
    assert set(user_client.query_networks(scope="org1-camp-query")) == {a, b}
    assert user_client.query_networks(name=f"{tag}_al.*") == [a]
    assert user_client.query_networks(name=f"{tag}_.*", scope="org2-*-*") == []
    assert user_client.query_networks(name=f"{tag}_.*", scope="org2-*-*", state="inactive") == [c]
    assert set(user_client.query_networks(name=f"{tag}_.*", state=None)) == {a, b, c}

    assert user_client.get_network_state(a) == "active"
    assert user_client.set_network_state(a, "inactive") == a
    assert user_client.get_networks_state([a, b, c]) == ["inactive", "active", "inactive"]
    missing = ScopedKey.from_str(f"AlchemicalNetwork-{'0' * 32}-org1-camp-query")
    assert user_client.set_networks_state([a, missing], ["active", "active"]) == [a, None]
    assert user_client.get_networks_state([missing, a]) == [None, "active"]
    with pytest.raises(ValidationError):
        user_client.set_network_state(a, "bogus")

    assert user_client.get_network_weight(a) == 0.5
    user_client.set_network_weight(a, 0.9)
    assert user_client.get_network_weight(a) == pytest.approx(0.9)
    user_client.set_networks_weight([a, b], [0.1, 0.2])
    assert user_client.get_networks_weight([a, b, missing]) == [pytest.approx(0.1), pytest.approx(0.2), None]
    with pytest.raises(ValidationError):
        user_client.set_network_weight(a, 1.5)
    with pytest.raises(NotFoundError):
        user_client.set_network_weight(missing, 0.3)


def test_query_transformations_and_chemicalsystems(user_client):
    net, chain, tfs = submit_toy(user_client, "org1-camp-qtf", n=3)
    assert set(user_client.query_transformations(scope="org1-camp-qtf")) == set(tfs)
    name = next(d["name"] for _, d in chain if d["__qualname__"] == "Transformation")
    found = user_client.query_transformations(name=name, scope="org1-camp-qtf")
    assert len(found) == 1 and found[0] in tfs
    css = user_client.query_chemicalsystems(scope="org1-camp-qtf")
    assert set(css) == set(user_client.get_network_chemicalsystems(net))
    assert len(css) == 4


def test_check_exists_and_unknown_keys(user_client):
    net, _, tfs = submit_toy(user_client, SCOPE)
    assert user_client.check_exists(net) is True
    assert user_client.check_exists(str(tfs[0])) is True
    unknown = f"AlchemicalNetwork-{'f' * 32}-{SCOPE}"
    assert user_client.check_exists(unknown) is False
    for call in (user_client.get_network, user_client.get_transformation, user_client.get_chemicalsystem):
        with pytest.raises(NotFoundError) as info:
            call(unknown.replace("AlchemicalNetwork", "Transformation"), visualize=False)
        assert info.value.status == 404 and "no object" in str(info.value)
    with pytest.raises(NotFoundError):
        user_client.get_network_transformations(unknown)
    with pytest.raises(ValidationError):
        user_client.get_network("not-a-key", visualize=False)
    with pytest.raises(ValidationError):  # a transformation key where a network key is needed
        user_client.get_network_transformations(tfs[0])


def test_restart_patterns(user_client):
    net, _, _ = submit_toy(user_client, SCOPE)
    assert user_client.get_task_restart_patterns(net) == {}
    user_client.add_task_restart_patterns(net, ["Timeout.*", "CUDA error"], 3)
    assert user_client.get_task_restart_patterns(net) == {"Timeout.*": 3, "CUDA error": 3}
    user_client.set_task_restart_patterns_allowed_restarts(net, ["CUDA error"], 7)
    assert user_client.get_task_restart_patterns(net) == {"Timeout.*": 3, "CUDA error": 7}
    user_client.remove_task_restart_patterns(net, ["Timeout.*"])
    assert user_client.get_task_restart_patterns(net) == {"CUDA error": 7}
    user_client.clear_task_restart_patterns(net)
    assert user_client.get_task_restart_patterns(net) == {}
    with pytest.raises(ValidationError):
        user_client.add_task_restart_patterns(net, ["("], 1)  # not a regex
    with pytest.raises(ValidationError):
        user_client.add_task_restart_patterns(net, ["ok"], 0)
    missing = f"AlchemicalNetwork-{'0' * 32}-{SCOPE}"
    with pytest.raises(NotFoundError):
        user_client.add_task_restart_patterns(missing, ["x"], 1)


def test_scope_visibility(user_client, limited_client):
    mine, _, _ = submit_toy(limited_client, "org1-vis-proj")
    theirs, _, _ = submit_toy(user_client, "org2-vis-proj")
    assert mine in limited_client.query_networks()
    assert theirs not in limited_client.query_networks()
    assert limited_client.query_networks(scope="org2-*-*") == []
    assert {mine, theirs} <= set(user_client.query_networks())
    assert [str(s) for s in limited_client.get_scopes()] == ["org1-*-*"]


def test_get_scopes_and_info(user_client):
    assert [str(s) for s in user_client.get_scopes()] == ["*-*-*"]
    assert user_client.list_scopes() == user_client.get_scopes()
    info = user_client.get_info()
    assert info["version"] and "jwt_secret" not in json.dumps(info).replace('"jwt_secret": "********"', "")
    assert user_client.check() == {"statestore": "ok", "objectstore": "ok"}
    assert user_client.ping()["api"] == "alchemiscale-local"


def test_fixtures_directory_exists():
    assert GUFE_FIXTURES.is_dir()


def test_conflicting_resubmission_keeps_one_network(user_client):
    chain = toy_network(2)
    a = user_client.create_network(chain, SCOPE, visualize=False)
    b = user_client.create_network(chain, SCOPE, state="inactive", visualize=False)
    assert a == b
    assert user_client.get_network_state(a) == "inactive"
    with pytest.raises((ConflictError, ValidationError, NotFoundError)):
        user_client.set_network_weight(f"AlchemicalNetwork-{'1' * 32}-{SCOPE}", 0.5)
