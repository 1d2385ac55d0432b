"""ToyRuntime: real ProtocolDAGResult documents, deterministic values, failures, extension, abort."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from alchemiscale_local.keyedchain import parse_chain, verify_keys
from alchemiscale_local.runtimes import ExecutionRequest, decode_result, summarize
from alchemiscale_local.runtimes.toy import (
    TOY_NOTE,
    ToyRuntime,
    ToySettings,
    build_toy_network,
    toy_fails,
    toy_value,
)
from tests.gufe_fixtures import fixture_path

TASK = "Task-{}-org-campaign-project"


def transformations(n: int = 2, **settings: object) -> list[list]:
    kc = parse_chain(build_toy_network(n, settings=settings or None))
    return [[list(e) for e in kc.subchain(k)] for k in kc.keys_of("Transformation")]


def run(tf: list, tmp_path: Path, task: str = "a" * 32, extends: bytes | None = None, n_retries: int = 0):
    req = ExecutionRequest(TASK.format(task), tf, extends, tmp_path / task, n_retries=n_retries)
    return ToyRuntime().execute(req)


def unit_results(chain: list) -> list[dict]:
    entries = dict(chain)
    return [entries[r[":gufe-key:"]] for r in chain[-1][1]["protocol_unit_results"]]


def test_execute_builds_a_real_successful_pdr(tmp_path: Path) -> None:
    tf = transformations(repeats=3)[0]
    out = run(tf, tmp_path)
    assert out.ok and out.tracebacks == []
    chain = decode_result(out.result)
    kc = parse_chain(chain)
    report = verify_keys(kc)
    assert (report.verified, report.reasons) == (1, {"random-key": 6})
    assert kc.root_key == out.pdr_key
    root = kc.root
    assert root["name"] == TASK.format("a" * 32)
    assert root["transformation_key"] == tf[-1][0] and root["extends_key"] is None
    units = [r[":gufe-key:"] for r in root["protocol_units"]]
    assert units == sorted(units, reverse=True)  # gufe's DAG order for independent units
    results = unit_results(chain)
    assert [r["source_key"] for r in results] == units
    assert sorted(r["outputs"]["repeat"] for r in results) == [0, 1, 2]
    for r in results:
        assert r["outputs"]["toy"] is True and r["outputs"]["note"] == TOY_NOTE
        assert r["outputs"]["units"] == "kcal/mol"
        assert r["outputs"]["value"] == toy_value(tf[-1][0], r["outputs"]["repeat"], 0)
    assert summarize(chain).ok
    assert (tmp_path / ("a" * 32) / "shared").is_dir() and (tmp_path / ("a" * 32) / "scratch").is_dir()


def test_result_fields_match_real_gufe_results(tmp_path: Path) -> None:
    path = fixture_path("gufe-generated_protocol_dag_result.json")
    real = {d["__qualname__"]: d for _, d in json.loads(path.read_text())}
    ours = decode_result(run(transformations()[0], tmp_path).result)
    mine = {d["__qualname__"]: d for _, d in ours}
    for qualname in ("ProtocolUnitResult", "ProtocolDAGResult"):
        assert list(mine[qualname]) == list(real[qualname]), qualname
        assert mine[qualname]["__module__"] == real[qualname]["__module__"]
    assert list(mine["ToyUnit"]) == list(real["SimulationUnit"])
    assert list(mine["ProtocolUnitResult"]["start_time"]) == list(real["ProtocolUnitResult"]["start_time"])
    failed = decode_result(run(transformations(fail_rate=1.0)[0], tmp_path, "f" * 32).result)
    real_failed = {
        d["__qualname__"]: d
        for _, d in json.loads(fixture_path("gufe-generated_protocol_dag_result_failed.json").read_text())
    }
    ours_failed = {d["__qualname__"]: d for _, d in failed}
    assert list(ours_failed["ProtocolUnitFailure"]) == list(real_failed["ProtocolUnitFailure"])


def test_values_are_deterministic_per_transformation(tmp_path: Path) -> None:
    tf_a, tf_b = transformations(repeats=4)[:2]

    def values(tf: list, task: str) -> dict[int, float]:
        chain = decode_result(run(tf, tmp_path, task).result)
        return {r["outputs"]["repeat"]: r["outputs"]["value"] for r in unit_results(chain)}

    first = values(tf_a, "1" * 32)
    assert values(tf_a, "2" * 32) == first  # another task of the same transformation
    assert values(tf_b, "3" * 32) != first
    assert all(-6.5 < v < 6.5 for v in first.values()) and len(set(first.values())) == 4
    # the noise is small around a key-derived base in [-5, 5)
    assert max(first.values()) - min(first.values()) < 2.0
    assert toy_value("Transformation-x", 0, seed=1) != toy_value("Transformation-x", 0, seed=0)


def test_fail_on_and_retries(tmp_path: Path) -> None:
    tf = transformations(repeats=3)[0]
    name = tf[-1][1]["name"]
    tf = transformations(repeats=3, fail_on=[name])[0]
    out = run(tf, tmp_path, n_retries=2)
    assert not out.ok and len(out.tracebacks) == 3  # one failure per attempt
    assert all("ToyFailure" in tb and "fail_on" in tb for tb in out.tracebacks)
    chain = decode_result(out.result)
    verify_keys(parse_chain(chain))
    summary = summarize(chain)
    assert not summary.ok and summary.n_units == 3 and summary.n_results == 3
    failures = unit_results(chain)
    assert {f["source_key"] for f in failures} == {chain[-1][1]["protocol_units"][0][":gufe-key:"]}
    assert failures[0]["exception"][0] == "ToyFailure" and failures[0]["outputs"] == {}
    assert out.tracebacks == summary.tracebacks


def test_fail_rate_is_reproducible(tmp_path: Path) -> None:
    settings = ToySettings(fail_rate=0.5, seed=7)
    tasks = [TASK.format(f"{i:032x}") for i in range(400)]
    fails = [toy_fails(t, "n", settings) is not None for t in tasks]
    assert 0.4 < sum(fails) / len(fails) < 0.6
    assert fails == [toy_fails(t, "n", settings) is not None for t in tasks]
    other_seed = [toy_fails(t, "n", ToySettings(fail_rate=0.5, seed=8)) is not None for t in tasks]
    assert fails != other_seed
    assert not any(toy_fails(t, "n", ToySettings()) for t in tasks)
    assert all(toy_fails(t, "n", ToySettings(fail_rate=1.0)) for t in tasks)
    # execute agrees with the rule
    tf = transformations(fail_rate=0.5, seed=7)[0]
    for i in range(6):
        task = f"{i:032x}"
        assert run(tf, tmp_path, task).ok is (
            toy_fails(TASK.format(task), tf[-1][1]["name"], settings) is None
        )


def test_duration_is_slept_per_repeat(tmp_path: Path) -> None:
    tf = transformations(repeats=3, duration_s=0.1)[0]
    start = time.perf_counter()
    out = run(tf, tmp_path)
    assert out.ok and time.perf_counter() - start >= 0.3


def test_extension_accumulates_repeats(tmp_path: Path) -> None:
    tf = transformations(repeats=2)[0]
    first = run(tf, tmp_path, "1" * 32)
    second = run(tf, tmp_path, "2" * 32, extends=first.result)
    third = run(tf, tmp_path, "3" * 32, extends=second.result)
    chains = [decode_result(o.result) for o in (first, second, third)]
    assert chains[1][-1][1]["extends_key"] == first.pdr_key
    assert chains[2][-1][1]["extends_key"] == second.pdr_key
    repeats = [sorted(r["outputs"]["repeat"] for r in unit_results(c)) for c in chains]
    assert repeats == [[0, 1], [2, 3], [4, 5]]

    rt = ToyRuntime()
    est = rt.gather(tf, [o.result for o in (first, second, third)])
    values = [r["outputs"]["value"] for c in chains for r in unit_results(c)]
    mean = sum(values) / 6
    assert est["estimate"] == pytest.approx(mean)
    sd = (sum((v - mean) ** 2 for v in values) / 5) ** 0.5
    assert est["uncertainty"] == pytest.approx(sd / 6**0.5)
    assert (est["n_results"], est["n_samples"], est["units"], est["toy"]) == (3, 6, "kcal/mol", True)
    assert "not chemistry" in est["note"]


def test_gather_skips_failures_and_rejects_foreign_results(tmp_path: Path) -> None:
    tf_ok, tf_other = transformations(repeats=1)[:2]
    ok = run(tf_ok, tmp_path, "1" * 32)
    single = ToyRuntime().gather(tf_ok, [ok.result])
    assert single["estimate"] == toy_value(tf_ok[-1][0], 0) and single["uncertainty"] is None
    failed_tf = transformations(repeats=1, fail_rate=1.0)[0]
    failed = run(failed_tf, tmp_path, "2" * 32)
    est = ToyRuntime().gather(failed_tf, [failed.result])
    assert (est["estimate"], est["n_results"], est["n_failed_ignored"]) == (None, 0, 1)
    assert ToyRuntime().gather(tf_ok, [])["estimate"] is None
    with pytest.raises(ValueError, match="belongs to"):
        ToyRuntime().gather(tf_other, [ok.result])


def test_handles_only_toy_modules() -> None:
    rt = ToyRuntime()
    assert rt.handles("alchemiscale_local.runtimes.toy", "ToyProtocol")
    assert rt.handles("alchemiscale_local.runtimes.toy.protocol", "ToyProtocol")
    assert not rt.handles("alchemiscale_local.runtimes.toybox", "ToyProtocol")
    assert not rt.handles("openfe.protocols.openmm_rfe", "RelativeHybridTopologyProtocol")


def test_abort_kills_the_process_not_the_caller(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import pathlib, sys
        from alchemiscale_local.keyedchain import parse_chain
        from alchemiscale_local.runtimes import ExecutionRequest
        from alchemiscale_local.runtimes.toy import ToyRuntime, build_toy_network
        kc = parse_chain(build_toy_network(1, settings={"abort": True}))
        tf = [list(e) for e in kc.subchain(kc.keys_of("Transformation")[0])]
        ToyRuntime().execute(ExecutionRequest("Task-1-o-c-p", tf, None, pathlib.Path(sys.argv[1])))
        print("still alive")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "work")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGABRT, proc.stderr
    assert "still alive" not in proc.stdout
    assert not list(tmp_path.glob("core*"))  # the runtime switched core dumps off first
