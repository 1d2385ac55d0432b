"""failed_outcome and the gufe-free PDR helpers, checked against real gufe ProtocolDAGResults."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest
import zstandard

from alchemiscale_local.keyedchain import parse_chain, verify_keys
from alchemiscale_local.runtimes import (
    ExecutionOutcome,
    decode_result,
    encode_result,
    failed_outcome,
    protocol_of,
    summarize,
    transformation_key_of,
)
from alchemiscale_local.runtimes.base import FAILURE_UNIT_QUALNAME
from alchemiscale_local.runtimes.toy import build_toy_network
from tests.gufe_fixtures import GUFE_FIXTURES as FIXTURES
from tests.gufe_fixtures import fixture_path

TASK = "Task-0123456789abcdef0123456789abcdef-org-campaign-project"


def fixture_chain(name: str) -> list:
    path = fixture_path(name)
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


def first_of(chain: list, qualname: str) -> dict:
    return next(d for _, d in chain if d["__qualname__"] == qualname)


def toy_transformation() -> list:
    kc = parse_chain(build_toy_network(2))
    return [list(e) for e in kc.subchain(kc.keys_of("Transformation")[0])]


def test_failed_outcome_is_a_valid_failed_pdr() -> None:
    tf = toy_transformation()
    out = failed_outcome(TASK, tf, "protocol process killed by signal SIGSEGV", "Traceback: boom\n")
    assert isinstance(out, ExecutionOutcome) and out.ok is False
    assert out.tracebacks == ["Traceback: boom\n"]
    assert out.result[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame, as the object store expects
    chain = decode_result(out.result)
    kc = parse_chain(chain)
    report = verify_keys(kc)  # strict: a wrong PDR content key raises
    assert (report.verified, report.reasons) == (1, {"random-key": 2})
    assert kc.root_key == out.pdr_key and out.pdr_key.startswith("ProtocolDAGResult-")
    root = kc.root
    assert root["name"] == TASK
    assert root["transformation_key"] == tf[-1][0] and root["extends_key"] is None
    (unit_key,) = kc.keys_of(FAILURE_UNIT_QUALNAME)
    (fail_key,) = kc.keys_of("ProtocolUnitFailure")
    assert root["protocol_units"] == [{":gufe-key:": unit_key}]
    assert root["protocol_unit_results"] == [{":gufe-key:": fail_key}]
    failure = kc[fail_key]
    assert failure["source_key"] == unit_key and failure["_key"] == fail_key
    assert failure["exception"] == ["RuntimeError", ["protocol process killed by signal SIGSEGV"]]
    assert failure["outputs"] == {} and failure["traceback"] == "Traceback: boom\n"
    start = dt.datetime.fromisoformat(failure["start_time"]["isotime"])
    assert abs((dt.datetime.now() - start).total_seconds()) < 60
    summary = summarize(chain)
    assert (summary.ok, summary.tracebacks, summary.n_units) == (False, ["Traceback: boom\n"], 1)


def test_failed_outcome_has_the_fields_of_a_real_gufe_failure() -> None:
    real = fixture_chain("gufe-generated_protocol_dag_result_failed.json")
    ours = decode_result(failed_outcome(TASK, toy_transformation(), "m", "t").result)
    for qualname in ("ProtocolUnitFailure", "ProtocolDAGResult"):
        mine, theirs = first_of(ours, qualname), first_of(real, qualname)
        assert list(mine) == list(theirs), qualname  # same fields, same order
        assert mine["__module__"] == theirs["__module__"]
    mine, theirs = first_of(ours, "ProtocolUnitFailure"), first_of(real, "ProtocolUnitFailure")
    for field in ("start_time", "end_time"):  # the datetime codec
        assert list(mine[field]) == list(theirs[field])
        assert mine[field]["__class__"] == theirs[field]["__class__"] == "datetime"
    real_unit = first_of(real, "BrokenSimulationUnit")
    assert list(first_of(ours, FAILURE_UNIT_QUALNAME)) == list(real_unit)
    real_exc = first_of(real, "ProtocolUnitFailure")["exception"]
    our_exc = first_of(ours, "ProtocolUnitFailure")["exception"]
    assert [type(x) for x in our_exc] == [type(x) for x in real_exc] == [str, list]


def test_failed_outcome_options_and_fresh_keys() -> None:
    tf = toy_transformation()
    a = failed_outcome(
        TASK,
        tf,
        "no DAG",
        "tb",
        exception_qualname="ProtocolDAGError",
        extends_key="ProtocolDAGResult-" + "0" * 32,
    )
    b = failed_outcome(TASK, tf, "no DAG", "tb")
    assert a.pdr_key != b.pdr_key  # random unit keys: every failure is its own document
    ca = decode_result(a.result)
    assert first_of(ca, "ProtocolUnitFailure")["exception"] == ["ProtocolDAGError", ["no DAG"]]
    assert ca[-1][1]["extends_key"] == "ProtocolDAGResult-" + "0" * 32
    # a chain that cannot even be read still gives a valid document (no transformation key)
    c = decode_result(failed_outcome(TASK, [], "bad chain", "tb").result)
    verify_keys(parse_chain(c))
    assert c[-1][1]["transformation_key"] is None


@pytest.mark.parametrize(
    "name", ["gufe-generated_protocol_dag_result.json", "gufe-generated_protocol_dag_result_failed.json"]
)
def test_summarize_reads_real_gufe_results(name: str) -> None:
    chain = fixture_chain(name)
    expected = json.loads((FIXTURES / "gufe-generated_summary.json").read_text())
    s = summarize(chain)
    assert s.key == expected["objects"][name]
    if "failed" in name:
        assert s.ok is expected["failed_protocol_dag_result_ok"] is False
        assert s.failed_units == expected["failed_units"]
        assert s.n_results == expected["n_protocol_unit_results_in_failed"]
        assert all("I have failed my mission" in tb for tb in s.tracebacks) and len(s.tracebacks) == 2
    else:
        assert s.ok is expected["protocol_dag_result_ok"] is True and s.tracebacks == []
        assert s.transformation_key == expected["hydration_transformation_key"]


def test_real_pdr_fixtures_parse_and_their_keys_verify() -> None:
    names = ["gufe-generated_protocol_dag_result.json", "gufe-generated_protocol_dag_result_failed.json"]
    names += [
        f"rbfe-tyk2/results/{p.name}" for p in sorted((FIXTURES / "rbfe-tyk2" / "results").glob("*.json"))
    ]
    assert len(names) == 4 or not FIXTURES.is_dir()
    for name in names:
        kc = parse_chain(fixture_chain(name))
        report = verify_keys(kc)
        assert kc.root["__qualname__"] == "ProtocolDAGResult"
        assert set(report.reasons) == {"random-key"}, name  # only unit/result uuids are taken as given
        assert report.verified == report.total - report.reasons["random-key"] > 0
        assert summarize(kc.to_list()).ok is ("failed" not in name)


def test_encode_decode_roundtrip_and_fallbacks() -> None:
    chain = [["A-1", {"x": [1, 2.5, "é"], "__qualname__": "A", "__module__": "m"}]]
    assert decode_result(encode_result(chain)) == chain
    assert json.loads(zstandard.ZstdDecompressor().decompress(encode_result(chain))) == chain
    assert decode_result(json.dumps(chain).encode()) == chain  # uncompressed, as alchemiscale allows
    # a streamed zstd frame carries no content size; it must still decode
    cobj = zstandard.ZstdCompressor().compressobj()
    streamed = cobj.compress(json.dumps(chain).encode()) + cobj.flush()
    assert decode_result(streamed) == chain
    with pytest.raises(ValueError):
        decode_result(b"\x00garbage")


def test_summarize_rejects_a_non_pdr_chain() -> None:
    with pytest.raises(ValueError, match="not a ProtocolDAGResult"):
        summarize(toy_transformation())


def test_protocol_of_real_and_toy_transformations() -> None:
    net = parse_chain(fixture_chain("gufe-generated_alchemical_network.json"))
    for key in net.keys_of("Transformation"):
        tf = [list(e) for e in net.subchain(key)]
        assert protocol_of(tf) == ("gufe.tests.test_protocol", "DummyProtocol")
        assert transformation_key_of(tf) == key
    assert protocol_of(toy_transformation()) == ("alchemiscale_local.runtimes.toy", "ToyProtocol")
    with pytest.raises(ValueError, match="protocol"):
        protocol_of([["ChemicalSystem-1", {"components": {}, "name": ""}]])
