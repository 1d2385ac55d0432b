"""The protocol process: failures to build or run a DAG, and native crashes, become failed results."""

from __future__ import annotations

import json

from alchemiscale_local.compute.executor import TaskExecutor
from alchemiscale_local.runtimes.pdr import decode_result, summarize
from alchemiscale_local.runtimes.toy.network import build_toy_network


def _inputs(settings: dict | None = None, module: str | None = None) -> dict:
    chain = build_toy_network(1, settings=settings or {})
    tf_key = next(k for k, d in chain if d["__qualname__"] == "Transformation")
    from alchemiscale_local.keyedchain import parse_chain

    sub = [list(e) for e in parse_chain(chain).subchain(tf_key)]
    protocol = next(d for _, d in sub if d["__qualname__"] == "ToyProtocol")
    if module is not None:  # a protocol no installed runtime can run
        protocol["__module__"] = module
    return {
        "task": "Task-0123456789abcdef0123456789abcdef-a-b-c",
        "transformation": sub,
        "protocol": protocol["__qualname__"],
        "protocol_module": protocol["__module__"],
    }


def test_toy_task_runs_in_a_child_process(tmp_path):
    outcome = TaskExecutor().run(_inputs({"repeats": 2}), None, tmp_path / "w", n_retries=0)
    assert outcome.ok
    summary = summarize(decode_result(outcome.result))
    assert summary.ok and summary.key == outcome.pdr_key


def test_unbuildable_dag_is_a_failed_result_not_a_crash(tmp_path):
    outcome = TaskExecutor().run(
        _inputs(module="openfe.protocols.openmm_rfe"), None, tmp_path / "w", n_retries=0
    )
    assert not outcome.ok
    assert outcome.tracebacks and "openfe" in outcome.tracebacks[0]
    chain = decode_result(outcome.result)
    assert chain[-1][1]["__qualname__"] == "ProtocolDAGResult"
    assert json.dumps(chain)  # a real, serializable keyed chain


def test_native_crash_names_the_signal(tmp_path):
    outcome = TaskExecutor().run(_inputs({"abort": True}), None, tmp_path / "w", n_retries=0)
    assert not outcome.ok
    assert "killed by signal SIGABRT" in outcome.tracebacks[0]


def test_abandon_before_the_process_starts_applies_to_that_run(tmp_path):
    """A SIGTERM while the service fetches a task's inputs calls abandon() before run(): the
    run must not start its process (it would run to its end while nobody heartbeats for it)."""
    import pytest

    from alchemiscale_local.compute.executor import Abandoned

    executor = TaskExecutor()
    executor.abandon()
    with pytest.raises(Abandoned):
        executor.run(_inputs({"duration_s": 30.0}), None, tmp_path / "w", n_retries=0)
    assert not (tmp_path / "w" / "protocol.log").exists(), "a protocol process was started"
    # the abandon is used up: the next task runs
    assert executor.run(_inputs(), None, tmp_path / "w2", n_retries=0).ok
