"""GufeRuntime: wiring checked against a stand-in gufe here; real gufe runs where it is installed."""

from __future__ import annotations

import abc
import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import zstandard

from alchemiscale_local.keyedchain import parse_chain, verify_keys
from alchemiscale_local.runtimes import ExecutionRequest, base, decode_result, failed_outcome, summarize
from alchemiscale_local.runtimes import gufe as gufe_runtime
from alchemiscale_local.runtimes.gufe import GufeRuntime
from tests.gufe_compat import gufe_reads_metadata
from tests.gufe_fixtures import fixture_path

TASK = "Task-00000000000000000000000000000001-org-campaign-project"


def fixture_text(name: str) -> str:
    path = fixture_path(name)
    return path.read_text()


def hydration_transformation() -> list:
    """The chain the compute service hands the runtime: the Transformation's sub-chain."""
    net = parse_chain(fixture_text("gufe-generated_alchemical_network.json"))
    key = json.loads(fixture_text("gufe-generated_summary.json"))["hydration_transformation_key"]
    return [list(e) for e in net.subchain(key)]


def installed_gufe_transformation() -> list:
    """The same transformation as the installed gufe writes it (a real gufe user's document).

    gufe 1.10 cannot load the 1.12-written fixture (``metadata``), so the document is made here:
    the fixture's entries without ``metadata``, loaded by gufe and written back with its keys.
    """
    from gufe.tokenization import JSON_HANDLER, KeyedChain

    tf = hydration_transformation()
    if gufe_reads_metadata():
        return tf
    stripped = [[k, {f: v for f, v in d.items() if f != "metadata"}] for k, d in tf]
    obj = KeyedChain(json.loads(json.dumps(stripped), cls=JSON_HANDLER.decoder)).to_gufe()
    return json.loads(json.dumps(obj.to_keyed_chain(), cls=JSON_HANDLER.encoder))


def test_transformation_input_is_a_verified_keyed_chain() -> None:
    tf = hydration_transformation()
    report = verify_keys(tf)
    assert report.verified == report.total == len(tf)
    assert tf[-1][1]["__qualname__"] == "Transformation"
    # the protocol settings are SETTINGS-codec dicts: the runtime must decode them with gufe's codecs
    proto = next(d for _, d in tf if d["__qualname__"] == "DummyProtocol")
    assert (
        proto["settings"][":is_custom:"] is True and proto["settings"]["__class__"] == "DummySpecificSettings"
    )


# --------------------------------------------------------------------- a stand-in for gufe
class _Custom:
    """What the stand-in decoder makes of a codec dict (gufe would build the real object)."""

    def __init__(self, d: dict) -> None:
        self.d = d


class _Decoder(json.JSONDecoder):
    def __init__(self, **kw: Any) -> None:
        super().__init__(object_hook=lambda d: _Custom(d) if d.get(":is_custom:") else d, **kw)


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        return o.d if isinstance(o, _Custom) else super().default(o)


def _stub_gufe(calls: dict, storage_branch: bool) -> dict[str, types.ModuleType]:
    class FakePDR:
        def __init__(self, chain: list, failures: list[str] | None = None) -> None:
            self.chain, self.key = chain, chain[-1][0]
            self.protocol_unit_failures = [types.SimpleNamespace(traceback=t) for t in failures or []]

        @classmethod
        def from_keyed_chain(cls, chain: list) -> FakePDR:
            calls["extends_chain"] = chain
            return cls(chain)

        def ok(self) -> bool:
            return not self.protocol_unit_failures

        def to_keyed_chain(self) -> list:
            return self.chain

    class FakeTransformation:
        def create(self, *, extends: Any, name: str) -> str:
            calls["create"] = {"extends": extends, "name": name}
            return "the-dag"

    class KeyedChain:
        def __init__(self, chain: list) -> None:
            calls["keyed_chain"] = chain

        def to_gufe(self) -> FakeTransformation:
            return FakeTransformation()

    def run(dag: str, kw: dict) -> FakePDR:
        calls["execute_DAG"] = (dag, kw)
        assert kw["scratch_basedir"].is_dir()
        return FakePDR(
            [["ProtocolDAGResult-" + "1" * 32, {"when": _Custom({":is_custom:": True, "x": 1})}]],
            failures=["tb-1"],
        )

    if storage_branch:  # gufe's storage branch: storage objects instead of shared_basedir

        def execute_DAG(
            dag,
            *,
            shared_storage,
            perm_storage,
            scratch_basedir,
            keep_shared=False,  # noqa: ANN001
            keep_scratch=False,
            raise_error=True,
            n_retries=0,
        ):
            return run(
                dag,
                dict(
                    shared_storage=shared_storage,
                    perm_storage=perm_storage,
                    scratch_basedir=scratch_basedir,
                    keep_shared=keep_shared,
                    keep_scratch=keep_scratch,
                    raise_error=raise_error,
                    n_retries=n_retries,
                ),
            )
    else:

        def execute_DAG(
            dag,
            *,
            shared_basedir,
            scratch_basedir,
            cache_basedir=None,
            keep_shared=False,  # noqa: ANN001
            keep_scratch=False,
            keep_cache=False,
            raise_error=True,
            n_retries=0,
        ):
            assert shared_basedir.is_dir()
            return run(
                dag,
                dict(
                    shared_basedir=shared_basedir,
                    scratch_basedir=scratch_basedir,
                    keep_shared=keep_shared,
                    keep_scratch=keep_scratch,
                    raise_error=raise_error,
                    n_retries=n_retries,
                ),
            )

    class FileStorage:
        def __init__(self, root_dir: Path, exist_ok: bool = False) -> None:
            root_dir.mkdir(exist_ok=exist_ok)
            self.root_dir = root_dir

        def __eq__(self, other: object) -> bool:
            return isinstance(other, FileStorage) and other.root_dir == self.root_dir

    names = (
        "gufe",
        "gufe.tokenization",
        "gufe.protocols",
        "gufe.protocols.protocoldag",
        "gufe.storage",
        "gufe.storage.externalresource",
    )
    mods = {n: types.ModuleType(n) for n in names}
    mods["gufe.storage.externalresource"].FileStorage = FileStorage
    mods["gufe.tokenization"].JSON_HANDLER = types.SimpleNamespace(encoder=_Encoder, decoder=_Decoder)
    mods["gufe.tokenization"].KeyedChain = KeyedChain
    mods["gufe.protocols.protocoldag"].execute_DAG = execute_DAG
    mods["gufe.protocols.protocoldag"].ProtocolDAGResult = FakePDR
    return mods


@pytest.mark.parametrize("storage_branch", [False, True])
def test_execute_wiring_with_a_stand_in_gufe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, storage_branch: bool
) -> None:
    calls: dict = {}
    stub = _stub_gufe(calls, storage_branch)
    for name, mod in stub.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(gufe_runtime, "_find_spec", lambda name: object())
    tf = hydration_transformation()
    extends = zstandard.ZstdCompressor().compress(
        json.dumps([["ProtocolDAGResult-" + "2" * 32, {}]]).encode()
    )
    req = ExecutionRequest(TASK, tf, extends, tmp_path / "w", n_retries=3)
    out = GufeRuntime().execute(req)

    decoded = calls["keyed_chain"]
    proto = next(d for _, d in decoded if d.get("__qualname__") == "DummyProtocol")
    assert isinstance(proto["settings"], _Custom)  # decoded with gufe's codecs, not plain json
    assert calls["extends_chain"][-1][0] == "ProtocolDAGResult-" + "2" * 32
    assert calls["create"]["name"] == TASK and calls["create"]["extends"].key.endswith("2" * 32)
    dag, kw = calls["execute_DAG"]
    assert dag == "the-dag"
    work = tmp_path / "w"
    if storage_branch:
        storage = stub["gufe.storage.externalresource"].FileStorage
        shared = {
            "shared_storage": storage(work / "shared", True),
            "perm_storage": storage(work / "permanent", True),
        }
    else:
        shared = {"shared_basedir": work / "shared"}
    assert kw == {
        **shared,
        "scratch_basedir": work / "scratch",
        "keep_shared": False,
        "keep_scratch": False,
        "raise_error": False,
        "n_retries": 3,
    }
    assert (out.ok, out.pdr_key, out.tracebacks) == (False, "ProtocolDAGResult-" + "1" * 32, ["tb-1"])
    # serialized with gufe's encoder, then zstd
    assert decode_result(out.result) == [
        ["ProtocolDAGResult-" + "1" * 32, {"when": {":is_custom:": True, "x": 1}}]
    ]


def test_failure_unit_class_is_built_lazily_as_a_gufe_protocol_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    registry: dict = {}

    class Meta(abc.ABCMeta):  # like gufe's: registers every class by (module, qualname)
        def __new__(mcs, name, bases, ns):  # noqa: N804
            cls = super().__new__(mcs, name, bases, ns)
            registry[cls.__module__, cls.__qualname__] = cls
            return cls

    class ProtocolUnit(metaclass=Meta):
        def __init__(self, *, name: str | None = None, **inputs: Any) -> None:
            self.name, self.inputs = name, inputs

        @staticmethod
        @abc.abstractmethod
        def _execute(ctx: Any, **inputs: Any) -> dict: ...

    fake = types.ModuleType("gufe")
    fake.ProtocolUnit = ProtocolUnit
    monkeypatch.setitem(sys.modules, "gufe", fake)
    monkeypatch.setattr(base, "_failure_unit_cls", None)
    # what gufe's import_qualname does with the document's __module__ / __qualname__
    chain = decode_result(failed_outcome(TASK, [], "m", "t").result)
    unit = chain[0][1]
    cls = getattr(importlib.import_module(unit["__module__"]), unit["__qualname__"])
    assert issubclass(cls, ProtocolUnit) and registry[unit["__module__"], unit["__qualname__"]] is cls
    obj = cls(name=unit["name"], **unit["inputs"])  # abstract _execute is implemented
    with pytest.raises(RuntimeError, match="could not run"):
        obj._execute(None)
    assert getattr(base, base.FAILURE_UNIT_QUALNAME) is cls
    with pytest.raises(AttributeError):
        base.NoSuchThing  # noqa: B018


# --------------------------------------------------------------------------- with real gufe
def test_real_gufe_executes_extends_and_gathers(tmp_path: Path) -> None:
    pytest.importorskip("gufe")
    pytest.importorskip("gufe.tests.test_protocol")  # DummyProtocol lives in gufe's tests (needs pytest)
    tf = installed_gufe_transformation()
    rt = GufeRuntime()
    first = rt.execute(ExecutionRequest(TASK, tf, None, tmp_path / "1"))
    assert first.ok and first.tracebacks == []
    chain = decode_result(first.result)
    kc = parse_chain(chain)
    verify_keys(kc)
    assert kc.root_key == first.pdr_key and kc.root["name"] == TASK
    assert summarize(chain).transformation_key == tf[-1][0]
    second = rt.execute(ExecutionRequest(TASK, tf, first.result, tmp_path / "2"))
    assert decode_result(second.result)[-1][1]["extends_key"] == first.pdr_key
    est = rt.gather(tf, [first.result])
    assert est["estimate"] == pytest.approx(684.0) and est["n_results"] == 1
    failed = failed_outcome(TASK, tf, "protocol process killed by signal SIGSEGV", "tb")
    est = rt.gather(tf, [first.result, failed.result])
    assert est["n_results"] == 1 and est["n_failed_ignored"] == 1


def test_real_gufe_loads_fixtures_and_failed_outcome() -> None:
    pytest.importorskip("gufe")
    pytest.importorskip("gufe.tests.test_protocol")
    from gufe.protocols.protocoldag import ProtocolDAGResult
    from gufe.tokenization import JSON_HANDLER

    def load(text: str) -> Any:
        return ProtocolDAGResult.from_keyed_chain(json.loads(text, cls=JSON_HANDLER.decoder))

    tf = installed_gufe_transformation()
    text = fixture_text("gufe-generated_protocol_dag_result.json")
    real = load(text)
    assert real.ok() and str(real.key) == json.loads(text)[-1][0]
    stored = zstandard.ZstdCompressor().compress(text.encode())  # as the object store holds it
    assert GufeRuntime().gather(tf, [stored])["estimate"] == pytest.approx(684.0)
    out = failed_outcome(TASK, tf, "protocol process killed by signal SIGSEGV", "tb")
    pdr = load(json.dumps(decode_result(out.result)))
    assert not pdr.ok() and str(pdr.key) == out.pdr_key
    (failure,) = pdr.protocol_unit_failures
    assert failure.exception[0] == "RuntimeError" and failure.traceback == "tb"
