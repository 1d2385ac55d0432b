"""The toy network generator: real components, gufe's field layout and gufe's keys."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest
from pydantic import ValidationError

from alchemiscale_local.gufekeys import check_key
from alchemiscale_local.keyedchain import parse_chain, verify_keys
from alchemiscale_local.runtimes.toy import (
    MAX_TRANSFORMATIONS,
    ToyProtocol,
    ToySettings,
    build_toy_network,
    load_components,
)
from alchemiscale_local.runtimes.toy.network import _transformation_has_metadata
from tests.gufe_fixtures import fixture_path


def fixture_chain(name: str) -> list:
    path = fixture_path(name)
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


def by_class(chain: list) -> dict[str, list[tuple[str, dict]]]:
    out: dict[str, list[tuple[str, dict]]] = {}
    for k, d in chain:
        out.setdefault(d["__qualname__"], []).append((k, d))
    return out


@pytest.mark.parametrize("n", [1, 2, 7, 10, 126])
def test_network_is_a_valid_chain_with_every_key_verified(n: int) -> None:
    chain = build_toy_network(n)
    kc = parse_chain(chain)
    report = verify_keys(kc)
    assert report.verified == report.total == len(chain)  # none merely taken as given
    classes = by_class(chain)
    assert len(classes["Transformation"]) == n
    assert len(classes["LigandAtomMapping"]) == (n + 1) // 2
    assert len(classes["ProteinComponent"]) == len(classes["SolventComponent"]) == 1
    assert len(classes["ToyProtocol"]) == len(classes["AlchemicalNetwork"]) == 1
    assert kc.root["__qualname__"] == "AlchemicalNetwork"
    n_complex = sum(d["name"].endswith("_complex") for _, d in classes["Transformation"])
    assert n_complex == (n + 1) // 2  # the odd one out is a complex leg


def test_network_legs_and_lists_have_gufe_shape() -> None:
    chain = build_toy_network(9, name="shape check")
    kc = parse_chain(chain)
    root = kc.root
    assert root["name"] == "shape check"
    edges = [r[":gufe-key:"] for r in root["edges"]]
    nodes = [r[":gufe-key:"] for r in root["nodes"]]
    assert edges == sorted(edges) and nodes == sorted(nodes)
    assert set(edges) == set(kc.keys_of("Transformation"))
    states = {kc[t][s][":gufe-key:"] for t in edges for s in ("stateA", "stateB")}
    assert set(nodes) == states == set(kc.keys_of("ChemicalSystem"))
    protein = kc.keys_of("ProteinComponent")[0]
    for t in edges:
        tf = kc[t]
        a, b = kc[tf["stateA"][":gufe-key:"]], kc[tf["stateB"][":gufe-key:"]]
        leg = "complex" if a["name"].endswith("_complex") else "solvent"
        labels = ["ligand", "protein", "solvent"] if leg == "complex" else ["ligand", "solvent"]
        assert list(a["components"]) == list(b["components"]) == labels
        assert b["name"].endswith("_" + leg) and tf["name"] == f"toy_rbfe_{a['name']}_{b['name']}"
        if leg == "complex":
            assert a["components"]["protein"] == {":gufe-key:": protein}
        mapping = kc[tf["mapping"][":gufe-key:"]]
        assert mapping["componentA"] == a["components"]["ligand"]
        assert mapping["componentB"] == b["components"]["ligand"]
        assert mapping["componentA_to_componentB"] and "toy_mapping" in json.loads(mapping["annotations"])
        # gufe >= 1.12 (or no gufe) writes metadata {}; an installed gufe 1.10 refuses the field
        assert tf.get("metadata", {}) == {} and ("metadata" in tf) == _transformation_has_metadata()
        assert tf["protocol"] == {":gufe-key:": kc.keys_of("ToyProtocol")[0]}


def test_fields_and_modules_match_a_real_gufe_rbfe_network() -> None:
    real = by_class(fixture_chain("rbfe-tyk2/rbfe-small.json"))
    ours = by_class(build_toy_network(10))
    for qualname in (
        "AlchemicalNetwork",
        "Transformation",
        "ChemicalSystem",
        "LigandAtomMapping",
        "SmallMoleculeComponent",
        "ProteinComponent",
        "SolventComponent",
    ):
        mine, theirs = ours[qualname][0][1], real[qualname][0][1]
        expected = list(theirs)  # the fixture was written by gufe 1.12
        if not _transformation_has_metadata():  # the installed gufe (1.10) writes no metadata
            expected = [f for f in expected if f != "metadata"]
        assert list(mine) == expected, qualname  # same fields in the same order
        assert mine["__module__"] == theirs["__module__"], qualname
    # the protocol replaces DummyProtocol: same layout, a toy module
    assert list(ours["ToyProtocol"][0][1]) == list(real["DummyProtocol"][0][1])


def test_components_and_chemical_systems_have_the_keys_gufe_gave_them() -> None:
    real = by_class(fixture_chain("rbfe-tyk2/rbfe-large.json.gz"))
    ours = by_class(build_toy_network(MAX_TRANSFORMATIONS))
    for qualname in ("ProteinComponent", "SolventComponent"):
        assert ours[qualname][0][0] == real[qualname][0][0]
    real_smc = {k for k, _ in real["SmallMoleculeComponent"]}
    assert len(ours["SmallMoleculeComponent"]) == 64
    assert {k for k, _ in ours["SmallMoleculeComponent"]} <= real_smc
    # ChemicalSystems are built here; gufe made the same systems (same names) in the fixture
    real_cs = {d["name"]: k for k, d in real["ChemicalSystem"]}
    assert len(ours["ChemicalSystem"]) == 128
    for key, d in ours["ChemicalSystem"]:
        assert real_cs[d["name"]] == key, d["name"]


def test_components_file() -> None:
    protein, solvent, ligands = load_components()
    assert protein[1]["__qualname__"] == "ProteinComponent" and protein[1]["name"] == "tyk2"
    assert len(protein[1]["atoms"]) == 4670
    assert solvent[1]["smiles"] == "O" and solvent[1]["ion_concentration"] == "0.15 molar"
    names = [d["molprops"]["ofe-name"] for _, d in ligands]
    assert len(ligands) == len(set(names)) == 64 and "ejm_31" in names
    for key, d in [protein, solvent, *ligands]:
        assert check_key(key, d).status == "verified", key
    ligands[0][1]["molprops"]["ofe-name"] = "mutated"  # callers get their own copy
    assert load_components()[2][0][1]["molprops"]["ofe-name"] != "mutated"


def test_size_limits() -> None:
    chain = build_toy_network(MAX_TRANSFORMATIONS)
    assert len(by_class(chain)["Transformation"]) == MAX_TRANSFORMATIONS == 4032
    for bad in (0, -1, MAX_TRANSFORMATIONS + 1):
        with pytest.raises(ValueError, match="between 1 and 4032"):
            build_toy_network(bad)
    with pytest.raises(TypeError):
        build_toy_network(2.0)  # type: ignore[arg-type]


def test_first_pairs_connect_every_ligand() -> None:
    chain = build_toy_network(126)  # 63 pairs: a path through all 64 ligands
    kc = parse_chain(chain)
    links: dict[str, set[str]] = {}
    for key in kc.keys_of("LigandAtomMapping"):
        a, b = (kc[key][c][":gufe-key:"] for c in ("componentA", "componentB"))
        links.setdefault(a, set()).add(b)
        links.setdefault(b, set()).add(a)
    assert len(links) == 64
    seen, todo = set(), [next(iter(links))]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(links[n])
    assert len(seen) == 64


def test_two_thousand_transformations_build() -> None:
    chain = build_toy_network(2000)
    assert len(chain) == 1 + 1 + 64 + 1000 + 128 + 1 + 2000 + 1


def test_deterministic_and_seeded() -> None:
    assert build_toy_network(20) == build_toy_network(20)
    a, b = build_toy_network(20, seed=0), build_toy_network(20, seed=1)
    assert a[-1][0] != b[-1][0]
    assert {k for k, d in a if d["__qualname__"] == "Transformation"} != {
        k for k, d in b if d["__qualname__"] == "Transformation"
    }
    # the name is part of the network key only
    c = build_toy_network(20, name="other")
    assert c[-1][0] != a[-1][0] and [e[0] for e in c[:-1]] == [e[0] for e in a[:-1]]


def test_settings_shape_the_protocol() -> None:
    chain = build_toy_network(2, settings={"repeats": 3, "duration_s": 0.5, "fail_on": ["x"]})
    proto = by_class(chain)["ToyProtocol"][0][1]
    assert proto["__module__"] == "alchemiscale_local.runtimes.toy"
    assert proto["settings"] == {
        "__class__": "ToySettings",
        "__module__": "alchemiscale_local.runtimes.toy",
        ":is_custom:": True,
        "duration_s": 0.5,
        "repeats": 3,
        "fail_rate": 0.0,
        "fail_on": ["x"],
        "abort": False,
        "seed": 0,
    }
    assert ToyProtocol.from_keyed_dict(proto).settings == ToySettings(
        repeats=3, duration_s=0.5, fail_on=["x"]
    )
    same = build_toy_network(2, settings=ToySettings(repeats=3, duration_s=0.5, fail_on=["x"]))
    assert same == chain
    assert ToyProtocol().key != ToyProtocol({"seed": 1}).key
    assert "toy" in (ToyProtocol.__doc__ or "").lower() and ToyProtocol.__name__ == "ToyProtocol"
    for bad in ({"fail_rate": 1.5}, {"repeats": 0}, {"duration_s": -1}, {"nonsense": 1}):
        with pytest.raises(ValidationError):
            ToySettings(**bad)
    assert Counter(d["__qualname__"] for _, d in chain)["ToyProtocol"] == 1
