"""ProtocolDAGResult documents made by real gufe, for tests that upload results.

A ProtocolDAGResult's key is a content hash, so a test must not invent one. With gufe
importable (the science env) each document is made fresh by gufe's own ``execute_DAG``
(gufe's test protocol units); without gufe, documents come from a pool gufe made earlier
(``tests/fixtures/gufe-pdr-pool.json.gz``; rebuild with ``.venv-science/bin/python -m
tests.pdr_pool``). Each pool document is handed out once per session: two uploads of one
document to one transformation would share an object-store location.

Failed documents carry one ProtocolUnitFailure; :func:`pdr_chain` may replace its
traceback, which leaves every key valid (a unit failure's key is gufe's random ``_key``,
and the ProtocolDAGResult refers to it by that key only).
"""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import json
import pathlib
import sys
import tempfile
from typing import Any

POOL = pathlib.Path(__file__).resolve().parent / "fixtures" / "gufe-pdr-pool.json.gz"
POOL_SIZE = 48  # per kind; a full suite run uses about 20

_pool: dict[str, Any] | None = None
_next = {"ok": itertools.count(), "failed": itertools.count()}


def gufe_available() -> bool:
    return importlib.util.find_spec("gufe") is not None


def make_with_gufe(ok: bool) -> list[list]:
    """One fresh ProtocolDAGResult keyed chain, executed by gufe (keys computed by gufe)."""
    import gufe
    from gufe.protocols.protocoldag import ProtocolDAG, execute_DAG
    from gufe.tests.test_protocol import (
        BrokenSimulationUnit,
        DummyProtocol,
        FinishUnit,
        InitializeUnit,
        SimulationUnit,
    )
    from gufe.tokenization import JSON_HANDLER, KeyedChain

    state_a = gufe.ChemicalSystem({"solvent": gufe.SolventComponent()}, name="water")
    state_b = gufe.ChemicalSystem({"solvent": gufe.SolventComponent(positive_ion="K+")}, name="KCl")
    protocol = DummyProtocol(DummyProtocol.default_settings())
    alpha = InitializeUnit(
        settings=protocol.settings, stateA=state_a, stateB=state_b, mapping=None, start=None, some_dict={}
    )
    if ok:
        sim = SimulationUnit(settings=protocol.settings, name="sim 0", window=0, initialization=alpha)
        units = [alpha, sim, FinishUnit(settings=protocol.settings, name="the end", simulations=[sim])]
    else:
        units = [
            alpha,
            BrokenSimulationUnit(
                settings=protocol.settings, window=0, name="problem child", initialization=alpha
            ),
        ]
    # No transformation_key (gufe allows it): these documents are uploaded as results of toy
    # tasks of many transformations, and the server refuses a result naming another one.
    dag = ProtocolDAG(protocol_units=units, transformation_key=None, name="pdr pool")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for part in ("shared", "scratch", "stderr", "stdout"):
            dirs[f"{part}_basedir"] = pathlib.Path(tmp) / part
            dirs[f"{part}_basedir"].mkdir()
        result = execute_DAG(dag, raise_error=False, n_retries=0, **dirs)
    assert result.ok() is ok
    chain = KeyedChain.gufe_to_keyed_chain_rep(result)
    assert chain[-1][0] == str(result.key)
    return json.loads(json.dumps(chain, cls=JSON_HANDLER.encoder))


def _load_pool() -> dict[str, Any]:
    global _pool
    if _pool is None:
        _pool = json.loads(gzip.decompress(POOL.read_bytes()))
    return _pool


def pdr_chain(ok: bool = True, traceback: str | None = None) -> list[list]:
    """A real ProtocolDAGResult keyed chain (fresh from gufe, else unused from the pool)."""
    if gufe_available():
        chain = make_with_gufe(ok)
    else:
        kind = "ok" if ok else "failed"
        docs = _load_pool()[kind]
        i = next(_next[kind])
        if i >= len(docs):
            raise RuntimeError(f"the gufe-made {kind} PDR pool ({len(docs)}) is used up; rebuild it larger")
        chain = json.loads(json.dumps(docs[i]))
    if traceback is not None:
        failures = [d for _, d in chain if d["__qualname__"] == "ProtocolUnitFailure"]
        assert len(failures) == 1, "only a failed document's one ProtocolUnitFailure takes a traceback"
        failures[0]["traceback"] = traceback
    return chain


def main() -> None:
    """Rebuild the pool with real gufe (run in the science env)."""
    import gufe

    pool = {
        "made_by": f"gufe {gufe.__version__}, tests/pdr_pool.py:make_with_gufe (execute_DAG)",
        "ok": [make_with_gufe(True) for _ in range(POOL_SIZE)],
        "failed": [make_with_gufe(False) for _ in range(POOL_SIZE)],
    }
    POOL.parent.mkdir(parents=True, exist_ok=True)
    POOL.write_bytes(gzip.compress(json.dumps(pool).encode(), mtime=0))
    print(f"wrote {POOL} ({POOL.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
