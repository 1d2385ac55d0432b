"""Keyed-chain validation and gufe key recomputation, on real gufe documents and on broken ones."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from alchemiscale_local import gufekeys
from alchemiscale_local.keyedchain import (
    BadReferenceError,
    ChainLimits,
    DanglingReferenceError,
    DuplicateKeyError,
    ForwardReferenceError,
    InvalidKeyError,
    InvalidValueError,
    KeyedChain,
    KeyedChainError,
    KeyMismatchError,
    MalformedEntryError,
    NestedDocumentError,
    NonFiniteNumberError,
    NotAKeyedChainError,
    RootError,
    TooDeepError,
    TooLargeError,
    TooManyEntriesError,
    compute_key,
    make_key,
    parse_chain,
    random_key,
    references,
    verify_keys,
)
from tests.gufe_fixtures import GUFE_FIXTURES as FIXTURES
from tests.gufe_fixtures import require_dir


@pytest.fixture
def _gufe_fixtures_dir() -> Path:
    return require_dir()  # skips, or fails under CI, when the fixtures are absent


needs_fixtures = pytest.mark.usefixtures("_gufe_fixtures_dir")


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _fixture(name: str) -> bytes:
    require_dir()
    return _read(FIXTURES / name)


# ---------------------------------------------------------------------- what each fixture is
# file -> ("chain", entries, verified, random _key entries) or the error parse_chain must raise
CHAINS = {
    "gufe-generated_alchemical_network.json": (12, 12, 0),
    "gufe-generated_protocol_dag.json": (10, 5, 5),
    "gufe-generated_protocol_dag_result.json": (15, 5, 10),
    "gufe-generated_protocol_dag_result_failed.json": (53, 5, 48),
    "gufe-generated_protocol_result.json": (1, 1, 0),
    "gufe_alchemical_archive.json": (50, 50, 0),
    "openfe-benchmarks_jacs_set_tyk2_industry_benchmarks_network.json": (1, 1, 0),
    "openfe_ABFEProtocol_json_results.json.gz": (25, 7, 18),
    "rbfe-tyk2/rbfe-small.json": (34, 34, 0),
    "rbfe-tyk2/rbfe-medium.json": (454, 454, 0),
    "rbfe-tyk2/rbfe-large.json.gz": (4504, 4504, 0),
    "rbfe-tyk2/results/Transformation-7e8c0575573965e4f915d42416d94aca.json": (18, 8, 10),
    "rbfe-tyk2/results/Transformation-da2a6904f928d3e6e27d9059ffa03125.json": (17, 7, 10),
}
NOT_CHAINS = {
    "openfe_transformation.json": NestedDocumentError,  # nested to_dict Transformation
    "openfe_RHFEProtocol_json_results.gz": NotAKeyedChainError,  # openfe quickrun output
    "openfe_AHFEProtocol_json_results.gz": NotAKeyedChainError,
    "openfe_MDProtocol_json_results.gz": NotAKeyedChainError,
    "ExampleNotebooks_benzene_results.json": NotAKeyedChainError,
    "gufe-generated_summary.json": NotAKeyedChainError,
    "rbfe-tyk2/manifest.json": NotAKeyedChainError,
}


def _all_fixture_files() -> list[str]:
    if not FIXTURES.is_dir():
        return []
    return sorted(
        str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file() and p.suffix != ".md"
    )


@needs_fixtures
def test_fixture_inventory_is_classified():
    assert set(_all_fixture_files()) >= set(CHAINS) | set(NOT_CHAINS)


@needs_fixtures
@pytest.mark.parametrize("name", _all_fixture_files() or ["<none>"])
def test_every_fixture_file(name):
    raw = _fixture(name)
    if name in NOT_CHAINS:
        with pytest.raises(NOT_CHAINS[name]) as err:
            parse_chain(raw)
        assert "keyed chain" in str(err.value)
        return
    chain = parse_chain(raw)
    report = verify_keys(chain)  # strict: raises on any checkable mismatch
    assert report.ok and report.total == len(chain)
    assert report.verified + report.unverifiable == report.total
    if name in CHAINS:
        n, verified, random_keys = CHAINS[name]
        assert (len(chain), report.verified, report.unverifiable) == (n, verified, random_keys)
        assert report.reasons == ({"random-key": random_keys} if random_keys else {})
        for issue in report.issues:  # every random key equals the entry's own "_key"
            assert chain[issue.key]["_key"] == issue.key
    # byte-identical round trip (the archive file only adds a trailing newline)
    assert chain.to_json() == raw.decode().rstrip("\n")
    assert parse_chain(chain.to_list()).to_json() == chain.to_json()


@needs_fixtures
def test_generated_root_keys_match_summary():
    summary = json.loads(_fixture("gufe-generated_summary.json"))
    for name, root in summary["objects"].items():
        chain = parse_chain(_fixture(name))
        assert chain.root_key == root
        assert chain.root["__qualname__"] == root.split("-")[0]
    network = parse_chain(_fixture("gufe-generated_alchemical_network.json"))
    assert summary["hydration_transformation_key"] in network


@needs_fixtures
def test_large_network_verifies_and_is_nested_in_smaller_ones():
    # its speed is measured by `python -m bench.keyed_chain`
    raw = _fixture("rbfe-tyk2/rbfe-large.json.gz")
    large = parse_chain(raw)
    report = verify_keys(large)
    assert report.verified == 4504
    assert len(large.keys_of("Transformation")) == 2000
    medium = parse_chain(_fixture("rbfe-tyk2/rbfe-medium.json"))
    assert set(medium.keys_of("Transformation")) <= set(large.keys())


@needs_fixtures
def test_result_chains_share_inputs_with_the_network():
    medium = parse_chain(_fixture("rbfe-tyk2/rbfe-medium.json"))
    for path in sorted((FIXTURES / "rbfe-tyk2" / "results").glob("*.json")):
        pdr = parse_chain(_read(path))
        assert pdr.root["__qualname__"] == "ProtocolDAGResult"
        tf_key = pdr.root["transformation_key"]
        assert tf_key == path.stem and tf_key in medium
        tf_deps = {k for k, _ in medium.subchain(tf_key)}
        shared = [
            k
            for k, d in pdr
            if d["__qualname__"]
            in ("ChemicalSystem", "SmallMoleculeComponent", "LigandAtomMapping", "SolventComponent")
        ]
        assert shared and set(shared) <= tf_deps


@needs_fixtures
def test_references_subchain_and_dependencies():
    chain = parse_chain(_fixture("rbfe-tyk2/rbfe-small.json"))
    root = chain.root
    refs = chain.references(chain.root_key)
    assert [p for p, _ in refs if p[0] == "edges"] == [("edges", i) for i in range(len(root["edges"]))]
    assert [k for p, k in refs if p[0] == "nodes"] == [r[":gufe-key:"] for r in root["nodes"]]
    assert references(root) == refs

    tf = chain.keys_of("Transformation")[0]
    tf_dict = chain[tf]
    paths = dict(chain.references(tf))
    assert paths[("stateA",)] == tf_dict["stateA"][":gufe-key:"]
    assert paths[("mapping",)] == tf_dict["mapping"][":gufe-key:"]
    cs = tf_dict["stateA"][":gufe-key:"]
    assert {p for p, _ in chain.references(cs)} == {("components", lbl) for lbl in chain[cs]["components"]}

    sub = chain.subchain(tf)
    keys = [k for k, _ in sub]
    assert keys[-1] == tf and set(chain.dependencies(tf)) <= set(keys)
    assert keys == sorted(keys, key=chain.index)  # chain order
    subchain = parse_chain(sub)  # a valid chain of its own (all entries reachable, deps first)
    assert subchain.root_key == tf and verify_keys(subchain).verified == len(sub)
    assert len(keys) < len(chain)
    assert chain.subchain(chain.root_key) == chain.entries


@needs_fixtures
def test_reference_paths_in_nested_lists_and_unit_inputs():
    archive = parse_chain(_fixture("gufe_alchemical_archive.json"))
    results = archive.root["transformation_results"]
    expected = [(("network",), archive.root["network"][":gufe-key:"])]
    for i, (tf, pdrs) in enumerate(results):
        expected.append((("transformation_results", i, 0), tf[":gufe-key:"]))
        expected += [(("transformation_results", i, 1, j), r[":gufe-key:"]) for j, r in enumerate(pdrs)]
    assert archive.references(archive.root_key) == expected

    dag = parse_chain(_fixture("gufe-generated_protocol_dag.json"))
    (finish,) = dag.keys_of("FinishUnit")
    sims = dag[finish]["inputs"]["simulations"]
    assert [(p, k) for p, k in dag.references(finish) if p[:2] == ("inputs", "simulations")] == [
        (("inputs", "simulations", i), s[":gufe-key:"]) for i, s in enumerate(sims)
    ]
    assert set(dag.dependencies(finish)) == {s[":gufe-key:"] for s in sims}


# ------------------------------------------------------------ worked example (§1.4 of gufe-format)
SOLVENT = "SolventComponent-26b4034ad9dbd9f908dfc298ea8d449f"
WATER = "ChemicalSystem-2fb5b7622b36b03cf3c1bd7b6b26411e"
EXAMPLE = (
    f'[["{SOLVENT}", {{"smiles": "O", "positive_ion": "Na+", "negative_ion": "Cl-", "ion_concentration": '
    '"0.15 molar", "neutralize": true, "__qualname__": "SolventComponent", "__module__": '
    '"gufe.components.solventcomponent", ":version:": 1}], '
    f'["{WATER}", {{"components": {{"solvent": {{":gufe-key:": "{SOLVENT}"}}}}, "name": "water", '
    '"__qualname__": "ChemicalSystem", "__module__": "gufe.chemicalsystem", ":version:": 1}]]'
)


def _example() -> list:
    return json.loads(EXAMPLE)


def test_worked_example_keys():
    chain = parse_chain(EXAMPLE)
    assert chain.keys() == [SOLVENT, WATER] and chain.root_key == WATER
    assert chain.to_json() == EXAMPLE
    assert verify_keys(chain).verified == 2
    solvent, water = chain[SOLVENT], chain[WATER]
    assert make_key(solvent, "SolventComponent") == SOLVENT == compute_key(solvent)
    assert make_key(water) == WATER
    # the exact hash inputs printed in §1.4: defaults and :version: stripped, ion_concentration kept
    assert json.dumps(
        gufekeys._hash_input(solvent, gufekeys.GUFE_DEFAULTS["SolventComponent"], False), sort_keys=True
    ) == (
        '{"__module__": "gufe.components.solventcomponent", "__qualname__": "SolventComponent", '
        '"ion_concentration": "0.15 molar"}'
    )
    assert chain.references(WATER) == [(("components", "solvent"), SOLVENT)]


def test_defaults_table_semantics():
    solvent = _example()[0][1]
    k_solvent = make_key(solvent)
    assert make_key({**solvent, ":version:": 7}) == k_solvent  # :version: never hashed
    assert make_key({**solvent, "positive_ion": "K+"}) != k_solvent  # non-default kept
    no_ion = {k: v for k, v in solvent.items() if k != "ion_concentration"}
    assert make_key(no_ion) != k_solvent  # ion_concentration is never stripped
    # the same fields on a non-gufe class are hashed with {} defaults
    assert make_key({**solvent, "__module__": "mypkg.solvent"}) != make_key(
        {"ion_concentration": "0.15 molar", "__qualname__": "SolventComponent", "__module__": "mypkg.solvent"}
    )

    tf = {
        "stateA": {":gufe-key:": WATER},
        "stateB": {":gufe-key:": WATER},
        "protocol": {":gufe-key:": "DummyProtocol-0"},
        "mapping": None,
        "name": None,
        "metadata": {},
        "__qualname__": "Transformation",
        "__module__": "gufe.transformations.transformation",
        ":version:": 1,
    }
    bare = {k: v for k, v in tf.items() if k not in ("mapping", "name", "metadata")}
    assert make_key({**tf, "metadata": None}) == make_key(bare)  # None defaults stripped
    assert make_key(tf) != make_key(bare)  # metadata {} != default None: stays in the hash
    hashed = {k: v for k, v in tf.items() if k not in (":version:", "mapping", "name")}
    assert (
        make_key(tf)
        == "Transformation-" + hashlib.md5(json.dumps(hashed, sort_keys=True).encode()).hexdigest()
    )


def test_ligand_atom_mapping_int_keys():
    mapping = {str(i): i + 1 for i in range(12)}
    lam = {
        "componentA": {":gufe-key:": "SmallMoleculeComponent-a"},
        "componentB": {":gufe-key:": "SmallMoleculeComponent-b"},
        "componentA_to_componentB": mapping,
        "annotations": "{}",
        "__qualname__": "LigandAtomMapping",
        "__module__": "gufe.mapping.ligandatommapping",
        ":version:": 1,
    }
    hashed = {k: v for k, v in lam.items() if k != ":version:"}
    as_int = hashlib.md5(
        json.dumps(
            {**hashed, "componentA_to_componentB": {int(k): v for k, v in mapping.items()}}, sort_keys=True
        ).encode()
    ).hexdigest()
    as_str = hashlib.md5(json.dumps(hashed, sort_keys=True).encode()).hexdigest()
    assert as_int != as_str  # "10" < "2" as strings: the naive hash is wrong
    assert make_key(lam) == f"LigandAtomMapping-{as_int}"


@needs_fixtures
def test_real_mappings_need_the_int_key_fix():
    chain = parse_chain(_fixture("gufe-generated_alchemical_network.json"))
    (lam_key,) = chain.keys_of("LigandAtomMapping")
    lam = chain[lam_key]
    assert max(int(k) for k in lam["componentA_to_componentB"]) >= 10
    naive = {k: v for k, v in lam.items() if k != ":version:"}
    assert (
        "LigandAtomMapping-" + hashlib.md5(json.dumps(naive, sort_keys=True).encode()).hexdigest() != lam_key
    )
    assert compute_key(lam) == lam_key


# ----------------------------------------------------------------------------- key mismatches
def _rename(chain: list, old: str, new: str) -> list:
    return json.loads(json.dumps(chain).replace(old, new))


def test_tampered_key_is_rejected_naming_the_entry():
    bad = SOLVENT[:-1] + ("0" if SOLVENT[-1] != "0" else "1")
    tampered = _rename(_example(), SOLVENT, bad)  # references renamed too: structure stays valid
    chain = parse_chain(tampered)
    with pytest.raises(KeyMismatchError) as err:
        verify_keys(chain)
    assert err.value.index == 0 and err.value.key == bad and err.value.computed == SOLVENT
    assert "entry 0" in str(err.value) and bad in str(err.value)
    report = verify_keys(chain, strict=False)
    # the system that references the renamed solvent no longer hashes to its key either
    assert [m.key for m in report.mismatches] == [bad, WATER] and not report.ok


def test_tampered_content_is_rejected():
    doc = _example()
    doc[1][1]["name"] = "ethanol"
    with pytest.raises(KeyMismatchError) as err:
        verify_keys(parse_chain(doc))
    assert err.value.index == 1 and err.value.key == WATER


def test_random_keys():
    unit_key = random_key("SimulationUnit")
    assert unit_key.startswith("SimulationUnit-") and len(unit_key.split("-")[1]) == 32
    unit = {
        "inputs": {"state": {":gufe-key:": WATER}},
        "name": "sim",
        "_key": unit_key,
        "__qualname__": "SimulationUnit",
        "__module__": "gufe.tests.test_protocol",
        ":version:": 1,
    }
    doc = _example() + [[unit_key, unit]]
    report = verify_keys(parse_chain(doc))
    assert (report.verified, report.unverifiable, report.reasons) == (2, 1, {"random-key": 1})
    assert make_key(unit) == unit_key == compute_key(unit)
    other = random_key("SimulationUnit")
    with pytest.raises(KeyMismatchError, match="entry 2"):
        verify_keys(parse_chain(doc[:2] + [[other, unit]]))
    # a gufe random-key class without "_key" (no such document is known) cannot be checked
    old = {"name": "r", "__qualname__": "ProtocolUnitResult", "__module__": "gufe.protocols.protocolunit"}
    assert verify_keys([["ProtocolUnitResult-" + "a" * 32, old]]).reasons == {
        "random-key-class-without-_key": 1
    }
    # a content-hashed gufe class cannot dodge the check with a "_key" field
    doc = _example()
    doc[1][1]["_key"] = WATER
    with pytest.raises(KeyMismatchError):
        verify_keys(parse_chain(doc))


def _result_doc(qualname: str, module: str, data: dict, key: str | None = None) -> list:
    d = {
        "n_protocol_dag_results": 1,
        "data": data,
        "__qualname__": qualname,
        "__module__": module,
        ":version:": 1,
    }
    return [[key or make_key(d), d]]


def test_third_party_and_int_keyed_documents():
    # outside gufe: a mismatch cannot be told from an overridden _defaults(): taken as given
    doc = _result_doc("FooResult", "foo.protocols", {"x": 1})
    assert verify_keys(doc).verified == 1
    wrong = _result_doc("FooResult", "foo.protocols", {"x": 1}, key="FooResult-" + "0" * 32)
    report = verify_keys(wrong)
    assert (report.verified, report.reasons) == (0, {"unknown-class-defaults": 1})
    assert report.issues[0].computed == doc[0][0]
    # int repeat ids: hashed by Python with int keys -> found on the second reading
    data = {"2": [1.0], "10": [2.0]}
    int_hash = hashlib.md5(
        json.dumps(
            {
                "n_protocol_dag_results": 1,
                "data": {2: [1.0], 10: [2.0]},
                "__qualname__": "FooResult",
                "__module__": "foo.protocols",
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    assert verify_keys(_result_doc("FooResult", "foo.protocols", data, f"FooResult-{int_hash}")).verified == 1
    # a gufe class whose key cannot be reproduced either way, but with int-like keys: taken as given
    bad = _result_doc(
        "DummyProtocolResult", "gufe.tests.test_protocol", data, "DummyProtocolResult-" + "1" * 32
    )
    assert verify_keys(bad).reasons == {"int-like-dict-keys": 1}
    # ...without int-like keys it is an error
    bad = _result_doc(
        "DummyProtocolResult", "gufe.tests.test_protocol", {"a": 1}, "DummyProtocolResult-" + "1" * 32
    )
    with pytest.raises(KeyMismatchError):
        verify_keys(bad)


def test_make_key_needs_the_class_markers():
    with pytest.raises(ValueError, match="__qualname__"):
        make_key({"smiles": "O"}, "SolventComponent")
    with pytest.raises(ValueError, match="differs"):
        make_key(_example()[0][1], "ChemicalSystem")


# ----------------------------------------------------------------------------- structural errors
def _raises(exc: type[KeyedChainError], data, index=None, key=None, **kw) -> KeyedChainError:
    with pytest.raises(exc) as err:
        parse_chain(data, **kw)
    assert isinstance(err.value, ValueError)
    if index is not None:
        assert err.value.index == index and f"entry {index}" in str(err.value)
    if key is not None:
        assert err.value.key == key and key in str(err.value)
    return err.value


def test_forward_self_and_dangling_references():
    doc = _example()
    _raises(ForwardReferenceError, [doc[1], doc[0]], index=0, key=WATER)
    doc = _example()
    doc[1][1]["components"]["me"] = {":gufe-key:": WATER}
    err = _raises(ForwardReferenceError, doc, index=1, key=WATER)
    assert err.path == ("components", "me") and "itself" in str(err)
    doc = _example()
    doc[1][1]["components"]["solvent"] = {":gufe-key:": "SolventComponent-" + "f" * 32}
    _raises(DanglingReferenceError, doc, index=1, key=WATER)
    doc = _example()
    doc[1][1]["components"]["solvent"][":extra"] = 1
    _raises(BadReferenceError, doc, index=1, key=WATER)


def test_root_must_be_last():
    doc = _example()
    methanol = dict(doc[0][1], smiles="CO")
    _raises(RootError, doc + [[make_key(methanol), methanol]], index=0, key=SOLVENT)
    # a leaf moved after the root is a forward reference or an orphan
    _raises(RootError, [doc[1][:1] + [dict(doc[1][1], components={})], doc[0]], index=0)


def test_keys_and_qualnames():
    doc = _example()
    doc[0][1]["__qualname__"] = "Solvent"
    _raises(InvalidKeyError, doc, index=0, key=SOLVENT)
    for bad in (
        "Solvent-Component-abc",
        "SolventComponent",
        "SolventComponent-",
        "-abc",
        "Solvent Component-ab",
    ):
        _raises(InvalidKeyError, _rename(_example(), SOLVENT, bad), index=0)
    doc = _example()
    doc[0][1]["__module__"] = 3
    _raises(MalformedEntryError, doc, index=0, key=SOLVENT)
    doc = _example()
    doc[0] = [SOLVENT, doc[0][1], "extra"]
    _raises(MalformedEntryError, doc, index=0)
    _raises(MalformedEntryError, [_example()[0], ["x"]], index=1)
    _raises(MalformedEntryError, [[SOLVENT, "not a dict"]], index=0)
    assert parse_chain([tuple(p) for p in _example()]).root_key == WATER  # tuple pairs are fine


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", (1, 2), {3: "int key"}], ids=repr)
def test_non_json_values(value):
    doc = _example()
    doc[1][1]["extra"] = [value]
    err = _raises(InvalidValueError, doc, index=1, key=WATER)
    assert err.path[:2] == ("extra", 0)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_text(text):
    doc = EXAMPLE.replace('"name": "water"', f'"name": "water", "x": [{text}]')
    err = _raises(NonFiniteNumberError, doc, index=1, key=WATER)
    assert err.path == ("x", 0)


def test_non_string_field_name():
    doc = _example()
    doc[0][1][5] = "x"
    _raises(InvalidValueError, doc, index=0, key=SOLVENT)


def test_non_finite_numbers_in_lists():
    doc = _example()
    doc[0][1]["x"] = float("nan")
    _raises(NonFiniteNumberError, doc, index=0, key=SOLVENT)


def test_repeated_member_name_in_text():
    doc = EXAMPLE.replace('"name": "water"', '"name": "water", "name": "ethanol"')
    err = _raises(InvalidValueError, doc, index=1, key=WATER)
    assert "name" in str(err)


def test_depth_limit():
    deep: list = []
    inner = deep
    for _ in range(80):
        inner.append([])
        inner = inner[0]
    doc = _example()
    doc[1][1]["deep"] = deep
    _raises(TooDeepError, doc, index=1, key=WATER)
    assert parse_chain(doc, limits=ChainLimits(max_depth=100)).root_key == WATER
    _raises(TooDeepError, "[" * 200_000 + "]" * 200_000)


def test_size_and_entry_limits():
    _raises(TooLargeError, EXAMPLE, limits=ChainLimits(max_bytes=100))
    _raises(TooLargeError, EXAMPLE.encode(), limits=ChainLimits(max_bytes=100))
    assert len(parse_chain(EXAMPLE, limits=ChainLimits(max_bytes=len(EXAMPLE)))) == 2
    _raises(TooManyEntriesError, _example(), limits=ChainLimits(max_entries=1))


def test_nested_documents_are_refused():
    nested = _example()[1][1]
    nested["components"]["solvent"] = _example()[0][1]
    err = _raises(NestedDocumentError, nested)
    assert "keyed chain" in str(err) and "to_json()" in str(err)
    _raises(NestedDocumentError, json.dumps(nested))
    _raises(NestedDocumentError, [nested], index=0)  # a to_dict document as the only "entry"
    _raises(NestedDocumentError, [[WATER, nested]], index=0, key=WATER)  # inline child in a chain


@pytest.mark.parametrize("data", [42, None, '"text"', "{}", "not json", b"\xff\xfe", [], {"a": 1}], ids=repr)
def test_not_a_chain(data):
    _raises(NotAKeyedChainError, data)


def test_duplicates():
    doc = _example()
    dup = doc[:1] + [copy.deepcopy(doc[0])] + doc[1:]
    _raises(DuplicateKeyError, dup, index=1, key=SOLVENT)
    collapsed = parse_chain(dup, duplicates="collapse")
    assert collapsed.keys() == [SOLVENT, WATER]
    changed = doc[:1] + [[SOLVENT, dict(doc[0][1], smiles="CO")]] + doc[1:]
    _raises(DuplicateKeyError, changed, index=1, key=SOLVENT, duplicates="collapse")


def test_chain_object():
    chain = parse_chain(EXAMPLE)
    assert isinstance(chain, KeyedChain) and len(chain) == 2 and list(chain) == chain.entries
    assert SOLVENT in chain and "X-1" not in chain and chain.index(WATER) == 1
    assert chain.dependencies(WATER) == [SOLVENT] and chain.dependencies(SOLVENT) == []
    assert chain.subchain(SOLVENT) == [(SOLVENT, chain[SOLVENT])]
    assert chain.to_list() == _example()
    assert parse_chain(chain) is chain
    # key order is preserved, not sorted
    assert list(chain[SOLVENT])[:2] == ["smiles", "positive_ion"]
