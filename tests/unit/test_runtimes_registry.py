"""Runtime discovery through entry points and the choice of a runtime per protocol module."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from alchemiscale_local.keyedchain import parse_chain
from alchemiscale_local.runtimes import (
    ENTRY_POINT_GROUP,
    RuntimeNotAvailable,
    available_runtimes,
    load_runtimes,
    registry,
    runtime_for,
    runtime_for_transformation,
    select_runtime,
)
from alchemiscale_local.runtimes import gufe as gufe_runtime
from alchemiscale_local.runtimes.gufe import GufeRuntime
from alchemiscale_local.runtimes.toy import ToyRuntime, build_toy_network

OPENFE = ("openfe.protocols.openmm_rfe.equil_rfe_methods", "RelativeHybridTopologyProtocol")


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def test_builtin_runtimes_come_from_entry_points() -> None:
    runtimes = load_runtimes(refresh=True)
    assert isinstance(runtimes["toy"], ToyRuntime) and isinstance(runtimes["gufe"], GufeRuntime)
    assert runtimes["gufe"].fallback and not runtimes["toy"].fallback
    assert load_runtimes()["toy"] is runtimes["toy"]  # cached
    names = available_runtimes()
    assert "toy" in names
    assert ("gufe" in names) is installed("gufe")


def test_toy_protocols_go_to_the_toy_runtime() -> None:
    assert isinstance(runtime_for("alchemiscale_local.runtimes.toy", "ToyProtocol"), ToyRuntime)
    kc = parse_chain(build_toy_network(1))
    tf = [list(e) for e in kc.subchain(kc.keys_of("Transformation")[0])]
    assert isinstance(runtime_for_transformation(tf), ToyRuntime)
    # a module that merely starts with the same letters is not the toy's
    assert isinstance(select_runtime("alchemiscale_local.runtimes.toybox", "P"), GufeRuntime)


def test_openfe_protocol_picks_gufe_or_says_what_to_install() -> None:
    assert isinstance(select_runtime(*OPENFE), GufeRuntime)
    if installed("gufe") and installed("openfe"):
        assert isinstance(runtime_for(*OPENFE), GufeRuntime)
        return
    with pytest.raises(RuntimeNotAvailable) as err:
        runtime_for(*OPENFE)
    msg = str(err.value)
    assert "openfe.protocols.openmm_rfe.equil_rfe_methods.RelativeHybridTopologyProtocol" in msg
    assert "needs gufe and openfe" in msg and "mamba install -c conda-forge openfe" in msg


@pytest.mark.parametrize(
    ("present", "missing_text", "hint"),
    [
        (set(), "(gufe, openfe missing)", "mamba install -c conda-forge openfe`"),
        ({"gufe"}, "(openfe missing)", "mamba install -c conda-forge openfe`"),
        ({"openfe"}, "(gufe missing)", "mamba install -c conda-forge openfe`"),
    ],
)
def test_missing_packages_are_named(
    monkeypatch: pytest.MonkeyPatch, present: set[str], missing_text: str, hint: str
) -> None:
    monkeypatch.setattr(gufe_runtime, "_find_spec", lambda name: object() if name in present else None)
    with pytest.raises(RuntimeNotAvailable) as err:
        runtime_for(*OPENFE)
    assert missing_text in str(err.value) and hint in str(err.value)
    assert ("gufe" in available_runtimes()) is ("gufe" in present)


def test_gufe_only_protocol_hint_and_success(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gufe_runtime, "_find_spec", lambda name: None)
    with pytest.raises(RuntimeNotAvailable, match="mamba install -c conda-forge gufe`"):
        runtime_for("gufe.tests.test_protocol", "DummyProtocol")
    with pytest.raises(RuntimeNotAvailable, match="needs gufe"):
        GufeRuntime().execute(None)  # type: ignore[arg-type]
    monkeypatch.setattr(gufe_runtime, "_find_spec", lambda name: object())
    assert isinstance(runtime_for(*OPENFE), GufeRuntime)


def test_real_gufe_and_openfe_are_found_without_pretending() -> None:
    """The science env's real packages: no monkeypatched ``_find_spec`` (runs where they are installed)."""
    pytest.importorskip("gufe")
    pytest.importorskip("openfe")
    assert isinstance(runtime_for(*OPENFE), GufeRuntime)
    assert isinstance(runtime_for("gufe.tests.test_protocol", "DummyProtocol"), GufeRuntime)
    assert "gufe" in available_runtimes()


def test_no_runtime_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_cache", {"toy": ToyRuntime()})
    with pytest.raises(RuntimeNotAvailable, match="no runtime handles the protocol openfe"):
        runtime_for(*OPENFE)


THIRD_PARTY = """
from alchemiscale_local.runtimes.base import ExecutionOutcome, Runtime


class FakeChemRuntime(Runtime):
    name = "fakechem"

    def handles(self, protocol_module, protocol_qualname):
        return protocol_module.split(".")[0] == "fakechem"

    def execute(self, request):
        return ExecutionOutcome(b"", True, "ProtocolDAGResult-0")

    def gather(self, transformation, results):
        return {"estimate": 1.0, "uncertainty": None, "units": None, "n_results": len(results)}


NOT_A_RUNTIME = object()
"""


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[None]:
    """A real installed distribution (a .dist-info on sys.path) registering runtimes."""
    (tmp_path / "fakechem_runtime.py").write_text(THIRD_PARTY)
    info = tmp_path / "fakechem_runtime-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakechem-runtime\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(f"""
        [{ENTRY_POINT_GROUP}]
        fakechem = fakechem_runtime:FakeChemRuntime
        broken = fakechem_runtime_missing:Nothing
        bogus = fakechem_runtime:NOT_A_RUNTIME
    """)
    )
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("fakechem_runtime", None)
        importlib.invalidate_caches()
        load_runtimes(refresh=True)


def test_third_party_runtime_takes_precedence_over_gufe(
    third_party: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        runtimes = load_runtimes(refresh=True)
    assert set(runtimes) == {"fakechem", "gufe", "toy"}
    assert "cannot load runtime 'broken'" in caplog.text and "'bogus'" in caplog.text
    chosen = runtime_for("fakechem.protocols.md", "FakeProtocol")
    assert type(chosen).__name__ == "FakeChemRuntime"  # gufe would also handle it: the fallback loses
    assert isinstance(select_runtime(*OPENFE), GufeRuntime)
    assert isinstance(runtime_for("alchemiscale_local.runtimes.toy", "ToyProtocol"), ToyRuntime)
    assert "fakechem" in available_runtimes()
